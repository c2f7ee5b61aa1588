package hsm_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
)

func check(t *testing.T, r *hsm.ProbeResult, prefix string) hsm.Check {
	t.Helper()
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", prefix, r.Checks)
	return hsm.Check{}
}

func checkMech(t *testing.T, r *hsm.ProbeResult, prefix, mech string) hsm.Check {
	t.Helper()
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) && strings.HasPrefix(c.Mechanism, mech) {
			return c
		}
	}
	t.Fatalf("no check %q with %s in %+v", prefix, mech, r.Checks)
	return hsm.Check{}
}

// SoftHSM 2.6.1: RFC 5649 unwrap under 0x210A, a wrap that differs from tink-go's on an odd-length
// payload, OAEP with SHA-1 only, no 0x1054.
func TestProbeSoftHSM(t *testing.T) {
	tok := testenv.SoftHSMToken(t, "probe")
	s := open(t, tok)
	r, err := s.Probe(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Text())
	if r.KWPMechanism != 0x210A {
		t.Errorf("KWP mechanism %#x, want 0x210a", r.KWPMechanism)
	}
	if c := checkMech(t, r, "RFC 5649 unwrap", "CKM_AES_KEY_WRAP_PAD(0x210a)"); !c.OK || !strings.Contains(c.Evidence, "equal") {
		t.Errorf("0x210A check: %+v", c)
	}
	for _, m := range []string{"CKM_AES_KEY_WRAP_KWP(0x210b)", "CKM_AES_KWP (Luna)", "CKM_CLOUDHSM"} {
		if c := checkMech(t, r, "RFC 5649 unwrap", m); c.OK {
			t.Errorf("%s confirmed on SoftHSM: %+v", m, c)
		}
	}
	if c := check(t, r, "RFC 5649 wrap of a 37-byte"); c.OK || r.KWPWrapExact || !strings.Contains(c.Evidence, "zero-padded to 40 bytes") {
		t.Errorf("wrap comparison: %+v", c)
	}
	if !slices.Equal(r.OAEPHashes, []string{"sha1"}) {
		t.Errorf("OAEP hashes %v, want [sha1]", r.OAEPHashes)
	}
	if len(r.RSAAESHashes) != 0 || slices.Contains(r.Transports, hsm.TransportRSAAES) {
		t.Errorf("0x1054 confirmed: %v", r.RSAAESHashes)
	}
	if !r.CreateSecret || !r.UnwrapKeepsAttributes || !r.WrapExtractablePrivate || r.CBCPadUnwrap {
		t.Errorf("findings %+v", r)
	}
	if !slices.Equal(r.Transports, []string{"create", "oaep"}) || !slices.Equal(r.CAUnwraps, []string{"kwp"}) {
		t.Errorf("transports %v, CA unwraps %v", r.Transports, r.CAUnwraps)
	}
	if !slices.Contains(r.GenerationAlgs, "p384") || !slices.Contains(r.GenerationAlgs, "rsa4096") {
		t.Errorf("generation algs %v", r.GenerationAlgs)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	requireNoObjects(t, tok)
}

// openCryptoki 3.8.1: OAEP with SHA-1 and SHA-256, no RFC 5649, AES-CBC-PAD unwrap, no EC, and an
// unwrap that ignores CKA_SENSITIVE and CKA_EXTRACTABLE.
func TestProbeOpenCryptoki(t *testing.T) {
	tok := testenv.OpenCryptoki(t, "probe")
	if tok == nil {
		return
	}
	s := open(t, tok)
	r, err := s.Probe(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Text())
	if r.KWPMechanism != 0 {
		t.Errorf("KWP mechanism %#x confirmed on openCryptoki 3.8.1", r.KWPMechanism)
	}
	if !slices.Equal(r.OAEPHashes, []string{"sha256", "sha1"}) {
		t.Errorf("OAEP hashes %v", r.OAEPHashes)
	}
	if !r.CBCPadUnwrap {
		t.Error("AES-CBC-PAD unwrap not confirmed")
	}
	if c := check(t, r, "private key unwrap keeps"); c.OK || r.UnwrapKeepsAttributes || !strings.Contains(c.Evidence, "SENSITIVE=false EXTRACTABLE=true") {
		t.Errorf("unwrap attributes: %+v", c)
	}
	for _, m := range r.Mechanisms {
		if strings.Contains(m.Name, "CKM_EC") && m.Listed {
			t.Errorf("EC mechanism listed: %+v", m)
		}
	}
	if !slices.Equal(r.CAUnwraps, []string{"host-cbcpad"}) || len(r.GenerationAlgs) != 0 {
		t.Errorf("CA unwraps %v, generation %v", r.CAUnwraps, r.GenerationAlgs)
	}
	requireNoObjects(t, tok)
}
