package card

// Liveness: before any PIN is sent, the card proves it is the card the roster or manifest names by
// signing a fresh challenge with its attested signing key (DESIGN.md section 5, invariant 2).

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/custos-pki/custos/wrap"
)

// LiveFormat is the domain separator of liveness challenges.
const LiveFormat = "custos-live-v1"

// ErrNotLive is wrapped by the refusal of a card whose signature does not verify under the signing
// key pinned for its serial: another card (or a fake) answers to that serial.
var ErrNotLive = errors.New("liveness not proven")

// liveChallenge is what the card signs: "custos-live-v1\n" ‖ serial (4 bytes, big-endian) ‖ slot ‖ a
// fresh 32-byte nonce.
func liveChallenge(serial uint32, slot Slot) ([]byte, error) {
	b := append([]byte(LiveFormat+"\n"), binary.BigEndian.AppendUint32(nil, serial)...)
	b = append(b, byte(slot))
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return append(b, nonce...), nil
}

// Liveness has the card sign a fresh challenge with the signing key e pins, and verifies the signature
// under that key. It sends no PIN (the signing key has PIN policy never) and one APDU.
func (c *Card) Liveness(e Expected) error {
	if c.serial != e.Serial {
		return fmt.Errorf("card: %w: the card in reader %q is YubiKey %d, not %d", ErrNotLive, c.reader, c.serial, e.Serial)
	}
	pub, err := parseP256SPKI(e.SigningKey)
	if err != nil {
		return fmt.Errorf("card: %s's signing key: %v", e.Name, err)
	}
	msg, err := liveChallenge(c.serial, e.SigningSlot)
	if err != nil {
		return err
	}
	sig, err := c.signDigest(e.SigningSlot, pub, msg)
	if err == nil && !ecdsa.VerifyASN1(pub, digest(msg), sig) {
		err = errors.New("the signature does not verify")
	}
	if err != nil {
		if errors.Is(err, ErrCardRemoved) {
			return err
		}
		return fmt.Errorf("card: YubiKey %d is not %s's card: %w under the attested signing key %s in slot %v (%v); no PIN was sent",
			c.serial, e.Name, ErrNotLive, wrap.FingerprintBytes(e.SigningKey), e.SigningSlot, err)
	}
	return nil
}

func digest(msg []byte) []byte {
	d := sha256.Sum256(msg)
	return d[:]
}

// signDigest signs SHA-256(msg) with the key in slot, which needs no PIN.
func (c *Card) signDigest(slot Slot, pub *ecdsa.PublicKey, msg []byte) ([]byte, error) {
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	k, err := c.yk.PrivateKey(ps, pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return nil, c.cardErr("opening the signing key", err)
	}
	sig, err := k.(*piv.ECDSAPrivateKey).Sign(rand.Reader, digest(msg), nil)
	if err != nil {
		return nil, c.cardErr("signing", err)
	}
	return sig, nil
}

// Signer is a card's signing key as a seal co-signer and receipt signer: Name "card:SERIAL", PublicKey
// the attested SubjectPublicKeyInfo, Sign ECDSA over SHA-256(msg) in ASN.1 form. Every signature is
// checked under the attested key before it is returned.
type Signer struct {
	c *Card
	e Expected
}

// Signer returns the signer of the card's signing key e pins. Call Liveness first.
func (c *Card) Signer(e Expected) *Signer { return &Signer{c: c, e: e} }

// Name returns "card:SERIAL".
func (s *Signer) Name() string { return fmt.Sprintf("card:%d", s.e.Serial) }

// PublicKey returns the attested signing key's SubjectPublicKeyInfo.
func (s *Signer) PublicKey() ([]byte, error) { return append([]byte(nil), s.e.SigningKey...), nil }

// Sign signs SHA-256(msg) on the card.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	pub, err := parseP256SPKI(s.e.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("card: %s's signing key: %v", s.e.Name, err)
	}
	sig, err := s.c.signDigest(s.e.SigningSlot, pub, msg)
	if err != nil {
		return nil, err
	}
	if !ecdsa.VerifyASN1(pub, digest(msg), sig) {
		return nil, fmt.Errorf("card: YubiKey %d: %w: its signature does not verify under the attested signing key", s.c.serial, ErrNotLive)
	}
	return sig, nil
}
