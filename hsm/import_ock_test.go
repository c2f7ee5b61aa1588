package hsm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
)

// openCryptoki 3.8.1: a P-384 import is refused before anything is created; the RSA-4096 key goes in
// by oaep with host-cbcpad (--allow-host-unwrap, a reported deviation), and the first read-back shows
// the template ignored (CKA_SENSITIVE false) and the final one the key hardened.
func TestImportOpenCryptoki(t *testing.T) {
	if !testenv.InOpenCryptokiRun() {
		saveFixtures(t, "rsa4096", "p384")
	}
	tok := testenv.OpenCryptoki(t, "import")
	if tok == nil {
		return
	}
	s := open(t, tok)
	ctx := context.Background()
	p, err := s.Probe(ctx, true)
	if err != nil {
		t.Fatal(err)
	}

	p384 := fixture(t, "p384")
	req := importReq(p384, hsm.TransportOAEP)
	req.CAUnwrap, req.AllowHostUnwrap = hsm.UnwrapHostCBCPad, true
	if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "p384") {
		t.Fatalf("P-384 into openCryptoki: %v", err)
	}
	requireNoObjects(t, tok)

	f := fixture(t, "rsa4096")
	// A module that cannot copy and does not keep unwrap attributes: no unwrap straight to the token.
	t.Run("copy fails", func(t *testing.T) {
		hsm.FailCopyObject(t)
		req := importReq(f, hsm.TransportOAEP)
		req.CAUnwrap, req.AllowHostUnwrap, req.Probe = hsm.UnwrapHostCBCPad, true, p
		if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "not unwrapped straight to the token") {
			t.Fatalf("copy failure on openCryptoki: %v", err)
		}
		requireNoObjects(t, tok)
	})
	req = importReq(f, hsm.TransportOAEP)
	if _, err := s.Import(ctx, req); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "host-cbcpad") {
		t.Fatalf("kwp on openCryptoki: %v", err)
	}
	req.CAUnwrap, req.AllowHostUnwrap, req.Probe = hsm.UnwrapHostCBCPad, true, p
	res, err := s.Import(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.SessionKey.First.Sensitive || !res.SessionKey.First.Extractable || !res.SessionKey.Reset || !res.SessionKey.Final.Sensitive || res.SessionKey.Final.Extractable {
		t.Errorf("session key read-back %+v", res.SessionKey)
	}
	if res.KEK == nil || res.KEK.First.Sensitive || !res.KEK.Final.Sensitive {
		t.Errorf("one-time key read-back %+v", res.KEK)
	}
	if res.OAEPHash != "sha256" || len(res.Deviations) != 1 || !strings.Contains(res.Proof.Mechanism, "DigestInfo") {
		t.Errorf("result %+v", res)
	}
	requireImported(t, tok, f, res)
}
