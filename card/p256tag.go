package card

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"filippo.io/age"
	"filippo.io/hpke"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	p256tagType  = "p256tag"
	p256tagLabel = "age-encryption.org/p256tag"
)

// p256tagStanza is "-> p256tag TAG ENC" with a 32-byte body, as filippo.io/age/tag writes it for an
// age1tag1… recipient: HPKE base mode with DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and
// ChaCha20Poly1305, info "age-encryption.org/p256tag"; ENC is the 65-byte uncompressed ephemeral key
// and TAG = HKDF-Extract(salt=info, ikm=ENC ‖ key tag)[:4].
type p256tagStanza struct {
	tag  [4]byte
	enc  []byte
	body []byte
}

func parseP256TagStanza(s *age.Stanza) (*p256tagStanza, error) {
	if len(s.Args) != 2 {
		return nil, fmt.Errorf("%w: p256tag stanza has %d arguments, want 2", ErrMalformedStanza, len(s.Args))
	}
	tag, err := decodeArg(p256tagType, "tag", s.Args[0], 4)
	if err != nil {
		return nil, err
	}
	enc, err := decodeArg(p256tagType, "encapsulated key", s.Args[1], uncompressedPointSize)
	if err != nil {
		return nil, err
	}
	if _, err := ecdh.P256().NewPublicKey(enc); err != nil {
		return nil, fmt.Errorf("%w: p256tag encapsulated key is not an uncompressed P-256 point", ErrMalformedStanza)
	}
	if want := fileKeySize + chacha20poly1305.Overhead; len(s.Body) != want {
		return nil, fmt.Errorf("%w: p256tag body is %d bytes, want %d", ErrMalformedStanza, len(s.Body), want)
	}
	return &p256tagStanza{tag: [4]byte(tag), enc: enc, body: s.Body}, nil
}

// matches recomputes the stanza tag from ENC and the key tag alone, so a stub identity can tell its
// stanzas before the card is opened.
func (s *p256tagStanza) matches(keyTag [4]byte) bool {
	ikm := make([]byte, 0, len(s.enc)+len(keyTag))
	ikm = append(append(ikm, s.enc...), keyTag[:]...)
	prk, err := hkdf.Extract(sha256.New, ikm, []byte(p256tagLabel))
	return err == nil && bytes.Equal(prk[:4], s.tag[:])
}

// open runs HPKE's DHKEM decapsulation with the card doing the ECDH: hpke.NewDHKEMPrivateKey takes
// any ecdh.KeyExchanger, and cardExchanger is the card's.
func (s *p256tagStanza) open(card KeyExchanger, r *Recipient) ([]byte, error) {
	priv, err := hpke.NewDHKEMPrivateKey(cardExchanger{card, r.pub})
	if err != nil {
		return nil, fmt.Errorf("card: p256tag: %v", err)
	}
	ctx, err := hpke.NewRecipient(s.enc, priv, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(p256tagLabel))
	if err != nil {
		return nil, fmt.Errorf("card: p256tag: %w", err)
	}
	fileKey, err := ctx.Open(nil, s.body)
	if err != nil {
		return nil, errWrongKey
	}
	return fileKey, nil
}

// cardExchanger presents a card's ECDH as a crypto/ecdh.KeyExchanger for HPKE. Its errors reach the
// caller through hpke.NewRecipient, which adds no context, so open prefixes them.
type cardExchanger struct {
	card KeyExchanger
	pub  *ecdh.PublicKey
}

func (c cardExchanger) PublicKey() *ecdh.PublicKey { return c.pub }
func (c cardExchanger) Curve() ecdh.Curve          { return ecdh.P256() }

func (c cardExchanger) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	shared, err := c.card.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("ECDH on the card: %w", err)
	}
	if len(shared) != 32 {
		clear(shared)
		return nil, fmt.Errorf("ECDH on the card returned %d bytes, want 32", len(shared))
	}
	return shared, nil
}
