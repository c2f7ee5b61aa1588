package ceremony

import (
	"fmt"

	"filippo.io/age"

	"github.com/custos-pki/custos/shares"
)

// presentKey is one custodian's key present for a flow: a native identity from an -i file, or a card
// that has proved liveness. signer co-signs the seal for a card; it is nil for software custodians.
type presentKey struct {
	name      string // the custodian, once assigned to a roster or manifest
	recipient string
	identity  age.Identity
	signer    Signer
	source    string // where the key is: "identity file F" or "card SERIAL"
}

// identityKeys reads the identity files given with -i.
func identityKeys(files []string) ([]presentKey, error) {
	ids, err := readIdentityFiles(files)
	if err != nil {
		return nil, err
	}
	var out []presentKey
	for _, si := range ids {
		out = append(out, presentKey{recipient: si.id.Recipient().String(), identity: si.id, source: "identity file " + si.file})
	}
	return out, nil
}

// assign returns the keys whose recipient belongs to a custodian in recipients (recipient to name), named
// after that custodian.
func assign(keys []presentKey, recipients map[string]string) []presentKey {
	var out []presentKey
	for _, k := range keys {
		if name, ok := recipients[k.recipient]; ok {
			k.name = name
			out = append(out, k)
		}
	}
	return out
}

// unassigned returns an error naming the first key that belongs to none of the sets.
func unassigned(keys []presentKey, where string, sets ...map[string]string) error {
	for _, k := range keys {
		found := false
		for _, s := range sets {
			_, ok := s[k.recipient]
			found = found || ok
		}
		if !found {
			return fmt.Errorf("%s opens no share of %s (its recipient %s is not there)", k.source, where, k.recipient)
		}
	}
	return nil
}

// softwareKeys matches identity files to custodians by recipient (recipients maps a recipient to its
// custodian's name). Every identity must belong to one of them; where names the roster or ceremony.
func softwareKeys(files []string, recipients map[string]string, where string) ([]presentKey, error) {
	keys, err := identityKeys(files)
	if err != nil {
		return nil, err
	}
	if err := unassigned(keys, where, recipients); err != nil {
		return nil, err
	}
	return assign(keys, recipients), nil
}

// allPresent checks that every custodian of a roster has a key among keys (the check round needs them
// all) and returns them named.
func allPresent(keys []presentKey, roster *shares.Roster) ([]presentKey, error) {
	recips := rosterRecipients(roster)
	got := assign(keys, recips)
	have := map[string]bool{}
	for _, k := range got {
		have[k.name] = true
	}
	for _, m := range roster.Custodians {
		if !have[m.Name] {
			return nil, fmt.Errorf("custodian %q is not present (no card or identity file for %s); the check round needs every custodian", m.Name, m.Recipient)
		}
	}
	return got, nil
}

// manifestRecipients maps each custodian's recipient to its name.
func manifestRecipients(m *shares.Manifest) map[string]string {
	out := map[string]string{}
	for _, e := range m.Custodians {
		out[e.Recipient] = e.Name
	}
	return out
}

// rosterRecipients maps each roster member's recipient to its name.
func rosterRecipients(r *shares.Roster) map[string]string {
	out := map[string]string{}
	for _, m := range r.Custodians {
		out[m.Recipient] = m.Name
	}
	return out
}

// staleKey returns an error for the first key that belongs only to an older generation of the records
// given: its shares were superseded, and the error names both generations.
func staleKey(keys []presentKey, records []*VerifiedRecord, current *shares.Manifest) error {
	cur := manifestRecipients(current)
	for _, k := range keys {
		if _, ok := cur[k.recipient]; ok {
			continue
		}
		for _, vr := range records {
			if m := vr.Manifest; m != nil && m.CeremonyID == current.CeremonyID && m.Generation < current.Generation {
				if name, ok := manifestRecipients(m)[k.recipient]; ok {
					return fmt.Errorf("%s (custodian %q) holds a share of generation %d only; generation %d superseded it, and its shares are refused", k.source, name, m.Generation, current.Generation)
				}
			}
		}
	}
	return nil
}
