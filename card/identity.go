package card

import (
	"crypto/ecdh"
	"errors"
	"fmt"

	"filippo.io/age"
)

// KeyExchanger is the card side of a decryption: ECDH with the slot's P-256 key, returning the
// 32-byte x coordinate of the shared point (PIV GENERAL AUTHENTICATE). Identity calls it only for a
// stanza carrying the key's tag, so an implementation may verify the PIN at its first call. A
// *ecdh.PrivateKey is a software KeyExchanger.
type KeyExchanger interface {
	ECDH(peer *ecdh.PublicKey) ([]byte, error)
}

// Identity is a card-backed age identity: it opens piv-p256 stanzas (age1yubikey1… recipients) and
// p256tag stanzas (age1tag1… recipients) for one P-256 key, doing the ECDH through a KeyExchanger.
// The card is used only for stanzas that carry the key's tag.
type Identity struct {
	card KeyExchanger
	r    *Recipient
}

var _ age.Identity = &Identity{}

// NewIdentity returns the identity for the card key whose public key is pub; pub is the recipient's
// key (the salt of piv-p256 and the KEM context of p256tag need it).
func NewIdentity(card KeyExchanger, pub *ecdh.PublicKey) (*Identity, error) {
	r, err := NewRecipient(pub)
	if err != nil {
		return nil, err
	}
	return &Identity{card: card, r: r}, nil
}

// Recipient returns the age1yubikey1… recipient of the identity's key.
func (i *Identity) Recipient() *Recipient { return i.r }

// Unwrap returns the file key from the first stanza that carries the key's tag and decrypts with it.
// Without such a stanza it returns an error wrapping age.ErrIncorrectIdentity; a malformed piv-p256
// or p256tag stanza and a failing card are errors of their own.
func (i *Identity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	matches, err := matchingStanzas(stanzas, i.r.tag)
	if err != nil {
		return nil, err
	}
	return i.unwrap(matches)
}

func (i *Identity) unwrap(matches []cardStanza) ([]byte, error) {
	if len(matches) == 0 {
		return nil, age.ErrIncorrectIdentity
	}
	for _, s := range matches {
		fileKey, err := s.open(i.card, i.r)
		if errors.Is(err, errWrongKey) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return fileKey, nil
	}
	return nil, fmt.Errorf("card: %d stanza(s) carry the tag %x of this key but do not decrypt with it: %w",
		len(matches), i.r.tag, age.ErrIncorrectIdentity)
}
