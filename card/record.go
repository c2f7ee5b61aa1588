package card

// The custodian record: what `custos card enroll` writes about a custodian's card, and what a roster
// embeds for every piv-p256 custodian.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
)

// RecordFormat is the version string of a custodian record.
const RecordFormat = "custos-custodian-v1"

// ErrMalformedRecord is wrapped by every refusal of a custodian record's structure.
var ErrMalformedRecord = errors.New("malformed custodian record")

// Record is a custodian's enrollment record: the card, its two keys with their policies and
// attestations, and the F9 certificate that signed both attestations. It is written in canonical JSON
// (RFC 8785). A parsed record is consistent with itself; whether its attestations verify and its
// policies are acceptable is [VerifyRecord] and [CheckPolicy]'s question.
type Record struct {
	Format string `json:"format"`
	Name   string `json:"name"`
	// Rehearsal is set on records of virtual cards, enrolled with --rehearsal.
	Rehearsal bool `json:"rehearsal"`
	// Recipient is the decryption key's age1yubikey1… recipient.
	Recipient string `json:"recipient"`
	// Identity is the AGE-PLUGIN-YUBIKEY-1… identity stub naming serial, decryption slot and key tag.
	Identity string   `json:"identity"`
	Serial   uint32   `json:"serial"`
	Firmware Firmware `json:"firmware"`
	// Decryption is the P-256 key files are encrypted to, in a retired slot.
	Decryption KeyRecord `json:"decryption"`
	// Signing is the P-256 key that signs liveness challenges and receipts (PIN and touch never).
	Signing KeyRecord `json:"signing"`
	// F9Certificate is the card's device attestation certificate (slot F9), PEM.
	F9Certificate string `json:"f9_certificate"`
}

// KeyRecord is one of a card's two keys.
type KeyRecord struct {
	Slot        Slot        `json:"slot"`
	PINPolicy   PINPolicy   `json:"pin_policy"`
	TouchPolicy TouchPolicy `json:"touch_policy"`
	// PublicKey is the key's SubjectPublicKeyInfo, DER (base64 in JSON).
	PublicKey []byte `json:"public_key"`
	// Attestation is the slot attestation certificate for the key, PEM.
	Attestation string `json:"attestation"`
}

// ParseRecord parses a custodian record file and validates its structure.
func ParseRecord(b []byte) (*Record, error) {
	var r Record
	if err := jcs.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("card: %w: %v", ErrMalformedRecord, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Marshal validates the record and returns the record file: canonical JSON and a newline.
func (r *Record) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := jcs.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("card: custodian record: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate checks the record's structure: format, name, the recipient and identity naming the
// decryption key, serial and slot, the slots, policies and keys, and certificates that parse and
// certify the recorded keys.
func (r *Record) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("card: %w: %v", ErrMalformedRecord, err)
	}
	return nil
}

func (r *Record) validate() error {
	if r.Format != RecordFormat {
		return fmt.Errorf("format %q, want %q", r.Format, RecordFormat)
	}
	if !shares.ValidName(r.Name) {
		return fmt.Errorf("custodian name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", r.Name)
	}
	if r.Serial == 0 {
		return errors.New("serial 0: a YubiKey's serial is never 0")
	}
	if !r.Decryption.Slot.Retired() {
		return fmt.Errorf("decryption slot %v is not a retired slot (82 to 95)", r.Decryption.Slot)
	}
	if s := r.Signing.Slot; s != SlotCardAuthentication && !s.Retired() {
		return fmt.Errorf("signing slot %v is neither 9e nor a retired slot (82 to 95)", s)
	}
	if r.Signing.Slot == r.Decryption.Slot {
		return fmt.Errorf("decryption and signing keys are both in slot %v", r.Signing.Slot)
	}
	rcp, err := ParseRecipient(r.Recipient)
	if err != nil {
		return unprefixed(err)
	}
	if rcp.String() != r.Recipient {
		return fmt.Errorf("recipient %q is not in canonical form %q", r.Recipient, rcp)
	}
	stub, err := ParseStub(r.Identity)
	if err != nil {
		return unprefixed(err)
	}
	if stub.String() != r.Identity {
		return fmt.Errorf("identity is not in canonical form (trailing payload bytes)")
	}
	if stub.Serial != r.Serial || Slot(stub.Slot) != r.Decryption.Slot || stub.Tag != rcp.Tag() {
		return fmt.Errorf("identity names YubiKey %d slot %02x key tag %x, but the record has serial %d, decryption slot %v, recipient tag %x",
			stub.Serial, stub.Slot, stub.Tag, r.Serial, r.Decryption.Slot, rcp.Tag())
	}
	dec, err := r.Decryption.validate("decryption")
	if err != nil {
		return err
	}
	if _, err := r.Signing.validate("signing"); err != nil {
		return err
	}
	decECDH, err := dec.ECDH()
	if err != nil || !decECDH.Equal(rcp.PublicKey()) {
		return errors.New("the decryption public key is not the recipient's key")
	}
	if bytes.Equal(r.Decryption.PublicKey, r.Signing.PublicKey) {
		return errors.New("decryption and signing keys are the same key")
	}
	decCert, sigCert, _, err := r.certificates()
	if err != nil {
		return err
	}
	if !bytes.Equal(decCert.RawSubjectPublicKeyInfo, r.Decryption.PublicKey) {
		return errors.New("the decryption key's attestation certifies another key than the record's")
	}
	if !bytes.Equal(sigCert.RawSubjectPublicKeyInfo, r.Signing.PublicKey) {
		return errors.New("the signing key's attestation certifies another key than the record's")
	}
	return nil
}

// unprefixed returns err's message without the package prefix, for errors that Validate prefixes again.
func unprefixed(err error) error { return errors.New(strings.TrimPrefix(err.Error(), "card: ")) }

// validate checks a key record's policies and its P-256 key.
func (k *KeyRecord) validate(which string) (*ecdsa.PublicKey, error) {
	if _, ok := pinPolicyNames[k.PINPolicy]; !ok {
		return nil, fmt.Errorf("%s key: PIN policy %v", which, k.PINPolicy)
	}
	if _, ok := touchPolicyNames[k.TouchPolicy]; !ok {
		return nil, fmt.Errorf("%s key: touch policy %v", which, k.TouchPolicy)
	}
	pub, err := parseP256SPKI(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%s key: %v", which, err)
	}
	return pub, nil
}

// parseP256SPKI parses a P-256 SubjectPublicKeyInfo in its one DER encoding (uncompressed point).
func parseP256SPKI(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key is a %T, want P-256", k)
	}
	again, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || !bytes.Equal(again, der) {
		return nil, errors.New("public key is not in DER SubjectPublicKeyInfo form")
	}
	return pub, nil
}

// certificates returns the record's two slot attestation certificates and its F9 certificate.
func (r *Record) certificates() (dec, sig, f9 *x509.Certificate, err error) {
	if dec, err = parseCertificatePEM(r.Decryption.Attestation); err != nil {
		return nil, nil, nil, fmt.Errorf("decryption key attestation: %w", err)
	}
	if sig, err = parseCertificatePEM(r.Signing.Attestation); err != nil {
		return nil, nil, nil, fmt.Errorf("signing key attestation: %w", err)
	}
	if f9, err = parseCertificatePEM(r.F9Certificate); err != nil {
		return nil, nil, nil, fmt.Errorf("F9 certificate: %w", err)
	}
	return dec, sig, f9, nil
}
