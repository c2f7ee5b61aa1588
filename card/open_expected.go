package card

import (
	"fmt"

	"github.com/custos-pki/custos/shares"
)

// Expected is what a roster or manifest pins about a custodian's card: the card it must be, and its
// two attested keys.
type Expected struct {
	Name string
	// Recipient is the decryption key's age1yubikey1… recipient.
	Recipient      string
	Serial         uint32
	DecryptionSlot Slot
	SigningSlot    Slot
	// DecryptionKey and SigningKey are SubjectPublicKeyInfo DER.
	DecryptionKey, SigningKey []byte
	PINPolicy                 PINPolicy
	TouchPolicy               TouchPolicy
}

// ExpectedFromRecord returns what a verified custodian record pins.
func ExpectedFromRecord(r *Record) Expected {
	return Expected{
		Name: r.Name, Recipient: r.Recipient, Serial: r.Serial, DecryptionSlot: r.Decryption.Slot, SigningSlot: r.Signing.Slot,
		DecryptionKey: r.Decryption.PublicKey, SigningKey: r.Signing.PublicKey,
		PINPolicy: r.Decryption.PINPolicy, TouchPolicy: r.Decryption.TouchPolicy,
	}
}

// CardInfo returns what a manifest pins about a card custodian, from its verified record.
func CardInfo(r *Record) *shares.CardInfo {
	return &shares.CardInfo{
		Serial: r.Serial, Slot: r.Decryption.Slot.String(), SigningSlot: r.Signing.Slot.String(),
		DecryptionKey: r.Decryption.PublicKey, SigningKey: r.Signing.PublicKey,
		PINPolicy: r.Decryption.PINPolicy.String(), TouchPolicy: r.Decryption.TouchPolicy.String(),
		Firmware: r.Firmware.String(),
	}
}

// ExpectedFromCardInfo returns what a signed manifest pins about the card of custodian name.
func ExpectedFromCardInfo(name string, ci *shares.CardInfo) (Expected, error) {
	e := Expected{Name: name, Serial: ci.Serial, DecryptionKey: ci.DecryptionKey, SigningKey: ci.SigningKey}
	for _, f := range []struct {
		what string
		v    string
		into interface{ UnmarshalText([]byte) error }
	}{
		{"slot", ci.Slot, &e.DecryptionSlot},
		{"signing slot", ci.SigningSlot, &e.SigningSlot},
		{"PIN policy", ci.PINPolicy, &e.PINPolicy},
		{"touch policy", ci.TouchPolicy, &e.TouchPolicy},
	} {
		if err := f.into.UnmarshalText([]byte(f.v)); err != nil {
			return Expected{}, fmt.Errorf("card: manifest entry of %q: %s: %v", name, f.what, err)
		}
	}
	if !e.DecryptionSlot.Retired() {
		return Expected{}, fmt.Errorf("card: manifest entry of %q: decryption slot %v is not a retired slot", name, e.DecryptionSlot)
	}
	dec, err := parseP256SPKI(e.DecryptionKey)
	if err != nil {
		return Expected{}, fmt.Errorf("card: manifest entry of %q: decryption key: %v", name, err)
	}
	pub, err := dec.ECDH()
	if err != nil {
		return Expected{}, fmt.Errorf("card: manifest entry of %q: decryption key: %v", name, err)
	}
	r, err := NewRecipient(pub)
	if err != nil {
		return Expected{}, err
	}
	e.Recipient = r.String()
	if _, err := parseP256SPKI(e.SigningKey); err != nil {
		return Expected{}, fmt.Errorf("card: manifest entry of %q: signing key: %v", name, err)
	}
	return e, nil
}
