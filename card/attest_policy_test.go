package card

import (
	"errors"
	"strings"
	"testing"

	"github.com/custos-pki/custos/shares"
)

// policyCase builds a record from spec s on a card of a 2024-shaped hierarchy (production) or of a
// virtual fleet (rehearsal), verifies its chains, and returns the record and its attestations for
// CheckPolicy to judge.
func policyCase(t *testing.T, s cardSpec) (*Record, *Attestation, *Attestation) {
	t.Helper()
	var f9 *testCA
	var tr *Trust
	if s.rehearsal {
		root := newVirtualRoot(t)
		f9, tr = root.issueF9(t, s.firmware), rehearsalTrust(t, root)
	} else {
		y := newYubico2024Shape(t)
		f9, tr = y.piv.issueF9(t, s.firmware), y.trust()
	}
	r := f9.enroll(t, s)
	dec, sig, err := VerifyRecord(r, tr)
	if err != nil {
		t.Fatal(err)
	}
	return r, dec, sig
}

func TestCheckPolicy(t *testing.T) {
	production := Policy{}
	withReason := Policy{AllowTouchNever: "custodian in a remote site without a reader that shows touch"}
	rehearsal := Policy{Rehearsal: true}
	type tc struct {
		name   string
		spec   func(*cardSpec)
		policy Policy
		want   string // "" to accept; else a substring of the refusal
	}
	for _, c := range []tc{
		{"production defaults", nil, production, ""},
		{"decryption PIN always", func(s *cardSpec) { s.decPIN = PINAlways }, production, ""},
		{"signing key in a retired slot", func(s *cardSpec) { s.sigSlot = 0x95 }, production, ""},
		{"decryption PIN never", func(s *cardSpec) { s.decPIN = PINNever }, production, "PIN policy is never"},
		{"decryption PIN never in rehearsal", func(s *cardSpec) { s.decPIN = PINNever; s.rehearsal = true }, rehearsal, "PIN policy is never"},
		{"touch never without a reason", func(s *cardSpec) { s.decTouch = TouchNever }, production, "touch policy is never"},
		{"touch cached without a reason", func(s *cardSpec) { s.decTouch = TouchCached }, production, "touch policy is cached"},
		{"touch never with a reason", func(s *cardSpec) { s.decTouch = TouchNever }, withReason, ""},
		{"touch never in rehearsal", func(s *cardSpec) { s.decTouch = TouchNever; s.rehearsal = true }, rehearsal, ""},
		{"signing key needs the PIN", func(s *cardSpec) { s.sigPIN = PINOnce }, production, "must have PIN never and touch never"},
		{"signing key needs touch", func(s *cardSpec) { s.sigTouch = TouchAlways }, production, "must have PIN never and touch never"},
		{"serial mismatch", func(s *cardSpec) { s.attestSerial = s.serial + 1 }, production, "attested on YubiKey 20000002, but the record names YubiKey 20000001"},
		{"rehearsal record in production", func(s *cardSpec) { s.rehearsal = true }, production, "rehearsal (virtual card) record"},
		{"production record in rehearsal", nil, rehearsal, "production record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := spec("carol", 20000001)
			if c.spec != nil {
				c.spec(&s)
			}
			r, dec, sig := policyCase(t, s)
			err := CheckPolicy(r, dec, sig, c.policy)
			checkRefusal(t, err, c.want)
		})
	}
}

// TestCheckPolicyAttestedFields refuses a record whose attestations attest something else than it
// says: another key, serial, slot, firmware or policy, no serial at all, or a missing attestation.
func TestCheckPolicyAttestedFields(t *testing.T) {
	r, dec, sig := policyCase(t, spec("dave", 20000003))
	if err := CheckPolicy(r, dec, sig, Policy{}); err != nil {
		t.Fatal(err)
	}
	otherKey, _, _ := policyCase(t, spec("erin", 20000004))
	for name, c := range map[string]struct {
		mutate func(dec, sig *Attestation)
		want   string
	}{
		"decryption key mismatch": {func(d, s *Attestation) { d.PublicKey = otherKey.Decryption.PublicKey }, "decryption key is not the attested key"},
		"signing key mismatch":    {func(d, s *Attestation) { s.PublicKey = otherKey.Signing.PublicKey }, "signing key is not the attested key"},
		"serial mismatch":         {func(d, s *Attestation) { s.Serial++ }, "attested on YubiKey 20000004"},
		"no serial":               {func(d, s *Attestation) { d.Serial = 0 }, "names no serial number"},
		"slot mismatch":           {func(d, s *Attestation) { d.Slot = 0x83 }, "attested in slot 83"},
		"firmware mismatch":       {func(d, s *Attestation) { d.Firmware = Firmware{5, 2, 7} }, "names firmware 5.2.7"},
		"PIN policy mismatch":     {func(d, s *Attestation) { d.PINPolicy = PINAlways }, "attested with PIN policy always"},
		"touch policy mismatch":   {func(d, s *Attestation) { d.TouchPolicy = TouchCached }, "touch policy cached"},
		"virtual attestation":     {func(d, s *Attestation) { s.Rehearsal = true }, "verified under the virtual root"},
	} {
		t.Run(name, func(t *testing.T) {
			d, s := *dec, *sig
			c.mutate(&d, &s)
			checkRefusal(t, CheckPolicy(r, &d, &s, Policy{}), c.want)
		})
	}
	checkRefusal(t, CheckPolicy(r, nil, sig, Policy{}), "no verified attestation for the decryption key")
}

func TestCheckDistinctCards(t *testing.T) {
	a := &Record{Name: "alice", Serial: 1}
	b := &Record{Name: "bob", Serial: 2}
	if err := checkDistinctCards([]*Record{a, b}); err != nil {
		t.Fatal(err)
	}
	twice := &Record{Name: "mallory", Serial: 1}
	checkRefusal(t, checkDistinctCards([]*Record{a, b, twice}), `custodians "alice" and "mallory" use the same YubiKey 1`)
}

// checkRefusal asserts err is nil when want is empty, else a policy refusal containing want.
func checkRefusal(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if !errors.Is(err, shares.ErrPolicy) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a policy refusal saying %q", err, want)
	}
}
