package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
	// SoftHSM 2.6.1 zero-pads the PKCS#8 before RFC 5649: the quirk is reported exactly when the DER's
	// length is not a multiple of 8.
	plain, err := wrap.Unwrap(f.KEK, f.File.Blob)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := wrap.SplitQuirk(plain)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]wrap.Quirk{true: wrap.QuirkNone, false: wrap.QuirkSoftHSMZeroPad}[len(der)%8 == 0]; f.Quirk != want {
		t.Errorf("%d-byte DER: quirk %q, want %q", len(der), f.Quirk, want)
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
	// The proof binds the record, the manifest key, the token and the nonce.
	for _, tamper := range []func(p *hsm.Proof){
		func(p *hsm.Proof) { p.RecordID = "rec-2" },
		func(p *hsm.Proof) { p.ManifestKey = "SHA256:other" },
		func(p *hsm.Proof) { p.TokenSHA256 = strings.Repeat("0", 64) },
		func(p *hsm.Proof) { p.Nonce = bytes.Repeat([]byte{1}, 32) },
	} {
		p := *res.Proof
		tamper(&p)
		if err := p.Verify(f.Public); !errors.Is(err, hsm.ErrNotProven) {
			t.Errorf("tampered proof %+v: %v", p, err)
		}
	}
	if err := res.Proof.Verify(testenv.Key(t, "p256").Public()); err == nil {
		t.Error("proof verified under another key")
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

// Lock makes the generated key non-extractable (read back), after which the token refuses to wrap it;
// nothing in hsm destroys it by itself.
func TestGenerateLock(t *testing.T) {
	ctx := context.Background()
	tok := testenv.SoftHSMToken(t, "lock")
	s := open(t, tok)
	p, err := s.Probe(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	rnd, err := s.Random(32)
	if err != nil || len(rnd) != 32 {
		t.Fatalf("C_GenerateRandom: %v", err)
	}
	ca, err := s.GenerateCA(ctx, "p256", "lock")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Lock()
	if err != nil || a.Extractable || !a.Sensitive || !a.Token {
		t.Fatalf("lock: %v, %s", err, a)
	}
	kek := bytes.Repeat([]byte{9}, 32)
	k, err := s.PutKEK(ctx, kek, hsm.TransportCreate, p, true)
	if err != nil {
		t.Fatal(err)
	}
	check, _ := wrap.KCV(kek)
	if _, err := s.WrapCA(ctx, k, ca, check, p); err == nil || !strings.Contains(err.Error(), "CKR_KEY_UNEXTRACTABLE") {
		t.Fatalf("wrap of a locked key: %v", err)
	}
	if err := k.Destroy(); err != nil {
		t.Fatal(err)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 2 {
		t.Fatalf("after lock: %v", objs)
	}
	if err := ca.Destroy(); err != nil {
		t.Fatal(err)
	}
	requireNoObjects(t, tok)
}

// RFC 4514 names and profile files.
func TestParseDNAndProfile(t *testing.T) {
	seq, err := hsm.ParseDN(`CN=Example Root\, R1+serialNumber=7,OU=PKI,O=Ex\2C Inc.,C=DE`)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) != 4 || len(seq[3]) != 2 || seq[3][0].Value != "Example Root, R1" || seq[1][0].Value != "Ex, Inc." || seq[0][0].Value != "DE" {
		t.Fatalf("parsed %v", seq)
	}
	for _, bad := range []string{"", "CN", "CN=", "XX=1", "CN=a,"} {
		if _, err := hsm.ParseDN(bad); err == nil {
			t.Errorf("ParseDN(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good.json"), filepath.Join(dir, "short.json")
	os.WriteFile(good, []byte(`{"subject":"CN=Root,O=X,C=DE","validity_days":3650}`), 0o600)
	os.WriteFile(short, []byte(`{"subject":"CN=Root","validity_days":365}`), 0o600)
	if p, err := hsm.LoadRootProfile(good); err != nil || p.ValidityDays != 3650 {
		t.Errorf("profile: %v %+v", err, p)
	}
	if _, err := hsm.LoadRootProfile(short); err == nil || !strings.Contains(err.Error(), "2922") {
		t.Errorf("short profile: %v", err)
	}
}
