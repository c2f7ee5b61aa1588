package ceremony

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/custos-pki/custos/internal/jcs"
)

// ReceiptSigningInput returns what a card's receipt signature covers: "custos-receipt-v1\n" ‖ the
// canonical JSON of the receipt with its card signature set to null.
func ReceiptSigningInput(r *Receipt) ([]byte, error) {
	c := *r
	if r.Card != nil {
		card := *r.Card
		card.Signature = nil
		c.Card = &card
	}
	b, err := jcs.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return append([]byte(ReceiptFormat+"\n"), b...), nil
}

// ParseReceipt parses a receipt file.
func ParseReceipt(b []byte) (*Receipt, error) {
	var r Receipt
	if err := jcs.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if r.Format != ReceiptFormat {
		return nil, fmt.Errorf("receipt: format %q, want %q", r.Format, ReceiptFormat)
	}
	return &r, nil
}

// VerifyReceipt checks a health-check receipt against verified records: one of them must hold the
// manifest the receipt names (by SHA-256), the custodian must be in it with the file hashes the receipt
// states, and a card's signature must verify under the signing key that manifest pins for its serial.
func VerifyReceipt(path string, records []*VerifiedRecord) error {
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return fmt.Errorf("receipt: %w", err)
	}
	r, err := ParseReceipt(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, vr := range records {
		if vr.Manifest == nil || vr.Body.Files["manifest.json"] != r.ManifestSHA256 {
			continue
		}
		m := vr.Manifest
		e, ok := m.Custodian(r.Custodian)
		switch {
		case !ok:
			return fmt.Errorf("%s: custodian %q is not in the manifest of %s", path, r.Custodian, vr.Dir)
		case r.CeremonyID != m.CeremonyID || r.Generation != m.Generation:
			return fmt.Errorf("%s: names ceremony %s generation %d, the manifest is %s generation %d", path, r.CeremonyID, r.Generation, m.CeremonyID, m.Generation)
		case r.ShareFileSHA256 != e.Share.FileSHA256 || r.CheckFileSHA256 != e.Check.FileSHA256:
			return fmt.Errorf("%s: the file hashes differ from the manifest's for %q", path, r.Custodian)
		case r.Outcome != "pass":
			return fmt.Errorf("%s: the check of %q did not pass (%s)", path, r.Custodian, r.Outcome)
		case r.Rehearsal != m.Rehearsal:
			return fmt.Errorf("%s: rehearsal and production mixed", path)
		}
		if e.Card == nil {
			if r.Card != nil {
				return fmt.Errorf("%s: a card signature for a software custodian", path)
			}
			return nil
		}
		if r.Card == nil {
			return fmt.Errorf("%s: %q holds a card, but the receipt carries no card signature", path, r.Custodian)
		}
		if r.Card.Serial != e.Card.Serial || !bytes.Equal(r.Card.SigningKey, e.Card.SigningKey) {
			return fmt.Errorf("%s: signed by card %d with a key the manifest does not pin for %q", path, r.Card.Serial, r.Custodian)
		}
		in, err := ReceiptSigningInput(r)
		if err != nil {
			return err
		}
		if err := verifySealSignature(in, SealSignature{PublicKey: r.Card.SigningKey, Signature: r.Card.Signature}); err != nil {
			return fmt.Errorf("%s: card signature: %v", path, err)
		}
		return nil
	}
	return fmt.Errorf("%s: %w: no record given holds the manifest it names (%s)", path, errNoRecord, r.ManifestSHA256)
}

var errNoRecord = errors.New("no matching record")
