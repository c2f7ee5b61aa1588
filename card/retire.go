package card

// Retirement: a custodian's decryption key destroyed by generating a throwaway key over it (piv-go can
// delete neither a key nor an object), with a tombstone certificate that says so and the slot's fresh
// attestation as proof.

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pki/custos/wrap"
)

// ErrRetired is wrapped by the refusal of a slot whose key is already retired, or that holds no key.
var ErrRetired = errors.New("nothing to retire")

// RetiredOrg is the organization of a tombstone certificate's subject. It is neither age-plugin-yubikey's
// nor custos's signing key's, so no tool takes the throwaway key for an identity.
const RetiredOrg = "custos retired key"

// RetireOptions are the inputs of [Card.Retire].
type RetireOptions struct {
	// Slot is the retired slot (0x82 to 0x95) whose key is destroyed.
	Slot Slot
	// OldKey is the SubjectPublicKeyInfo of the key that must be in the slot (from [Card.SlotKey], read
	// before the checks that allowed the retirement); another key there stops the retirement.
	OldKey []byte
	// RecordID names the record written about the retirement, in the tombstone.
	RecordID string
	// Rehearsal marks the tombstone of a virtual card REHEARSAL.
	Rehearsal bool
	PIN       PINOptions
	// Prompt asks for the PIN, naming the flow, the record and what the card will do.
	Prompt string
	Now    func() time.Time
}

// Retirement is what a retirement did to the card.
type Retirement struct {
	Serial uint32
	Slot   Slot
	// OldKey is the destroyed key's SubjectPublicKeyInfo; NewKey the throwaway key's.
	OldKey, NewKey []byte
	// Attestation is the slot's attestation of the throwaway key, signed by F9, the card's device
	// attestation certificate.
	Attestation, F9 *x509.Certificate
	// Tombstone is the certificate left in the slot.
	Tombstone *x509.Certificate
}

// SlotKey returns the SubjectPublicKeyInfo of the key in a retired slot (GET METADATA on firmware 5.3
// and later, else the slot's certificate), and whether its certificate is a tombstone. It sends no PIN.
func (c *Card) SlotKey(s Slot) (spki []byte, tombstone bool, err error) {
	if !s.Retired() {
		return nil, false, fmt.Errorf("card: slot %v is not a retired slot (82 to 95); custos keeps decryption keys only there", s)
	}
	st, err := c.slotState(s)
	if err != nil {
		return nil, false, err
	}
	tombstone = st.cert != nil && len(st.cert.Subject.Organization) == 1 && st.cert.Subject.Organization[0] == RetiredOrg
	ps, _ := pivSlot(s)
	if st.key {
		ki, err := c.yk.KeyInfo(ps)
		if err != nil {
			return nil, false, c.cardErr(fmt.Sprintf("reading the metadata of slot %v", s), err)
		}
		if spki, err = x509.MarshalPKIXPublicKey(ki.PublicKey); err != nil {
			return nil, false, fmt.Errorf("card: YubiKey %d slot %v: %v", c.serial, s, err)
		}
		return spki, tombstone, nil
	}
	if st.cert != nil && !c.hasMetadata() {
		return st.cert.RawSubjectPublicKeyInfo, tombstone, nil
	}
	return nil, tombstone, fmt.Errorf("card: YubiKey %d slot %v holds no key: %w", c.serial, s, ErrRetired)
}

// Retire destroys the key in o.Slot: after the PIN, with the card's PIN-protected management key, it
// generates a throwaway P-256 key over it (PIN and touch always, so it is good for nothing), has the card
// attest the new key, and stores a tombstone certificate, signed by the throwaway key, whose subject
// says retired. The caller has proven the card's liveness and decided that the key may go.
func (c *Card) Retire(o RetireOptions) (*Retirement, error) {
	old, tombstone, err := c.SlotKey(o.Slot)
	switch {
	case err != nil:
		return nil, err
	case tombstone:
		return nil, fmt.Errorf("card: YubiKey %d slot %v holds a tombstone: its key was retired already (%w)", c.serial, o.Slot, ErrRetired)
	case !bytes.Equal(old, o.OldKey):
		return nil, fmt.Errorf("card: YubiKey %d slot %v holds key %s, not %s; nothing was changed", c.serial, o.Slot, wrap.FingerprintBytes(old), wrap.FingerprintBytes(o.OldKey))
	}
	pin, err := c.askPIN(o.PIN, o.Prompt)
	if err != nil {
		return nil, err
	}
	defer func() { clear(pin) }()
	if err := c.verifyPIN(pin); err != nil {
		return nil, err
	}
	mgmt, err := c.managementKey(pin)
	if err != nil {
		return nil, err
	}
	defer clear(mgmt)
	k := &enrollment{c: c, o: EnrollOptions{PIN: o.PIN, Now: o.Now}, mgmt: mgmt, pin: pin}
	ek, err := k.generate(o.Slot, PINAlways, TouchAlways)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(ek.spki, old) {
		return nil, fmt.Errorf("card: YubiKey %d slot %v still holds key %s after generating over it", c.serial, o.Slot, wrap.FingerprintBytes(old))
	}
	f9, err := c.yk.AttestationCertificate()
	if err != nil {
		return nil, c.cardErr("reading the attestation certificate (F9)", err)
	}
	ou := fmt.Sprintf("custos card retire, record %s", o.RecordID)
	if o.Rehearsal {
		ou = "REHEARSAL " + ou
	}
	if err := k.selfSign(ek, pkix.Name{
		Organization:       []string{RetiredOrg},
		OrganizationalUnit: []string{ou},
		CommonName:         fmt.Sprintf("RETIRED: key %s destroyed", wrap.FingerprintBytes(old)),
	}); err != nil {
		return nil, err
	}
	ps, _ := pivSlot(o.Slot)
	tomb, err := c.yk.Certificate(ps)
	if err != nil {
		return nil, c.cardErr(fmt.Sprintf("reading back the tombstone of slot %v", o.Slot), err)
	}
	if now, _, err := c.SlotKey(o.Slot); err != nil || !bytes.Equal(now, ek.spki) {
		return nil, fmt.Errorf("card: YubiKey %d slot %v: the throwaway key is not the slot's key on reading back (%v)", c.serial, o.Slot, err)
	}
	return &Retirement{Serial: c.serial, Slot: o.Slot, OldKey: old, NewKey: ek.spki, Attestation: ek.attestation, F9: f9, Tombstone: tomb}, nil
}

// Proof returns the retirement's proof as PEM: the slot's attestation of the throwaway key, then
// the F9 certificate that signed it.
func (r *Retirement) Proof() []byte {
	return []byte(certPEM(r.Attestation) + certPEM(r.F9))
}

// TombstonePEM returns the tombstone certificate left in the slot, as PEM.
func (r *Retirement) TombstonePEM() []byte { return []byte(certPEM(r.Tombstone)) }
