package hsm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

// TestAdopt: a legacy RFC 5649 blob of a P-256 CA key under an AES-128, -192 or -256 legacy key is
// unwrapped in the token, proven against the CA public key and re-wrapped under a new KEK; the new file
// opens in software to the CA key, the legacy key does not open it, and the token keeps nothing. A blob
// of another key is refused as not proven, and a wrong legacy key fails at the unwrap; neither leaves
// anything in the token.
func TestAdopt(t *testing.T) {
	tok := testenv.SoftHSMToken(t, "adopt")
	s := open(t, tok)
	ca := testenv.Key(t, "p256")
	der, err := x509.MarshalPKCS8PrivateKey(ca)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := s.Probe(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{16, 24, 32} {
		legacy, newKEK := randKey(size), randKey(32)
		blob := legacyKWP(t, legacy, der)
		req := hsm.AdoptRequest{LegacyKey: legacy, Blob: blob, NewKEK: newKEK, CAPublic: ca.Public(), Probe: probe,
			RecordID: "test", ManifestKey: "SHA256:test"}
		res, err := s.Adopt(context.Background(), req)
		if err != nil {
			t.Fatalf("AES-%d: %v", size*8, err)
		}
		if err := res.Proof.Verify(ca.Public()); err != nil {
			t.Fatal(err)
		}
		if _, err := hsm.SoftwareCheck(newKEK, res.File, ca.Public()); err != nil {
			t.Fatal(err)
		}
		if _, err := res.File.Marshal(); err != nil {
			t.Fatal(err)
		}
		if _, err := wrap.Unwrap(legacy, res.File.Blob); err == nil {
			t.Fatal("the legacy key opens the new blob")
		}
		requireNoObjects(t, tok)

		// The certificate names a key of another algorithm: refused at the unwrap, nothing left.
		bad := req
		bad.CAPublic = testenv.Key(t, "p384").Public()
		if _, err := s.Adopt(context.Background(), bad); err == nil {
			t.Fatal("a P-256 blob was adopted as P-384")
		}
		requireNoObjects(t, tok)

		// A wrong legacy key: the unwrap fails in the token.
		bad = req
		bad.LegacyKey = randKey(size)
		if _, err := s.Adopt(context.Background(), bad); err == nil {
			t.Fatal("adopted under a wrong legacy key")
		}
		requireNoObjects(t, tok)
	}
}

// TestAdoptRefusesAnotherKey: the key inside the blob is another P-256 key than the certificate's: the
// proof of possession fails and names it.
func TestAdoptRefusesAnotherKey(t *testing.T) {
	tok := testenv.SoftHSMToken(t, "adopt-other")
	s := open(t, tok)
	inside := testenv.Key(t, "p256")
	named, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(inside)
	if err != nil {
		t.Fatal(err)
	}
	legacy := randKey(32)
	blob, _ := wrap.Wrap(legacy, der)
	_, err = s.Adopt(context.Background(), hsm.AdoptRequest{LegacyKey: legacy, Blob: blob, NewKEK: randKey(32), CAPublic: named.Public(),
		RecordID: "test", ManifestKey: "SHA256:test"})
	if !errors.Is(err, hsm.ErrNotProven) {
		t.Fatalf("got %v, want %v", err, hsm.ErrNotProven)
	}
	requireNoObjects(t, tok)
}

// legacyKWP wraps der under key with RFC 5649: tink-go for AES-128 and -256, OpenSSL for AES-192, which
// tink-go does not do.
func legacyKWP(t *testing.T, key, der []byte) []byte {
	t.Helper()
	if len(key) != 24 {
		b, err := wrap.Wrap(key, der)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	openssl := testenv.RequireTool(t, "openssl")
	in := filepath.Join(t.TempDir(), "ca.p8")
	if err := os.WriteFile(in, der, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(openssl, "enc", "-id-aes192-wrap-pad", "-K", hex.EncodeToString(key), "-iv", "A65959A6", "-in", in).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return b
}

func randKey(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
