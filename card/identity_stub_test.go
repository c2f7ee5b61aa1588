package card

import (
	"errors"
	"strings"
	"testing"

	"filippo.io/age/plugin"
)

func TestStubRoundTrip(t *testing.T) {
	for _, st := range []Stub{
		{0, FirstRetiredSlot, [4]byte{}},
		{1, 0x88, [4]byte{1, 2, 3, 4}},
		{0xffffffff, LastRetiredSlot, [4]byte{0xff, 0xfe, 0xfd, 0xfc}},
	} {
		s := st.String()
		if !strings.HasPrefix(s, "AGE-PLUGIN-YUBIKEY-1") || len(s) != 41 {
			t.Fatalf("%+v encoded as %q: want AGE-PLUGIN-YUBIKEY-1 and 41 characters", st, s)
		}
		got, err := ParseStub(s)
		if err != nil {
			t.Fatal(err)
		}
		if got != st {
			t.Fatalf("%s parsed as %+v, want %+v", s, got, st)
		}
	}
}

// TestParseStubTrailingBytes: like age-plugin-yubikey, bytes after the 9-byte payload are ignored.
func TestParseStubTrailingBytes(t *testing.T) {
	st, err := ParseStub(plugin.EncodeIdentity("yubikey", []byte{0x2a, 0, 0, 0, 0x82, 7, 7, 7, 7, 0xaa}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stub{42, 0x82, [4]byte{7, 7, 7, 7}}); st != want {
		t.Fatalf("parsed %+v, want %+v", st, want)
	}
	if st.String() != "AGE-PLUGIN-YUBIKEY-19GQQQQYZQURSWPCKSHMQG" {
		t.Errorf("re-encoded as %s", st)
	}
}

func TestParseStubMalformed(t *testing.T) {
	good := Stub{42, 0x82, [4]byte{7, 7, 7, 7}}.String()
	payload := func(slot byte, n int) string {
		return plugin.EncodeIdentity("yubikey", []byte{0x2a, 0, 0, 0, slot, 7, 7, 7, 7}[:n])
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", `does not start with "AGE-PLUGIN-YUBIKEY-1"`},
		{"lower case", strings.ToLower(good), "must be upper case"},
		{"other plugin", plugin.EncodeIdentity("se", []byte{1, 2, 3}), `does not start with "AGE-PLUGIN-YUBIKEY-1"`},
		{"native identity", "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX", `does not start with "AGE-PLUGIN-YUBIKEY-1"`},
		{"mixed case", good[:25] + strings.ToLower(good[25:]), "mixed case"},
		{"bad checksum", good[:len(good)-1] + map[bool]string{true: "Q", false: "P"}[good[len(good)-1] != 'Q'], "invalid checksum"},
		{"bad character", good[:25] + "B" + good[26:], "invalid character data part"},
		{"other plugin behind the prefix", plugin.EncodeIdentity("yubikey-1x", []byte{1}), `names plugin "yubikey-1x", want "yubikey"`},
		{"empty payload", payload(0x82, 0), "payload is 0 bytes, want 9"},
		{"8-byte payload", payload(0x82, 8), "payload is 8 bytes, want 9"},
		{"slot 9a", payload(0x9a, 9), "slot 0x9a is not a retired key management slot"},
		{"slot 81", payload(0x81, 9), "slot 0x81 is not a retired key management slot"},
		{"slot 96", payload(0x96, 9), "slot 0x96 is not a retired key management slot"},
	} {
		_, err := ParseStub(tc.in)
		if !errors.Is(err, ErrMalformedIdentity) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseStub(%q) = %v, want %q", tc.name, tc.in, err, tc.want)
		}
	}
}

func TestNewStubRefusesNonRetiredSlots(t *testing.T) {
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range []byte{0x9a, 0x9c, 0x9d, 0x9e, 0x81, 0x96} {
		if _, err := NewStub(1, slot, r); err == nil {
			t.Errorf("NewStub accepted slot 0x%02x", slot)
		}
	}
}

func TestStubIdentity(t *testing.T) {
	key := katKey()
	st := katStub(t)
	id, err := st.Identity(key, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if id.Recipient().Tag() != st.Tag {
		t.Errorf("identity tag %x, stub tag %x", id.Recipient().Tag(), st.Tag)
	}
	other := anotherKey()
	_, err = st.Identity(other, other.PublicKey())
	if !errors.Is(err, ErrStubKeyMismatch) || !strings.Contains(err.Error(), "YubiKey 12345678 slot 0x82") {
		t.Errorf("Identity with another key: %v", err)
	}
}
