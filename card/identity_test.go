package card

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

// countingCard is a software card that counts its ECDH operations (each a touch on a real card) and
// can be made to fail like one.
type countingCard struct {
	key   *ecdh.PrivateKey
	calls int
	err   error
	short bool
}

func (c *countingCard) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	c.calls++
	if c.err != nil {
		return nil, c.err
	}
	s, err := c.key.ECDH(peer)
	if c.short {
		return s[:31], err
	}
	return s, err
}

func newCountingIdentity(t *testing.T, key *ecdh.PrivateKey) (*Identity, *countingCard) {
	t.Helper()
	c := &countingCard{key: key}
	id, err := NewIdentity(c, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return id, c
}

func wrapOne(t *testing.T, r age.Recipient, fileKey []byte) *age.Stanza {
	t.Helper()
	ss, err := r.Wrap(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 {
		t.Fatalf("%d stanzas, want 1", len(ss))
	}
	return ss[0]
}

func TestIdentityRoundTrip(t *testing.T) {
	id, card := newCountingIdentity(t, anotherKey())
	x25519, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	plaintext := bytes.Repeat([]byte("custos "), 10000)
	file := encryptNative(t, plaintext, x25519.Recipient(), other, id.Recipient())
	for _, ids := range [][]age.Identity{{id}, {x25519}} {
		got, err := decryptNative(t, file, ids...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatal("plaintext differs")
		}
	}
	if card.calls != 1 {
		t.Errorf("%d ECDH operations for one file, want 1 (the other key's stanza must not reach the card)", card.calls)
	}
}

// TestIdentityOtherKey: stanzas for other keys never reach the card and give age.ErrIncorrectIdentity.
func TestIdentityOtherKey(t *testing.T) {
	id, card := newCountingIdentity(t, katKey())
	other, err := NewRecipient(anotherKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := other.TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	fileKey := make([]byte, 16)
	stanzas := []*age.Stanza{wrapOne(t, other, fileKey), wrapOne(t, tagged, fileKey), wrapOne(t, x25519.Recipient(), fileKey)}
	if _, err := id.Unwrap(stanzas); err != age.ErrIncorrectIdentity {
		t.Errorf("Unwrap = %v, want age.ErrIncorrectIdentity", err)
	}
	if card.calls != 0 {
		t.Errorf("%d ECDH operations for stanzas of other keys", card.calls)
	}
}

// TestIdentityTagCollision: a stanza carrying the key's tag that does not decrypt is skipped, the next
// one is tried, and if none decrypts the error says so and wraps age.ErrIncorrectIdentity.
func TestIdentityTagCollision(t *testing.T) {
	id, card := newCountingIdentity(t, katKey())
	fileKey := bytes.Repeat([]byte{1}, 16)
	good := wrapOne(t, id.Recipient(), fileKey)
	collided := wrapOne(t, id.Recipient(), fileKey)
	collided.Body = bytes.Clone(collided.Body)
	collided.Body[0] ^= 1

	got, err := id.Unwrap([]*age.Stanza{collided, good})
	if err != nil || !bytes.Equal(got, fileKey) {
		t.Fatalf("Unwrap(collided, good) = %x, %v", got, err)
	}
	if card.calls != 2 {
		t.Errorf("%d ECDH operations, want 2", card.calls)
	}
	_, err = id.Unwrap([]*age.Stanza{collided})
	if !errors.Is(err, age.ErrIncorrectIdentity) || !strings.Contains(err.Error(), "1 stanza(s) carry the tag d45a3fa3 of this key but do not decrypt with it") {
		t.Errorf("Unwrap(collided) = %v", err)
	}
}

// TestIdentityCardFailure: a failing card is an error of its own, never "wrong identity".
func TestIdentityCardFailure(t *testing.T) {
	errPINBlocked := errors.New("PIN blocked")
	id, card := newCountingIdentity(t, katKey())
	tagged, err := id.Recipient().TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []age.Recipient{id.Recipient(), tagged} {
		s := wrapOne(t, r, make([]byte, 16))
		card.err, card.short = errPINBlocked, false
		_, err := id.Unwrap([]*age.Stanza{s})
		if !errors.Is(err, errPINBlocked) || errors.Is(err, age.ErrIncorrectIdentity) || !strings.Contains(err.Error(), "ECDH on the card") {
			t.Errorf("%s: card error gave %v", s.Type, err)
		}
		card.err, card.short = nil, true
		_, err = id.Unwrap([]*age.Stanza{s})
		if err == nil || errors.Is(err, age.ErrIncorrectIdentity) || !strings.Contains(err.Error(), "returned 31 bytes, want 32") {
			t.Errorf("%s: short ECDH result gave %v", s.Type, err)
		}
	}
}

// TestIdentityMalformedStanzaStopsFile: one malformed piv-p256 or p256tag stanza is an error for the
// whole file, before the card is used, even when a good stanza follows (as in age-plugin-yubikey).
func TestIdentityMalformedStanzaStopsFile(t *testing.T) {
	id, card := newCountingIdentity(t, katKey())
	good := wrapOne(t, id.Recipient(), make([]byte, 16))
	bad := &age.Stanza{Type: "piv-p256", Args: []string{"1Fo/ow"}, Body: good.Body}
	_, err := id.Unwrap([]*age.Stanza{bad, good})
	if !errors.Is(err, ErrMalformedStanza) || !strings.Contains(err.Error(), "stanza 0: malformed stanza: piv-p256 stanza has 1 arguments, want 2") {
		t.Errorf("Unwrap = %v", err)
	}
	if card.calls != 0 {
		t.Errorf("%d ECDH operations before the malformed stanza was refused", card.calls)
	}
}
