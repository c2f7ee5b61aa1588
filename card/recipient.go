package card

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
	"filippo.io/age/plugin"
	"filippo.io/age/tag"
	"filippo.io/nistec"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// pluginName names the age plugin whose formats this package speaks: recipients age1yubikey1…,
	// identities AGE-PLUGIN-YUBIKEY-1…, binary age-plugin-yubikey.
	pluginName      = "yubikey"
	recipientPrefix = "age1" + pluginName + "1"

	compressedPointSize   = 1 + 32
	uncompressedPointSize = 1 + 32 + 32
	fileKeySize           = 16
)

// ErrMalformedRecipient is wrapped by every error about an age1yubikey1… recipient that does not parse.
var ErrMalformedRecipient = errors.New("malformed age1yubikey recipient")

// Recipient is an age1yubikey1… recipient: a P-256 public key whose private half lives on a card.
// Its Wrap writes piv-p256 stanzas exactly as age-plugin-yubikey 0.5 does, so the stanzas open with
// that plugin too. It does not implement age.RecipientWithLabels: like age-plugin-yubikey it has no
// labels and mixes with X25519 recipients.
type Recipient struct {
	pub        *ecdh.PublicKey
	compressed []byte // the 33-byte SEC1 compressed point, the Bech32 payload
	tag        [4]byte

	// ephemeral returns the ephemeral key of the next stanza; nil means a fresh random key. Tests set
	// it to reproduce known stanzas.
	ephemeral func() (*ecdh.PrivateKey, error)
}

var _ age.Recipient = &Recipient{}

// ParseRecipient parses an age1yubikey1… recipient.
func ParseRecipient(s string) (*Recipient, error) {
	if !strings.HasPrefix(s, recipientPrefix) {
		return nil, fmt.Errorf("card: %w %q: does not start with %q", ErrMalformedRecipient, s, recipientPrefix)
	}
	name, data, err := plugin.ParseRecipient(s)
	if err != nil {
		return nil, fmt.Errorf("card: %w %q: %v", ErrMalformedRecipient, s, err)
	}
	if name != pluginName {
		return nil, fmt.Errorf("card: %w %q: Bech32 prefix names plugin %q, want %q", ErrMalformedRecipient, s, name, pluginName)
	}
	r, err := newRecipientFromPoint(data)
	if err != nil {
		return nil, fmt.Errorf("card: %w %q: %v", ErrMalformedRecipient, s, err)
	}
	return r, nil
}

// NewRecipient returns the recipient for a P-256 public key, such as the one in a slot's certificate.
func NewRecipient(pub *ecdh.PublicKey) (*Recipient, error) {
	if pub == nil || pub.Curve() != ecdh.P256() {
		return nil, errors.New("card: recipient key is not a P-256 key")
	}
	p, err := nistec.NewP256Point().SetBytes(pub.Bytes())
	if err != nil {
		return nil, fmt.Errorf("card: recipient key: %v", err)
	}
	return newRecipientFromPoint(p.BytesCompressed())
}

// newRecipientFromPoint parses the Bech32 payload of a recipient: exactly a compressed encoding of a
// point on P-256, as age-plugin-yubikey's Recipient::from_bytes requires.
func newRecipientFromPoint(b []byte) (*Recipient, error) {
	pub, err := parseCompressedPoint(b)
	if err != nil {
		return nil, err
	}
	return &Recipient{pub: pub, compressed: b, tag: keyTag(b)}, nil
}

// parseCompressedPoint returns the P-256 public key of a 33-byte SEC1 compressed point.
func parseCompressedPoint(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != compressedPointSize {
		return nil, fmt.Errorf("key is %d bytes, want %d (a compressed P-256 point)", len(b), compressedPointSize)
	}
	if b[0] != 0x02 && b[0] != 0x03 {
		return nil, fmt.Errorf("key starts with 0x%02x, want 0x02 or 0x03 (a compressed P-256 point)", b[0])
	}
	p, err := nistec.NewP256Point().SetBytes(b)
	if err != nil {
		return nil, errors.New("key is not a point on P-256")
	}
	pub, err := ecdh.P256().NewPublicKey(p.Bytes())
	if err != nil {
		return nil, fmt.Errorf("key: %v", err)
	}
	return pub, nil
}

// keyTag is the 4-byte tag of a key: the first four bytes of SHA-256 over its compressed point. Both
// the identity stub and each piv-p256 stanza carry it.
func keyTag(compressed []byte) [4]byte {
	h := sha256.Sum256(compressed)
	return [4]byte(h[:4])
}

// String returns the age1yubikey1… encoding.
func (r *Recipient) String() string {
	return plugin.EncodeRecipient(pluginName, r.compressed)
}

// PublicKey returns the recipient's P-256 public key.
func (r *Recipient) PublicKey() *ecdh.PublicKey { return r.pub }

// Tag returns the key's 4-byte tag, as carried by its identity stub and its piv-p256 stanzas.
func (r *Recipient) Tag() [4]byte { return r.tag }

// TagRecipient returns the same key as a native age1tag1… recipient (filippo.io/age/tag), whose
// p256tag stanzas the card-backed Identity also opens.
func (r *Recipient) TagRecipient() (*tag.Recipient, error) {
	t, err := tag.NewClassicRecipient(r.compressed)
	if err != nil {
		return nil, fmt.Errorf("card: tag recipient: %v", err)
	}
	return t, nil
}

// Wrap encrypts fileKey to the card's key in one piv-p256 stanza.
func (r *Recipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	if len(fileKey) != fileKeySize {
		return nil, fmt.Errorf("card: file key is %d bytes, want %d", len(fileKey), fileKeySize)
	}
	newEphemeral := r.ephemeral
	if newEphemeral == nil {
		newEphemeral = func() (*ecdh.PrivateKey, error) { return ecdh.P256().GenerateKey(rand.Reader) }
	}
	esk, err := newEphemeral()
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256 ephemeral key: %v", err)
	}
	epk, err := nistec.NewP256Point().SetBytes(esk.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256 ephemeral key: %v", err)
	}
	shared, err := esk.ECDH(r.pub)
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256 ECDH: %v", err)
	}
	s := &pivP256Stanza{tag: r.tag, epk: epk.BytesCompressed()}
	s.body, err = pivP256Seal(shared, s.epk, r.compressed, fileKey)
	if err != nil {
		return nil, err
	}
	return []*age.Stanza{s.stanza()}, nil
}

// pivP256Key derives a stanza's wrap key from the ECDH x coordinate: HKDF-SHA-256 with salt
// epk ‖ recipient (both compressed) and info "piv-p256". It wipes shared.
func pivP256Key(shared, epk, recipient []byte) ([]byte, error) {
	defer clear(shared)
	if len(shared) != 32 {
		return nil, fmt.Errorf("card: piv-p256: ECDH returned %d bytes, want 32", len(shared))
	}
	salt := make([]byte, 0, len(epk)+len(recipient))
	salt = append(append(salt, epk...), recipient...)
	key, err := hkdf.Key(sha256.New, shared, salt, pivP256Type, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256 HKDF: %v", err)
	}
	return key, nil
}

// pivP256Seal encrypts fileKey for a piv-p256 stanza: ChaCha20-Poly1305 under the derived key with a
// zero nonce and no associated data.
func pivP256Seal(shared, epk, recipient, fileKey []byte) ([]byte, error) {
	key, err := pivP256Key(shared, epk, recipient)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("card: piv-p256: %v", err)
	}
	return aead.Seal(nil, make([]byte, chacha20poly1305.NonceSize), fileKey, nil), nil
}
