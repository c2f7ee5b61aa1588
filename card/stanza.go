package card

import (
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

const pivP256Type = "piv-p256"

// ErrMalformedStanza is wrapped by every error about a piv-p256 or p256tag stanza that does not parse.
// As in age-plugin-yubikey, one malformed stanza stops the whole file from being unwrapped.
var ErrMalformedStanza = errors.New("malformed stanza")

// errWrongKey says that a stanza carrying a key's tag did not decrypt with that key: the 4-byte tag
// matched by chance, or the stanza was altered.
var errWrongKey = errors.New("stanza does not decrypt with this key")

// b64 is the stanza argument encoding: standard alphabet, no padding, canonical trailing bits.
var b64 = base64.RawStdEncoding.Strict()

// cardStanza is a parsed stanza addressed to a P-256 key on a card: piv-p256 or p256tag.
type cardStanza interface {
	// matches reports whether the stanza carries the tag of the key whose tag (keyTag) is given.
	matches(keyTag [4]byte) bool
	// open unwraps the file key with the card's ECDH; errWrongKey when the stanza does not decrypt.
	open(card KeyExchanger, r *Recipient) ([]byte, error)
}

// matchingStanzas parses every piv-p256 and p256tag stanza of one file and returns those carrying the
// tag of the key whose tag is given. Other stanza types are ignored; a malformed stanza of these two
// types is an error, before any card is used.
func matchingStanzas(stanzas []*age.Stanza, keyTag [4]byte) ([]cardStanza, error) {
	var matches []cardStanza
	for i, s := range stanzas {
		var cs cardStanza
		var err error
		switch s.Type {
		case pivP256Type:
			cs, err = parsePIVP256Stanza(s)
		case p256tagType:
			cs, err = parseP256TagStanza(s)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("card: stanza %d: %w", i, err)
		}
		if cs.matches(keyTag) {
			matches = append(matches, cs)
		}
	}
	return matches, nil
}

// decodeArg decodes a base64 stanza argument that must encode exactly n bytes.
func decodeArg(typ, what, arg string, n int) ([]byte, error) {
	if want := b64.EncodedLen(n); len(arg) != want {
		return nil, fmt.Errorf("%w: %s %s is %d characters, want %d", ErrMalformedStanza, typ, what, len(arg), want)
	}
	// Go's decoder skips CR and LF, so the decoded length is checked too.
	b, err := b64.DecodeString(arg)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%w: %s %s is not canonical unpadded base64", ErrMalformedStanza, typ, what)
	}
	return b, nil
}

// pivP256Stanza is "-> piv-p256 TAG EPK" with a 32-byte body: the recipient key's tag, the compressed
// ephemeral public key, and the ChaCha20-Poly1305-encrypted file key.
type pivP256Stanza struct {
	tag  [4]byte
	epk  []byte // 33-byte compressed point
	body []byte

	epkKey *ecdh.PublicKey // set by parsePIVP256Stanza
}

func parsePIVP256Stanza(s *age.Stanza) (*pivP256Stanza, error) {
	if len(s.Args) != 2 {
		return nil, fmt.Errorf("%w: piv-p256 stanza has %d arguments, want 2", ErrMalformedStanza, len(s.Args))
	}
	tag, err := decodeArg(pivP256Type, "tag", s.Args[0], 4)
	if err != nil {
		return nil, err
	}
	epk, err := decodeArg(pivP256Type, "ephemeral share", s.Args[1], compressedPointSize)
	if err != nil {
		return nil, err
	}
	epkKey, err := parseCompressedPoint(epk)
	if err != nil {
		return nil, fmt.Errorf("%w: piv-p256 ephemeral share: %v", ErrMalformedStanza, err)
	}
	if want := fileKeySize + chacha20poly1305.Overhead; len(s.Body) != want {
		return nil, fmt.Errorf("%w: piv-p256 body is %d bytes, want %d", ErrMalformedStanza, len(s.Body), want)
	}
	return &pivP256Stanza{tag: [4]byte(tag), epk: epk, body: s.Body, epkKey: epkKey}, nil
}

func (s *pivP256Stanza) stanza() *age.Stanza {
	return &age.Stanza{
		Type: pivP256Type,
		Args: []string{b64.EncodeToString(s.tag[:]), b64.EncodeToString(s.epk)},
		Body: s.body,
	}
}

func (s *pivP256Stanza) matches(keyTag [4]byte) bool { return s.tag == keyTag }

func (s *pivP256Stanza) open(card KeyExchanger, r *Recipient) ([]byte, error) {
	shared, err := card.ECDH(s.epkKey)
	if err != nil {
		return nil, fmt.Errorf("card: ECDH on the card: %w", err)
	}
	key, err := pivP256Key(shared, s.epk, r.compressed)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256: %v", err)
	}
	fileKey, err := aead.Open(nil, make([]byte, chacha20poly1305.NonceSize), s.body, nil)
	if err != nil {
		return nil, errWrongKey
	}
	return fileKey, nil
}
