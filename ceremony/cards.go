package ceremony

// Custodian cards in the flows: which cards a record expects, liveness before any PIN (invariant 2),
// and one PIN entry per card per command.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/shares"
)

// CardOptions are how a flow reaches the custodians' cards.
type CardOptions struct {
	// Selector chooses the cards; nil when the flow uses no cards (software custodians only).
	Selector *card.Selector
	PIN      card.PINOptions
}

// A card's signing key co-signs seals and signs receipts.
var _ Signer = (*card.Signer)(nil)

// expectedCards returns what a signed manifest pins about its card custodians.
func expectedCards(m *shares.Manifest) ([]card.Expected, error) {
	var out []card.Expected
	for _, e := range m.Custodians {
		if e.Card == nil {
			continue
		}
		x, err := card.ExpectedFromCardInfo(e.Name, e.Card)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// withCards opens, one at a time, the present cards of want (at most max when max > 0), proves each
// card's liveness under the signing key pinned for its serial before anything else, and calls fn with
// the card's key (see cardKey). fn returns more == false to stop.
func withCards(co CardOptions, want []card.Expected, max int, flow, record, purpose string, fn func(k presentKey) (bool, error)) error {
	if co.Selector == nil || len(want) == 0 {
		return nil
	}
	return co.Selector.Each(want, max, func(c *card.Card, e card.Expected) (bool, error) {
		k, err := cardKey(co, c, e, flow, record, purpose)
		if err != nil {
			return false, err
		}
		return fn(k)
	})
}

// cardKey proves a card's liveness and returns its key: an identity that asks for the PIN (the prompt
// naming the flow, the record and purpose) at its first use, and its signer.
func cardKey(co CardOptions, c *card.Card, e card.Expected, flow, record, purpose string) (presentKey, error) {
	if err := c.Liveness(e); err != nil {
		return presentKey{}, err
	}
	prompt := fmt.Sprintf("custos %s, record %s: PIN of YubiKey %d (custodian %s); the card will %s", flow, record, e.Serial, e.Name, purpose)
	id, err := c.Identity(e, co.PIN, prompt)
	if err != nil {
		return presentKey{}, err
	}
	return presentKey{name: e.Name, recipient: e.Recipient, identity: id, signer: c.Signer(e), source: fmt.Sprintf("card %d", e.Serial)}, nil
}

// holdCards opens the present cards of want all at once and proves each one's liveness; the keys it
// returns (in want's order, for the cards present) stay usable until release.
func holdCards(co CardOptions, want []card.Expected, flow, record, purpose string) ([]presentKey, func(), error) {
	sets, release, err := holdAll(co, flow, record, purpose, want)
	if err != nil {
		return nil, nil, err
	}
	return sets[0], release, nil
}

// holdAll holds the present cards of several sets of custodian entries together (the quorum of one
// generation and the custodians of the next, say), each card opened once even when it holds keys of
// both, proves each card's liveness, and returns per set a key for every entry whose card is present,
// usable until release.
func holdAll(co CardOptions, flow, record, purpose string, sets ...[]card.Expected) ([][]presentKey, func(), error) {
	out := make([][]presentKey, len(sets))
	var union []card.Expected
	for _, set := range sets {
		for _, e := range set {
			if !slices.ContainsFunc(union, func(u card.Expected) bool { return u.Serial == e.Serial }) {
				union = append(union, e)
			}
		}
	}
	if co.Selector == nil || len(union) == 0 {
		return out, func() {}, nil
	}
	cards, err := co.Selector.Hold(union)
	if err != nil {
		return nil, nil, err
	}
	release := func() {
		for _, c := range cards {
			if c != nil {
				c.Close()
			}
		}
	}
	for i, set := range sets {
		for _, e := range set {
			c := cards[slices.IndexFunc(union, func(u card.Expected) bool { return u.Serial == e.Serial })]
			if c == nil {
				continue
			}
			k, err := cardKey(co, c, e, flow, record, purpose)
			if err != nil {
				release()
				return nil, nil, err
			}
			out[i] = append(out[i], k)
		}
	}
	return out, release, nil
}

// rosterCards returns what the verified records of a roster's card custodians pin, in roster order.
func rosterCards(r *shares.Roster, records map[string]*card.Record) []card.Expected {
	var out []card.Expected
	for _, m := range r.Custodians {
		if rec, ok := records[m.Name]; ok {
			out = append(out, card.ExpectedFromRecord(rec))
		}
	}
	return out
}

// withoutKeys drops the entries of want whose custodian already has a key.
func withoutKeys(want []card.Expected, have []presentKey) []card.Expected {
	return slices.DeleteFunc(slices.Clone(want), func(e card.Expected) bool {
		return slices.ContainsFunc(have, func(k presentKey) bool { return k.name == e.Name })
	})
}

// quorumKeys brings the cards of a manifest's custodians who are not among have: held together when they
// can be (their signers then co-sign the seal; release when done), or one after another with
// --one-reader, each card proving liveness and opening its share at its turn (no co-signing then).
func quorumKeys(co CardOptions, lm *loadedManifest, have []presentKey, flow, record string) ([]presentKey, func(), error) {
	want, err := expectedCards(lm.Manifest)
	if err != nil {
		return nil, nil, err
	}
	want = withoutKeys(want, have)
	if co.Selector == nil || len(want) == 0 {
		return nil, func() {}, nil
	}
	if co.Selector.OneReader {
		keys, err := cardShares(co, lm, have)
		for i := range keys {
			keys[i].signer = nil // the card has left; it cannot co-sign
		}
		return keys, func() {
			for _, k := range keys {
				if r, ok := k.identity.(*replayIdentity); ok {
					r.wipe()
				}
			}
		}, err
	}
	return holdCards(co, want, flow, record, "decrypt its share")
}

// cardShares opens, card after card, the shares of the record's custodians whose cards are present and
// who are not among have, until the threshold is reached. Each card proves liveness, then decrypts and
// validates its share at once (so that --one-reader can take the card away again); the keys it returns
// replay the file keys for the combination. Wipe them with replayIdentity.wipe.
func cardShares(co CardOptions, lm *loadedManifest, have []presentKey) ([]presentKey, error) {
	want, err := expectedCards(lm.Manifest)
	if err != nil {
		return nil, err
	}
	want = withoutKeys(want, have)
	var out []presentKey
	err = withCards(co, want, 0, "combine", lm.CeremonyID, "decrypt its share", func(k presentKey) (bool, error) {
		e, _ := lm.Custodian(k.name)
		rec := &replayIdentity{card: k.identity}
		env, err := openShare(lm, e, rec)
		if err != nil {
			rec.wipe()
			return false, err
		}
		env.Wipe()
		k.identity = rec
		out = append(out, k)
		return len(have)+len(out) < lm.Threshold, nil
	})
	return out, err
}

// replayIdentity unwraps a file's stanzas with a card once, and afterwards answers the same stanzas with
// the file key it kept, so that a share can be opened again after its card has left.
type replayIdentity struct {
	card    age.Identity
	stanzas []*age.Stanza
	fileKey []byte
}

func (r *replayIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	if r.fileKey == nil {
		k, err := r.card.Unwrap(stanzas)
		if err != nil {
			return nil, err
		}
		r.stanzas, r.fileKey = stanzas, k
		return bytes.Clone(k), nil
	}
	if !slices.EqualFunc(stanzas, r.stanzas, func(a, b *age.Stanza) bool {
		return a.Type == b.Type && slices.Equal(a.Args, b.Args) && bytes.Equal(a.Body, b.Body)
	}) {
		return nil, age.ErrIncorrectIdentity
	}
	return bytes.Clone(r.fileKey), nil
}

func (r *replayIdentity) wipe() { clear(r.fileKey) }

// attestationTrust returns the roots custodian records are verified under: Yubico's in production,
// the sim's virtual root ($CUSTOS_SIM_DIR/attestation-root.pem) only in a rehearsal.
func attestationTrust(rehearsal bool) (*card.Trust, error) {
	if !rehearsal {
		return card.YubicoTrust()
	}
	dir := os.Getenv("CUSTOS_SIM_DIR")
	if dir == "" {
		return nil, fmt.Errorf("a rehearsal verifies card attestations under the sim's virtual root, and CUSTOS_SIM_DIR is not set: run eval \"$(custos-sim up ...)\" first")
	}
	b, err := readLimited(filepath.Join(dir, "attestation-root.pem"), maxRecordFile)
	if err != nil {
		return nil, fmt.Errorf("the sim's attestation root: %w", err)
	}
	return card.RehearsalTrust(b)
}

// verifyRosterCards verifies the attestations and policies of a roster's card custodians and returns
// their records by name.
func verifyRosterCards(r *shares.Roster, rehearsal bool) (map[string]*card.Record, error) {
	out := map[string]*card.Record{}
	if r.Software() == len(r.Custodians) && r.AllowTouchNever == "" {
		return out, nil
	}
	t, err := attestationTrust(rehearsal)
	if err != nil {
		return nil, err
	}
	vrs, err := card.VerifyRoster(r, t)
	if err != nil {
		return nil, err
	}
	for _, vr := range vrs {
		out[vr.Record.Name] = vr.Record
	}
	return out, nil
}
