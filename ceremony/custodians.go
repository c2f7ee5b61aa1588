package ceremony

import (
	"fmt"

	"filippo.io/age"

	"github.com/custos-pki/custos/shares"
)

// presentKey is one custodian's key present for a flow: a native identity from an -i file, or a card
// that has proved liveness. signer co-signs the seal for a card; it is nil for software custodians.
type presentKey struct {
	name     string
	identity age.Identity
	signer   Signer
	source   string // where the key is: "identity file F" or "card SERIAL"
}

// softwareKeys matches identity files to custodians by recipient (recipients maps a recipient to its
// custodian's name). Every identity must belong to one of them; where names the roster or ceremony.
func softwareKeys(files []string, recipients map[string]string, where string) ([]presentKey, error) {
	ids, err := readIdentityFiles(files)
	if err != nil {
		return nil, err
	}
	var out []presentKey
	for _, si := range ids {
		name, ok := recipients[si.id.Recipient().String()]
		if !ok {
			return nil, fmt.Errorf("identity file %s opens no share of %s (its recipient %s is not there)", si.file, where, si.id.Recipient())
		}
		out = append(out, presentKey{name: name, identity: si.id, source: "identity file " + si.file})
	}
	return out, nil
}

// manifestRecipients maps each custodian's recipient to its name.
func manifestRecipients(m *shares.Manifest) map[string]string {
	out := map[string]string{}
	for _, e := range m.Custodians {
		out[e.Recipient] = e.Name
	}
	return out
}
