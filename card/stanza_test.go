package card

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

// TestMalformedStanzas: every structural rule of reference §3.3 (and of p256tag in age.md) refuses a
// stanza with a precise error, before any card operation.
func TestMalformedStanzas(t *testing.T) {
	id, card := newCountingIdentity(t, katKey())
	piv := wrapOne(t, id.Recipient(), make([]byte, 16))
	tagged, err := id.Recipient().TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	tag := wrapOne(t, tagged, make([]byte, 16))
	with := func(s *age.Stanza, args []string, body []byte) *age.Stanza {
		return &age.Stanza{Type: s.Type, Args: args, Body: body}
	}
	enc := base64.RawStdEncoding.EncodeToString
	uncompressed := katKey().PublicKey().Bytes()
	offCurve := append([]byte{4}, make([]byte, 64)...)

	for _, tc := range []struct {
		name string
		s    *age.Stanza
		want string
	}{
		{"piv-p256 no args", with(piv, nil, piv.Body), "piv-p256 stanza has 0 arguments, want 2"},
		{"piv-p256 three args", with(piv, append(piv.Args, "x"), piv.Body), "piv-p256 stanza has 3 arguments, want 2"},
		{"piv-p256 tag 5 chars", with(piv, []string{"1Fo/o", piv.Args[1]}, piv.Body), "piv-p256 tag is 5 characters, want 6"},
		{"piv-p256 tag padded", with(piv, []string{"1Fo/ow==", piv.Args[1]}, piv.Body), "piv-p256 tag is 8 characters, want 6"},
		{"piv-p256 tag non-canonical", with(piv, []string{"1Fo/ox", piv.Args[1]}, piv.Body), "piv-p256 tag is not canonical unpadded base64"},
		{"piv-p256 tag URL alphabet", with(piv, []string{"1Fo_ow", piv.Args[1]}, piv.Body), "piv-p256 tag is not canonical unpadded base64"},
		{"piv-p256 share 43 chars", with(piv, []string{piv.Args[0], piv.Args[1][:43]}, piv.Body), "piv-p256 ephemeral share is 43 characters, want 44"},
		{"piv-p256 share uncompressed", with(piv, []string{piv.Args[0], enc(uncompressed)}, piv.Body), "piv-p256 ephemeral share is 87 characters, want 44"},
		{"piv-p256 share prefix 04", with(piv, []string{piv.Args[0], enc(uncompressed[:33])}, piv.Body), "piv-p256 ephemeral share: key starts with 0x04"},
		{"piv-p256 share off curve", with(piv, []string{piv.Args[0], enc(notOnCurve(t))}, piv.Body), "piv-p256 ephemeral share: key is not a point on P-256"},
		{"piv-p256 body 31", with(piv, piv.Args, piv.Body[:31]), "piv-p256 body is 31 bytes, want 32"},
		{"piv-p256 body 33", with(piv, piv.Args, append(piv.Body, 0)), "piv-p256 body is 33 bytes, want 32"},
		{"piv-p256 no body", with(piv, piv.Args, nil), "piv-p256 body is 0 bytes, want 32"},
		{"p256tag one arg", with(tag, tag.Args[:1], tag.Body), "p256tag stanza has 1 arguments, want 2"},
		{"p256tag tag 7 chars", with(tag, []string{tag.Args[0] + "A", tag.Args[1]}, tag.Body), "p256tag tag is 7 characters, want 6"},
		{"p256tag enc compressed", with(tag, []string{tag.Args[0], piv.Args[1]}, tag.Body), "p256tag encapsulated key is 44 characters, want 87"},
		{"p256tag enc non-canonical", with(tag, []string{tag.Args[0], tag.Args[1][:86] + "/"}, tag.Body), "p256tag encapsulated key is not canonical unpadded base64"},
		{"p256tag enc off curve", with(tag, []string{tag.Args[0], enc(offCurve)}, tag.Body), "p256tag encapsulated key is not an uncompressed P-256 point"},
		{"p256tag body 16", with(tag, tag.Args, tag.Body[:16]), "p256tag body is 16 bytes, want 32"},
	} {
		_, err := id.Unwrap([]*age.Stanza{tc.s})
		if !errors.Is(err, ErrMalformedStanza) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Unwrap = %v, want %q", tc.name, err, tc.want)
		}
	}
	if card.calls != 0 {
		t.Errorf("%d ECDH operations on malformed stanzas", card.calls)
	}
	// The unaltered stanzas open, so each case above failed on its one change.
	for _, s := range []*age.Stanza{piv, tag} {
		if _, err := id.Unwrap([]*age.Stanza{s}); err != nil {
			t.Errorf("%s: %v", s.Type, err)
		}
	}
}
