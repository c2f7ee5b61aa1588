package card

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/age/plugin"
	"filippo.io/nistec"
)

func TestRecipientRoundTrip(t *testing.T) {
	for range 20 {
		key, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRecipient(key.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		s := r.String()
		if !strings.HasPrefix(s, "age1yubikey1") || len(s) != 71 {
			t.Fatalf("recipient %q: want age1yubikey1 and 71 characters", s)
		}
		r2, err := ParseRecipient(s)
		if err != nil {
			t.Fatal(err)
		}
		if !r2.PublicKey().Equal(key.PublicKey()) || r2.Tag() != r.Tag() || r2.String() != s {
			t.Fatalf("%s did not round-trip", s)
		}
		// The age1tag1… form holds the same point.
		tr, err := r.TagRecipient()
		if err != nil {
			t.Fatal(err)
		}
		_, data, err := plugin.ParseRecipient(tr.String())
		if err != nil || !bytes.Equal(data, r.compressed) || !strings.HasPrefix(tr.String(), "age1tag1") {
			t.Fatalf("tag recipient %s does not hold %x (%v)", tr, r.compressed, err)
		}
	}
}

func TestNewRecipientRefusesOtherCurves(t *testing.T) {
	key, err := ecdh.P384().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRecipient(key.PublicKey()); err == nil || !strings.Contains(err.Error(), "not a P-256 key") {
		t.Errorf("NewRecipient(P-384 key) = %v", err)
	}
}

// notOnCurve returns a 33-byte compressed encoding whose x coordinate has no point on P-256.
func notOnCurve(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, compressedPointSize)
	b[0] = 0x02
	for x := byte(1); x < 255; x++ {
		b[32] = x
		if _, err := nistec.NewP256Point().SetBytes(b); err != nil {
			return b
		}
	}
	t.Fatal("no x without a point found")
	return nil
}

func TestParseRecipientMalformed(t *testing.T) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uncompressed := key.PublicKey().Bytes()
	good, err := NewRecipient(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s := good.String()
	badChecksum := s[:len(s)-1] + "q"
	if s[len(s)-1] == 'q' {
		badChecksum = s[:len(s)-1] + "p"
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", `does not start with "age1yubikey1"`},
		{"X25519 recipient", "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj", `does not start with "age1yubikey1"`},
		{"tag recipient", plugin.EncodeRecipient("tag", good.compressed), `does not start with "age1yubikey1"`},
		{"upper case", strings.ToUpper(s), `does not start with "age1yubikey1"`},
		{"mixed case", s[:20] + strings.ToUpper(s[20:]), "mixed case"},
		{"bad checksum", badChecksum, "invalid checksum"},
		{"bad character", s[:30] + "b" + s[31:], "invalid character data part"},
		{"truncated", s[:len(s)-10], "invalid checksum"},
		{"other plugin behind the prefix", plugin.EncodeRecipient("yubikey1x", good.compressed), `names plugin "yubikey1x", want "yubikey"`},
		{"empty payload", plugin.EncodeRecipient("yubikey", nil), "key is 0 bytes, want 33"},
		{"uncompressed point", plugin.EncodeRecipient("yubikey", uncompressed), "key is 65 bytes, want 33"},
		{"32 bytes", plugin.EncodeRecipient("yubikey", uncompressed[1:33]), "key is 32 bytes, want 33"},
		{"34 bytes", plugin.EncodeRecipient("yubikey", append(bytes.Clone(good.compressed), 0)), "key is 34 bytes, want 33"},
		{"0x04 prefix", plugin.EncodeRecipient("yubikey", append([]byte{4}, uncompressed[1:33]...)), "key starts with 0x04, want 0x02 or 0x03"},
		{"0x00 prefix", plugin.EncodeRecipient("yubikey", make([]byte, 33)), "key starts with 0x00"},
		{"not on the curve", plugin.EncodeRecipient("yubikey", notOnCurve(t)), "key is not a point on P-256"},
	} {
		_, err := ParseRecipient(tc.in)
		if !errors.Is(err, ErrMalformedRecipient) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseRecipient(%q) = %v, want %q", tc.name, tc.in, err, tc.want)
		}
	}
}

func TestWrapRefusesBadFileKey(t *testing.T) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecipient(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wrap(make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "file key is 32 bytes, want 16") {
		t.Errorf("Wrap(32 bytes) = %v", err)
	}
}

// TestWrapFreshEphemeral: without the test seam every stanza has its own ephemeral key.
func TestWrapFreshEphemeral(t *testing.T) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecipient(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 10 {
		ss, err := r.Wrap(make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ss[0].Args[1]] {
			t.Fatalf("ephemeral share %s used twice", ss[0].Args[1])
		}
		seen[ss[0].Args[1]] = true
	}
}
