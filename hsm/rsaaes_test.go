package hsm_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

// The rsa-aes payload custos builds decrypts with OpenSSL (pkeyutl OAEP, then enc
// -id-aes256-wrap-pad) to the original PKCS#8.
func TestRSAAESPayloadOpenSSL(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl")
	transport := testenv.Key(t, "rsa2048").(*rsa.PrivateKey)
	ca := testenv.Key(t, "p384")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ca)
	if err != nil {
		t.Fatal(err)
	}
	kek := bytes.Repeat([]byte{0x5a}, 32)
	blob, err := wrap.Wrap(kek, pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tder, _ := x509.MarshalPKCS8PrivateKey(transport)
	keyPath := filepath.Join(dir, "transport.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: tder}), 0o600)
	for _, h := range []string{"sha1", "sha256"} {
		payload, err := hsm.RSAAESPayload(&transport.PublicKey, h, kek, blob)
		if err != nil {
			t.Fatal(err)
		}
		k := transport.PublicKey.Size()
		ctPath, blobPath := filepath.Join(dir, h+".oaep"), filepath.Join(dir, h+".kwp")
		os.WriteFile(ctPath, payload[:k], 0o600)
		os.WriteFile(blobPath, payload[k:], 0o600)
		gotKEK, err := exec.Command(openssl, "pkeyutl", "-decrypt", "-inkey", keyPath, "-in", ctPath,
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+h, "-pkeyopt", "rsa_mgf1_md:"+h).Output()
		if err != nil || !bytes.Equal(gotKEK, kek) {
			t.Fatalf("%s: openssl pkeyutl: %v (%d bytes)", h, err, len(gotKEK))
		}
		got, err := exec.Command(openssl, "enc", "-d", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(gotKEK),
			"-iv", "A65959A6", "-in", blobPath).Output()
		if err != nil || !bytes.Equal(got, pkcs8) {
			t.Fatalf("%s: openssl enc -id-aes256-wrap-pad: %v (%d bytes, want %d)", h, err, len(got), len(pkcs8))
		}
	}
}
