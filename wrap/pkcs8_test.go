package wrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

func testFile(t *testing.T, kek, plain []byte, pub any) *File {
	t.Helper()
	blob, err := Wrap(kek, plain)
	if err != nil {
		t.Fatal(err)
	}
	kcv, _ := KCV(kek)
	fp, err := Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &File{KEKCheck: kcv, Fingerprint: fp, KeyAlg: "p384", Mechanism: "test", Blob: blob}
}

func TestUnwrapPKCS8(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	kek := make([]byte, KEKSize)
	rand.Read(kek)

	got, quirk, err := UnwrapPKCS8(kek, testFile(t, kek, der, k.Public()))
	if err != nil || quirk != QuirkNone || !got.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("exact blob: %v %q", err, quirk)
	}

	// SoftHSM 2.6.1's zero padding to a multiple of 8 is accepted and reported.
	pad := (8 - len(der)%8) % 8
	if pad == 0 {
		t.Fatalf("test key DER is %d bytes; need one that is not a multiple of 8", len(der))
	}
	padded := append(bytes.Clone(der), make([]byte, pad)...)
	if _, quirk, err := UnwrapPKCS8(kek, testFile(t, kek, padded, k.Public())); err != nil || quirk != QuirkSoftHSMZeroPad {
		t.Fatalf("zero-padded blob: %v %q", err, quirk)
	}

	// Nothing looser: one zero byte more or less than the padding, a non-zero pad byte, or 8 zero bytes.
	for name, plain := range map[string][]byte{
		"short pad":    append(bytes.Clone(der), make([]byte, pad-1+8*boolInt(pad == 1))...),
		"long pad":     append(bytes.Clone(der), make([]byte, pad+1)...),
		"eight zeros":  append(bytes.Clone(der), make([]byte, 8)...),
		"non-zero pad": append(append(bytes.Clone(der), make([]byte, pad-1)...), 1),
	} {
		if _, _, err := UnwrapPKCS8(kek, testFile(t, kek, plain, k.Public())); !errors.Is(err, ErrPKCS8) {
			t.Errorf("%s: %v, want ErrPKCS8", name, err)
		}
	}

	// A blob of another key under a file naming this one.
	k2, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der2, _ := x509.MarshalPKCS8PrivateKey(k2)
	if _, _, err := UnwrapPKCS8(kek, testFile(t, kek, der2, k.Public())); !errors.Is(err, ErrWrongKey) {
		t.Errorf("other key: %v, want ErrWrongKey", err)
	}

	other := make([]byte, KEKSize)
	if _, _, err := UnwrapPKCS8(other, testFile(t, kek, der, k.Public())); err == nil || !strings.Contains(err.Error(), "check value") {
		t.Errorf("wrong KEK: %v", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWrapMatchesOpenSSL: what Wrap produces unwraps with `openssl enc -d -id-aes256-wrap-pad` to the
// same bytes, so an operator can recover a CA key with standard tools.
func TestWrapMatchesOpenSSL(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	kek := make([]byte, KEKSize)
	rand.Read(kek)
	w, _ := Wrap(kek, der)
	in := filepath.Join(t.TempDir(), "blob")
	os.WriteFile(in, w, 0o600)
	out, err := exec.Command(openssl, "enc", "-d", "-id-aes256-wrap-pad", "-K", hexs(kek), "-iv", "A65959A6", "-in", in).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	if !bytes.Equal(out, der) {
		t.Fatal("openssl unwrapped different bytes")
	}
}
