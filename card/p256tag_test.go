package card

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/age"
	"filippo.io/age/tag"
	"filippo.io/hpke"
)

// tagReferenceUnwrap is filippo.io/age/tag's own p256tag decryption with a software key (its
// internal tagtest.ClassicIdentity, which custos cannot import): the tag from tag.Recipient.Tag and
// HPKE with an in-memory DHKEM(P-256) private key.
func tagReferenceUnwrap(t *testing.T, key *ecdh.PrivateKey, tr *tag.Recipient, s *age.Stanza) ([]byte, error) {
	t.Helper()
	enc, err := b64.DecodeString(s.Args[1])
	if err != nil {
		t.Fatal(err)
	}
	wantTag, err := tr.Tag(enc)
	if err != nil {
		t.Fatal(err)
	}
	if s.Args[0] != b64.EncodeToString(wantTag) {
		return nil, age.ErrIncorrectIdentity
	}
	priv, err := hpke.DHKEM(ecdh.P256()).NewPrivateKey(key.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(enc, priv, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("age-encryption.org/p256tag"))
	if err != nil {
		return nil, err
	}
	return r.Open(nil, s.Body)
}

// TestP256TagEqualsAgeTag: for stanzas written by filippo.io/age/tag, the card-side decapsulation
// (hpke.NewDHKEMPrivateKey over the KeyExchanger) gives what age/tag's software decryption gives, and
// both refuse an altered stanza.
func TestP256TagEqualsAgeTag(t *testing.T) {
	for range 16 {
		key, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, card := newCountingIdentity(t, key)
		tr, err := id.Recipient().TagRecipient()
		if err != nil {
			t.Fatal(err)
		}
		fileKey := make([]byte, 16)
		rand.Read(fileKey)
		s := wrapOne(t, tr, fileKey)
		if s.Type != "p256tag" {
			t.Fatalf("age/tag wrote a %s stanza", s.Type)
		}
		ours, err := id.Unwrap([]*age.Stanza{s})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := tagReferenceUnwrap(t, key, tr, s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, ref) || !bytes.Equal(ours, fileKey) {
			t.Fatalf("card-side %x, age/tag %x, file key %x", ours, ref, fileKey)
		}
		if card.calls != 1 {
			t.Fatalf("%d ECDH operations, want 1", card.calls)
		}

		altered := &age.Stanza{Type: s.Type, Args: s.Args, Body: bytes.Clone(s.Body)}
		altered.Body[5] ^= 0x80
		if _, err := tagReferenceUnwrap(t, key, tr, altered); err == nil {
			t.Fatal("age/tag's decryption opened an altered stanza")
		}
		if _, err := id.Unwrap([]*age.Stanza{altered}); !errors.Is(err, age.ErrIncorrectIdentity) {
			t.Fatalf("card-side decryption of an altered stanza: %v", err)
		}
	}
}

// TestP256TagAgePluginTagtest: the key age's own p256tag test plugin derives (hpke DeriveKeyPair
// "age-plugin-tagtest") is the recipient hard-coded there, and files age encrypts to that recipient
// string open with the card-backed identity.
func TestP256TagAgePluginTagtest(t *testing.T) {
	const classicRecipient = "age1tag1qwe0kafsjrar4txm6heqnhpfuggzr0gvznz7fvygxrlq90u5mq2pysxtw6h"
	priv, err := hpke.DHKEM(ecdh.P256()).DeriveKeyPair([]byte("age-plugin-tagtest"))
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := newCountingIdentity(t, key)
	tr, err := id.Recipient().TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	if tr.String() != classicRecipient {
		t.Fatalf("tag recipient %s, want %s", tr, classicRecipient)
	}
	parsed, err := tag.ParseRecipient(classicRecipient)
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("p256tag")
	got, err := decryptNative(t, encryptNative(t, plaintext, parsed), id)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("decrypted %q, %v", got, err)
	}
}

// TestP256TagCollision: another key's p256tag stanza relabelled with this key's tag reaches the card
// but is refused as not this identity's, as in filippo.io/age/tag's TestTagCollision.
func TestP256TagCollision(t *testing.T) {
	id, card := newCountingIdentity(t, katKey())
	tr, err := id.Recipient().TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewRecipient(anotherKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	otherTag, err := other.TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	s := wrapOne(t, otherTag, make([]byte, 16))
	enc, err := b64.DecodeString(s.Args[1])
	if err != nil {
		t.Fatal(err)
	}
	forged, err := tr.Tag(enc)
	if err != nil {
		t.Fatal(err)
	}
	s.Args[0] = b64.EncodeToString(forged)
	if _, err := id.Unwrap([]*age.Stanza{s}); !errors.Is(err, age.ErrIncorrectIdentity) {
		t.Fatalf("Unwrap = %v, want age.ErrIncorrectIdentity", err)
	}
	if card.calls != 1 {
		t.Errorf("%d ECDH operations, want 1 (the forged tag matches)", card.calls)
	}
}
