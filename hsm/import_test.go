package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/miekg/pkcs11"
)

// requireImported checks what a successful import leaves, independently of its result: exactly the CA
// private key (sensitive, not extractable), its public key and its certificate, all token objects with
// the CA key's CKA_ID; no KEK, transport key or session copy. And the result: proof verified, wrap
// refused, attributes read back.
func requireImported(t *testing.T, tok *softtoken.Token, f *caFixture, res *hsm.ImportResult) {
	t.Helper()
	objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN)
	classes := map[uint]int{}
	for _, o := range objs {
		classes[o.Class]++
		if !o.Token || !bytes.Equal(o.ID, res.ID) {
			t.Errorf("unexpected object %v", o)
		}
		if o.Class == pkcs11.CKO_PRIVATE_KEY && (!o.Sensitive || o.Extractable) {
			t.Errorf("CA key reads %v", o)
		}
	}
	if len(objs) != 3 || classes[pkcs11.CKO_PRIVATE_KEY] != 1 || classes[pkcs11.CKO_PUBLIC_KEY] != 1 || classes[pkcs11.CKO_CERTIFICATE] != 1 {
		t.Errorf("objects after import: %v", objs)
	}
	if res.TokenKey == nil || !res.TokenKey.Final.Sensitive || res.TokenKey.Final.Extractable || !res.TokenKey.Final.Token {
		t.Errorf("token key read back %+v", res.TokenKey)
	}
	if !strings.Contains(res.WrapRefused, "CKR_KEY_UNEXTRACTABLE") {
		t.Errorf("C_WrapKey of the imported key: %q", res.WrapRefused)
	}
	if err := res.Proof.Verify(f.Public); err != nil {
		t.Error(err)
	}
}

func importReq(f *caFixture, transport string) hsm.ImportRequest {
	return hsm.ImportRequest{
		KEK: f.KEK, File: f.File, CAPublic: f.Public, Certificate: f.Cert, Label: "custos CA",
		Transport: transport, RecordID: "rec-import", ManifestKey: "SHA256:manifest",
	}
}

// Import the generated RSA-4096 and P-384 keys into a second SoftHSM token by create and by oaep.
func TestImportSoftHSM(t *testing.T) {
	for _, alg := range []string{"rsa4096", "p384"} {
		for _, transport := range []string{hsm.TransportCreate, hsm.TransportOAEP} {
			t.Run(alg+"/"+transport, func(t *testing.T) {
				f := fixture(t, alg)
				tok := testenv.SoftHSMToken(t, "import-"+alg+"-"+transport)
				s := open(t, tok)
				res, err := s.Import(context.Background(), importReq(f, transport))
				if err != nil {
					t.Fatal(err)
				}
				if res.Transport != transport || res.CAUnwrap != hsm.UnwrapKWP || res.CopyFallback != "" {
					t.Errorf("result %+v", res)
				}
				if transport == hsm.TransportOAEP && (res.OAEPHash != "sha1" || res.TransportKey == nil) {
					t.Errorf("oaep import: hash %q, transport key %+v", res.OAEPHash, res.TransportKey)
				}
				if res.KEK == nil || !res.KEK.Final.Sensitive || res.KEK.Final.Extractable {
					t.Errorf("KEK read back %+v", res.KEK)
				}
				requireImported(t, tok, f, res)
			})
		}
	}
}

// A module that cannot copy: the key is unwrapped straight to the token instead, hardened and read back.
func TestImportCopyFallback(t *testing.T) {
	hsm.FailCopyObject(t)
	f := fixture(t, "p384")
	tok := testenv.SoftHSMToken(t, "copy-fallback")
	s := open(t, tok)
	res, err := s.Import(context.Background(), importReq(f, hsm.TransportCreate))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.CopyFallback, "CKR_FUNCTION_NOT_SUPPORTED") {
		t.Errorf("copy fallback %q", res.CopyFallback)
	}
	requireImported(t, tok, f, res)
}

// Cancellation after each named step of an import: refused, and nothing left in the token.
func TestImportCancel(t *testing.T) {
	f := fixture(t, "p384")
	tok := testenv.SoftHSMToken(t, "cancel")
	s := open(t, tok)
	p, err := s.Probe(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range hsm.ImportSteps[:len(hsm.ImportSteps)-1] {
		ctx, cancel := context.WithCancel(context.Background())
		req := importReq(f, hsm.TransportAuto)
		req.Probe = p
		req.AfterStep = func(done string) {
			if done == step {
				cancel()
			}
		}
		_, err := s.Import(ctx, req)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %s: %v", step, err)
		}
		requireNoObjects(t, tok)
	}
}

// Refusals with one clear line and nothing left behind.
func TestImportRefusals(t *testing.T) {
	f := fixture(t, "p384")
	tok := testenv.SoftHSMToken(t, "refusals")
	s := open(t, tok)
	ctx := context.Background()

	bad := *f.File
	bad.Blob = append([]byte{}, f.File.Blob...)
	bad.Blob[len(bad.Blob)/2] ^= 1
	req := importReq(f, hsm.TransportCreate)
	req.File = &bad
	if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrBadBlob) {
		t.Errorf("corrupted blob: %v", err)
	}

	req = importReq(f, hsm.TransportCreate)
	req.KEK = bytes.Repeat([]byte{7}, 32)
	if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrWrongKEK) || !strings.Contains(err.Error(), f.File.KEKCheck.String()) {
		t.Errorf("wrong KEK: %v", err)
	}

	other, err := hsm.RootCertificate(testenv.Key(t, "p256"), f.Cert.Subject.ToRDNSequence(), 9*365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req = importReq(f, hsm.TransportCreate)
	req.Certificate = other
	if _, err := s.Import(ctx, req); err == nil || !strings.Contains(err.Error(), "not the CA key") {
		t.Errorf("certificate of another key: %v", err)
	}

	req = importReq(f, hsm.TransportRSAAES)
	_, err = s.Import(ctx, req)
	if !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "it can: create, oaep") {
		t.Errorf("rsa-aes on SoftHSM 2.6.1: %v", err)
	}

	req = importReq(f, hsm.TransportCreate)
	req.CAUnwrap = hsm.UnwrapHostCBCPad
	if _, err := s.Import(ctx, req); err == nil || !strings.Contains(err.Error(), "--allow-host-unwrap") {
		t.Errorf("host-cbcpad without --allow-host-unwrap: %v", err)
	}
	req.AllowHostUnwrap = true
	if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "it can: kwp") {
		t.Errorf("host-cbcpad on SoftHSM 2.6.1: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), "\n") {
			t.Errorf("error is not one line: %q", e)
		}
	}
	requireNoObjects(t, tok)
}

// Re-wrap from KEK1 to KEK2 on SoftHSM: the new blob unwraps in software to the same public key.
func TestRewrap(t *testing.T) {
	f := fixture(t, "p384")
	tok := testenv.SoftHSMToken(t, "rewrap")
	s := open(t, tok)
	kek2 := bytes.Repeat([]byte{0x42}, 32)
	nf, _, err := s.Rewrap(context.Background(), hsm.RewrapRequest{OldKEK: f.KEK, NewKEK: kek2, File: f.File, CAPublic: f.Public})
	if err != nil {
		t.Fatal(err)
	}
	if !nf.KEKCheck.Matches(kek2) || nf.Fingerprint != f.File.Fingerprint || bytes.Equal(nf.Blob, f.File.Blob) {
		t.Errorf("new file %+v", nf)
	}
	if _, err := hsm.SoftwareCheck(kek2, nf, f.Public); err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.SoftwareCheck(f.KEK, nf, f.Public); err == nil {
		t.Fatal("the new blob opens under the old KEK")
	}
	requireNoObjects(t, tok)
}
