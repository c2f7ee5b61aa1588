package card

import (
	"errors"
	"testing"

	"filippo.io/age"
)

// The fuzz targets' seed corpora are in testdata/fuzz/<target>/: the reference vectors and malformed
// variants of them.

// FuzzParseRecipient: parsing never panics, refusals wrap ErrMalformedRecipient, and what parses is
// canonical (re-encodes to the input).
func FuzzParseRecipient(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipient(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedRecipient) {
				t.Fatalf("error does not wrap ErrMalformedRecipient: %v", err)
			}
			return
		}
		if r.String() != s {
			t.Fatalf("%q parsed but re-encodes as %q", s, r.String())
		}
	})
}

// FuzzParseStub: parsing never panics, refusals wrap ErrMalformedIdentity, and a parsed stub
// survives re-encoding.
func FuzzParseStub(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStub(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedIdentity) {
				t.Fatalf("error does not wrap ErrMalformedIdentity: %v", err)
			}
			return
		}
		st2, err := ParseStub(st.String())
		if err != nil || st2 != st {
			t.Fatalf("%+v re-encoded as %q parses as %+v, %v", st, st.String(), st2, err)
		}
	})
}

// FuzzUnwrapStanza feeds one stanza to the card-backed identity of the reference KAT key: it never
// panics, every outcome is a 16-byte file key, "not this identity" or a malformed-stanza refusal, and
// a piv-p256 stanza that opens is canonical.
func FuzzUnwrapStanza(f *testing.F) {
	key := katKey()
	id, err := NewIdentity(key, key.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, arg0, arg1 string, body []byte) {
		s := &age.Stanza{Type: typ, Args: []string{arg0, arg1}, Body: body}
		fileKey, err := id.Unwrap([]*age.Stanza{s})
		switch {
		case err == nil:
			if len(fileKey) != fileKeySize {
				t.Fatalf("file key of %d bytes", len(fileKey))
			}
			if typ == pivP256Type {
				p, err := parsePIVP256Stanza(s)
				if err != nil {
					t.Fatalf("opened a stanza that does not parse: %v", err)
				}
				if c := p.stanza(); c.Args[0] != arg0 || c.Args[1] != arg1 {
					t.Fatalf("opened a non-canonical stanza %q %q", arg0, arg1)
				}
			}
		case errors.Is(err, age.ErrIncorrectIdentity), errors.Is(err, ErrMalformedStanza):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	})
}
