package card

// Attestation policy: whether what the chains proved is what the record says, and acceptable
// (DESIGN.md section 5, issue 4 item 3). Chain verification is VerifyChain's job, not this file's.

import (
	"bytes"
	"fmt"

	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// Policy is what a roster allows beyond the defaults.
type Policy struct {
	// Rehearsal is set for rehearsal rosters, verified under the virtual root.
	Rehearsal bool
	// AllowTouchNever is the reason the roster records for accepting decryption keys whose touch
	// policy is not always (--allow-touch-never); empty when it does not.
	AllowTouchNever string
}

// CheckPolicy checks a record against its two verified attestations (dec for the decryption key, sig
// for the signing key): each attested key, serial, slot, firmware and pair of policies equals the
// record's; the decryption key needs a PIN (policy not never) and, in production, touch always unless
// the roster allows otherwise with a reason; the signing key has PIN never and touch never, so
// liveness runs before any PIN. Refusals wrap [shares.ErrPolicy].
func CheckPolicy(r *Record, dec, sig *Attestation, p Policy) error {
	if err := checkPolicy(r, dec, sig, p); err != nil {
		return fmt.Errorf("card: custodian %q (YubiKey %d): %w: %v", r.Name, r.Serial, shares.ErrPolicy, err)
	}
	return nil
}

func checkPolicy(r *Record, dec, sig *Attestation, p Policy) error {
	if r.Rehearsal != p.Rehearsal {
		if r.Rehearsal {
			return fmt.Errorf("the record is a rehearsal (virtual card) record; production never uses rehearsal artifacts")
		}
		return fmt.Errorf("the record is a production record; a rehearsal uses virtual cards only")
	}
	if err := checkAttested("decryption", &r.Decryption, dec, r, p); err != nil {
		return err
	}
	if err := checkAttested("signing", &r.Signing, sig, r, p); err != nil {
		return err
	}
	if dec.PINPolicy == PINNever {
		return fmt.Errorf("the decryption key's PIN policy is never; it must need the PIN (once or always)")
	}
	if !p.Rehearsal && dec.TouchPolicy != TouchAlways && p.AllowTouchNever == "" {
		return fmt.Errorf("the decryption key's touch policy is %v; production requires touch always unless the roster allows it with --allow-touch-never and a reason", dec.TouchPolicy)
	}
	if sig.PINPolicy != PINNever || sig.TouchPolicy != TouchNever {
		return fmt.Errorf("the signing key has PIN policy %v and touch policy %v; it must have PIN never and touch never", sig.PINPolicy, sig.TouchPolicy)
	}
	return nil
}

// checkAttested checks that an attestation is of the key the record names, on the record's card.
func checkAttested(which string, k *KeyRecord, a *Attestation, r *Record, p Policy) error {
	if a == nil {
		return fmt.Errorf("no verified attestation for the %s key", which)
	}
	if a.Rehearsal != p.Rehearsal {
		if a.Rehearsal {
			return fmt.Errorf("the %s key's attestation was verified under the virtual root; production trusts only Yubico's roots", which)
		}
		return fmt.Errorf("the %s key's attestation was verified under Yubico's roots; a rehearsal trusts only the virtual root", which)
	}
	if !bytes.Equal(a.PublicKey, k.PublicKey) {
		return fmt.Errorf("the %s key is not the attested key (record %s, attested %s)", which, wrap.FingerprintBytes(k.PublicKey), wrap.FingerprintBytes(a.PublicKey))
	}
	if a.Serial == 0 {
		return fmt.Errorf("the %s key's attestation names no serial number, so it cannot tie the key to YubiKey %d", which, r.Serial)
	}
	if a.Serial != r.Serial {
		return fmt.Errorf("the %s key is attested on YubiKey %d, but the record names YubiKey %d", which, a.Serial, r.Serial)
	}
	if a.Slot != k.Slot {
		return fmt.Errorf("the %s key is attested in slot %v, but the record names slot %v", which, a.Slot, k.Slot)
	}
	if a.Firmware != r.Firmware {
		return fmt.Errorf("the %s key's attestation names firmware %v, but the record names %v", which, a.Firmware, r.Firmware)
	}
	if a.PINPolicy != k.PINPolicy || a.TouchPolicy != k.TouchPolicy {
		return fmt.Errorf("the %s key is attested with PIN policy %v and touch policy %v, but the record names %v and %v",
			which, a.PINPolicy, a.TouchPolicy, k.PINPolicy, k.TouchPolicy)
	}
	return nil
}

// checkDistinctCards refuses a card (serial) that serves two custodians of one roster. Recipients
// twice are refused by [shares.Roster.Validate].
func checkDistinctCards(records []*Record) error {
	seen := map[uint32]string{}
	for _, r := range records {
		if other, ok := seen[r.Serial]; ok {
			return fmt.Errorf("card: %w: custodians %q and %q use the same YubiKey %d; every custodian needs a card of their own",
				shares.ErrPolicy, other, r.Name, r.Serial)
		}
		seen[r.Serial] = r.Name
	}
	return nil
}
