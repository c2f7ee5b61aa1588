package card

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
)

func member(t *testing.T, r *Record) shares.Member {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return shares.Member{Name: r.Name, Recipient: r.Recipient, Kind: shares.KindPIVP256, Record: json.RawMessage(bytes.TrimSuffix(b, []byte("\n")))}
}

func softwareMember(t *testing.T, name string) shares.Member {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return shares.Member{Name: name, Recipient: id.Recipient().String(), Kind: shares.KindX25519, Record: json.RawMessage("null")}
}

func roster(k int, rehearsal bool, members ...shares.Member) *shares.Roster {
	return &shares.Roster{Format: shares.RosterFormat, Threshold: k, Rehearsal: rehearsal, Custodians: members}
}

// fleet issues F9 certificates for cards: under a virtual root (rehearsal) or a 2024-shaped
// hierarchy (production).
type fleet struct {
	issuer *testCA
	trust  *Trust
}

func newFleet(t *testing.T, rehearsal bool) *fleet {
	if rehearsal {
		root := newVirtualRoot(t)
		return &fleet{issuer: root, trust: rehearsalTrust(t, root)}
	}
	y := newYubico2024Shape(t)
	return &fleet{issuer: y.piv, trust: y.trust()}
}

func (f *fleet) card(t *testing.T, s cardSpec) *Record {
	t.Helper()
	return f.issuer.issueF9(t, s.firmware).enroll(t, s)
}

// TestVerifyRosterRehearsal: a rehearsal roster of virtual cards verifies under the sim's root,
// through a roster file round trip, and is refused under Yubico's roots.
func TestVerifyRosterRehearsal(t *testing.T) {
	f := newFleet(t, true)
	var members []shares.Member
	for i, name := range []string{"alice", "bob", "carol"} {
		s := spec(name, uint32(10000001+i))
		s.rehearsal = true
		members = append(members, member(t, f.card(t, s)))
	}
	file, err := roster(2, true, members...).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := shares.ParseRoster(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyRoster(r, f.trust)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1].Record.Name != "bob" || got[1].Signing.Serial != 10000002 ||
		!bytes.Equal(got[1].Signing.PublicKey, got[1].Record.Signing.PublicKey) || !got[1].Decryption.Rehearsal {
		t.Errorf("verified records %+v", got)
	}

	prod, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRoster(r, prod); !errors.Is(err, shares.ErrPolicy) {
		t.Errorf("rehearsal roster under Yubico's roots: got %v, want a policy refusal", err)
	}
	r.Rehearsal = false
	if _, err := VerifyRoster(r, prod); !errors.Is(err, ErrAttestation) {
		t.Errorf("virtual cards in a production roster: got %v, want ErrAttestation", err)
	}
	if _, err := VerifyRoster(r, f.trust); !errors.Is(err, shares.ErrPolicy) {
		t.Errorf("production roster under the rehearsal root: got %v, want a policy refusal", err)
	}
}

// TestVerifyRosterProduction runs a production roster on a 2024-shaped hierarchy standing in for
// Yubico's: good cards and software custodians pass, and each bad card is refused.
func TestVerifyRosterProduction(t *testing.T) {
	f := newFleet(t, false)
	alice, bob := f.card(t, spec("alice", 30000001)), f.card(t, spec("bob", 30000002))
	verify := func(r *shares.Roster) error {
		_, err := VerifyRoster(r, f.trust)
		return err
	}

	t.Run("cards and one software custodian of k=2", func(t *testing.T) {
		r := roster(2, false, member(t, alice), member(t, bob), softwareMember(t, "sam"))
		r.AllowSoftware = true
		if err := verify(r); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("k software custodians", func(t *testing.T) {
		r := roster(2, false, member(t, alice), softwareMember(t, "sam"), softwareMember(t, "sue"))
		r.AllowSoftware = true
		if err := verify(r); !errors.Is(err, shares.ErrPolicy) {
			t.Fatalf("got %v, want a policy refusal", err)
		}
	})
	t.Run("serial mismatch", func(t *testing.T) {
		s := spec("mallory", 30000003)
		s.attestSerial = 30000001
		err := verify(roster(2, false, member(t, alice), member(t, f.card(t, s))))
		if !errors.Is(err, shares.ErrPolicy) || !strings.Contains(err.Error(), "attested on YubiKey 30000001, but the record names YubiKey 30000003") {
			t.Fatalf("got %v, want the serial mismatch", err)
		}
	})
	t.Run("key mismatch", func(t *testing.T) {
		// A record whose decryption attestation certifies another key than the recorded one.
		m := *f.card(t, spec("mallory", 30000004))
		m.Decryption.Attestation = f.card(t, spec("mallory", 30000004)).Decryption.Attestation
		b, err := jsonRecord(&m)
		if err != nil {
			t.Fatal(err)
		}
		mm := shares.Member{Name: m.Name, Recipient: m.Recipient, Kind: shares.KindPIVP256, Record: b}
		if err := verify(roster(2, false, member(t, alice), mm)); !errors.Is(err, ErrMalformedRecord) {
			t.Fatalf("got %v, want ErrMalformedRecord", err)
		}
	})
	t.Run("changed byte in an attestation", func(t *testing.T) {
		m := *f.card(t, spec("mallory", 30000005))
		sig, err := parseCertificatePEM(m.Signing.Attestation)
		if err != nil {
			t.Fatal(err)
		}
		der := bytes.Clone(sig.Raw)
		der[len(der)-1] ^= 1 // in the F9's signature
		changed, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		m.Signing.Attestation = pemString(changed)
		if err := verify(roster(2, false, member(t, alice), member(t, &m))); !errors.Is(err, ErrAttestation) {
			t.Fatalf("got %v, want ErrAttestation", err)
		}
	})
	t.Run("another card's F9 certificate", func(t *testing.T) {
		m := *f.card(t, spec("mallory", 30000006))
		m.F9Certificate = alice.F9Certificate
		if err := verify(roster(2, false, member(t, alice), member(t, &m))); !errors.Is(err, ErrAttestation) {
			t.Fatalf("got %v, want ErrAttestation", err)
		}
	})
	t.Run("the same card twice", func(t *testing.T) {
		s := spec("alice2", 30000001)
		s.decSlot, s.sigSlot = 0x83, 0x84
		err := verify(roster(2, false, member(t, alice), member(t, f.card(t, s))))
		if !errors.Is(err, shares.ErrPolicy) || !strings.Contains(err.Error(), "same YubiKey 30000001") {
			t.Fatalf("got %v, want the same-card refusal", err)
		}
	})
	t.Run("the same recipient twice", func(t *testing.T) {
		m := member(t, alice)
		m.Name = "alice2"
		if err := verify(roster(2, false, member(t, alice), m)); err == nil || !strings.Contains(err.Error(), "same recipient") {
			t.Fatalf("got %v, want the same-recipient refusal", err)
		}
	})
	t.Run("record of another custodian", func(t *testing.T) {
		m := member(t, bob)
		m.Name = "carol"
		if err := verify(roster(2, false, member(t, alice), m)); !errors.Is(err, ErrMalformedRecord) {
			t.Fatalf("got %v, want ErrMalformedRecord", err)
		}
	})
	t.Run("touch never", func(t *testing.T) {
		s := spec("dave", 30000007)
		s.decTouch = TouchNever
		r := roster(2, false, member(t, alice), member(t, f.card(t, s)))
		if err := verify(r); !errors.Is(err, shares.ErrPolicy) {
			t.Fatalf("without a reason: got %v, want a policy refusal", err)
		}
		r.AllowTouchNever = "dave's reader is in a locked rack"
		if err := verify(r); err != nil {
			t.Fatalf("with a reason: %v", err)
		}
	})
	t.Run("PIN never", func(t *testing.T) {
		s := spec("dave", 30000008)
		s.decPIN = PINNever
		if err := verify(roster(2, false, member(t, alice), member(t, f.card(t, s)))); !errors.Is(err, shares.ErrPolicy) {
			t.Fatalf("got %v, want a policy refusal", err)
		}
	})
}

// jsonRecord encodes a record canonically without validating it, as a forger would.
func jsonRecord(r *Record) (json.RawMessage, error) {
	b, err := jcs.Marshal(r)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}
