package card

// Verifying a roster's card custodians: record → chains → policy, for `roster create` and `roster
// verify`.

import (
	"fmt"

	"github.com/custos-pki/custos/shares"
)

// VerifiedRecord is a card custodian's record whose attestations verified and passed the policy.
type VerifiedRecord struct {
	Record *Record
	// Decryption and Signing are what the attestations prove about the two keys. Liveness checks
	// signatures under Signing.PublicKey.
	Decryption, Signing *Attestation
}

// VerifyRecord verifies both of a record's attestation chains under t: each slot attestation is
// signed by the record's F9 certificate, which chains to t's roots. It returns what they attest;
// [CheckPolicy] judges it.
func VerifyRecord(r *Record, t *Trust) (dec, sig *Attestation, err error) {
	if err := r.Validate(); err != nil {
		return nil, nil, err
	}
	decCert, sigCert, f9, err := r.certificates()
	if err != nil {
		return nil, nil, fmt.Errorf("card: custodian %q: %w", r.Name, err)
	}
	if dec, err = verifyChain(decCert, f9, t); err != nil {
		return nil, nil, fmt.Errorf("card: custodian %q, decryption key: %w", r.Name, err)
	}
	if sig, err = verifyChain(sigCert, f9, t); err != nil {
		return nil, nil, fmt.Errorf("card: custodian %q, signing key: %w", r.Name, err)
	}
	return dec, sig, nil
}

// VerifyRoster verifies a roster's structure and every card custodian: the record embedded for each
// piv-p256 member names the member's name and recipient, its chains verify under t, and it passes
// [CheckPolicy] with the roster's allowances; no card serves two custodians. A rehearsal trust accepts
// only rehearsal rosters; the production (Yubico) trust applies [shares.Roster.CheckProduction]. It
// returns the verified card records in roster order.
func VerifyRoster(r *shares.Roster, t *Trust) ([]*VerifiedRecord, error) {
	if t == nil {
		return nil, fmt.Errorf("card: %w: no attestation trust given", ErrAttestation)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if t.Rehearsal() {
		if !r.Rehearsal {
			return nil, fmt.Errorf("card: %w: a production roster is verified under Yubico's roots, not in rehearsal", shares.ErrPolicy)
		}
	} else if err := r.CheckProduction(); err != nil {
		return nil, err
	}
	p := Policy{Rehearsal: t.Rehearsal(), AllowTouchNever: r.AllowTouchNever}
	var out []*VerifiedRecord
	var records []*Record
	for _, m := range r.Custodians {
		if m.Kind != shares.KindPIVP256 {
			continue
		}
		rec, err := ParseRecord(m.Record)
		if err != nil {
			return nil, fmt.Errorf("roster custodian %q: %w", m.Name, err)
		}
		if rec.Name != m.Name || rec.Recipient != m.Recipient {
			return nil, fmt.Errorf("card: %w: roster custodian %q (%s) embeds the record of %q (%s)",
				ErrMalformedRecord, m.Name, m.Recipient, rec.Name, rec.Recipient)
		}
		dec, sig, err := VerifyRecord(rec, t)
		if err != nil {
			return nil, err
		}
		if err := CheckPolicy(rec, dec, sig, p); err != nil {
			return nil, err
		}
		records = append(records, rec)
		out = append(out, &VerifiedRecord{Record: rec, Decryption: dec, Signing: sig})
	}
	if err := checkDistinctCards(records); err != nil {
		return nil, err
	}
	return out, nil
}
