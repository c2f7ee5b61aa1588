package hsm_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

func TestGenerateRSA4096(t *testing.T) { testGenerate(t, "rsa4096") }
func TestGenerateP384(t *testing.T)    { testGenerate(t, "p384") }

// Generation on SoftHSM: the software check and the trial import pass, the root certificate verifies
// with openssl against itself and passes the BR 7.1.2.1 checks, and the trial proof is made through
// the trial copy's handle: the original is destroyed first.
func testGenerate(t *testing.T, alg string) {
	f := fixture(t, alg)
	if f.File.KeyAlg != alg || !strings.Contains(f.File.Mechanism, "CKM_AES_KEY_WRAP_PAD(0x210a)") {
		t.Errorf("file header %s %q", f.File.KeyAlg, f.File.Mechanism)
	}
	if f.Quirk != wrap.QuirkNone && f.Quirk != wrap.QuirkSoftHSMZeroPad {
		t.Errorf("quirk %q", f.Quirk)
	}
	if _, err := hsm.SoftwareCheck(f.KEK, f.File, f.Public); err != nil {
		t.Fatal(err)
	}
	// The root certificate: BR checks and openssl.
	if err := hsm.CheckRoot(f.Cert, f.Cert.NotBefore); err != nil {
		t.Fatal(err)
	}
	path := writePEM(t, f.Cert)
	out, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", path, path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(": OK")) {
		t.Fatalf("openssl verify: %v: %s", err, out)
	}
	if f.Cert.Subject.String() != "CN=Custos Test Root REHEARSAL,O=Custos,C=DE" {
		t.Errorf("subject %s", f.Cert.Subject)
	}

	// Destroy the original (read back: nothing with its CKA_ID), then the trial import.
	if err := f.CA.Destroy(); err != nil {
		t.Fatal(err)
	}
	requireNoObjects(t, f.Tok)
	res, err := f.Sess.Import(context.Background(), hsm.ImportRequest{
		KEK: f.KEK, File: f.File, CAPublic: f.Public, Label: "trial", Trial: true,
		RecordID: "rec-1", ManifestKey: "SHA256:manifest",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Proof.Verify(f.Public); err != nil {
		t.Fatal(err)
	}
	if res.TokenKey != nil || !res.SessionKey.Final.Sensitive || res.SessionKey.Final.Extractable || res.SessionKey.Final.Token {
		t.Errorf("trial copy attributes %+v", res.SessionKey)
	}
	requireNoObjects(t, f.Tok)
}

// The BR checks fail when the profile is broken.
func TestCheckRootRefuses(t *testing.T) {
	f := fixture(t, "p384")
	dn, _ := hsm.ParseDN("CN=Short")
	if _, err := hsm.RootCertificate(testenv.Key(t, "p256"), dn, 365*24*time.Hour, time.Now()); err == nil || !strings.Contains(err.Error(), "validity") {
		t.Fatalf("one-year root accepted: %v", err)
	}
	if err := hsm.CheckRoot(f.Cert, f.Cert.NotBefore.Add(48*time.Hour)); err == nil {
		t.Fatal("notBefore two days before signing accepted")
	}
}
