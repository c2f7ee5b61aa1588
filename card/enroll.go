package card

// Enrollment: two keys generated on a custodian's card without destroying anything already on it,
// and the custodian record that proves them.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/custos-pki/custos/shares"
)

// ErrNeedsForce is wrapped by the refusal of an enrollment that could destroy or miss a key: a slot
// that is occupied, or firmware without GET METADATA.
var ErrNeedsForce = errors.New("needs --force")

// EnrollOptions are the choices of custos card enroll.
type EnrollOptions struct {
	Name string
	// Slot is the retired slot for the decryption key, 1 to 20 (key reference 0x81+Slot); 0 for the
	// first free one.
	Slot        int
	PINPolicy   PINPolicy   // once (default) or always
	TouchPolicy TouchPolicy // always (default), cached or never
	// Force allows replacing the key in the chosen --slot (after ConfirmReplace) and enrolling a card
	// without GET METADATA.
	Force bool
	// DecryptionKeyOnly adds a decryption key and keeps the card's custos signing key.
	DecryptionKeyOnly bool
	Rehearsal         bool
	PIN               PINOptions
	// NewCredentials returns a new PIN and PUK for a card that still has the default PIN, for the
	// caller to wipe.
	NewCredentials func(serial uint32) (pin, puk []byte, err error)
	// ConfirmReplace asks the operator to type answer to replace what prompt names.
	ConfirmReplace func(prompt, answer string) (bool, error)
	Now            func() time.Time
}

// Enroll generates the custodian's keys on the card and returns the custodian record. Nothing on the
// card is replaced unless --force names the slot and the operator types the confirmation; a card with
// the default PIN and management key is made safe first.
func Enroll(c *Card, o EnrollOptions) (*Record, error) {
	if o.PINPolicy == 0 {
		o.PINPolicy = PINOnce
	}
	if o.TouchPolicy == 0 {
		o.TouchPolicy = TouchAlways
	}
	if err := checkEnrollOptions(o); err != nil {
		return nil, err
	}
	if !c.hasMetadata() && !o.Force {
		return nil, fmt.Errorf("card: YubiKey %d has firmware %v, which has no GET METADATA: custos cannot rule out a key imported into a slot without a certificate; check its slots (ykman piv info), then enroll with --force (%w)",
			c.serial, c.firmware, ErrNeedsForce)
	}
	decSlot, sigSlot, keep, err := c.chooseSlots(o)
	if err != nil {
		return nil, err
	}
	pin, err := c.askPIN(o.PIN, fmt.Sprintf("custos card enroll: PIN of YubiKey %d, to generate the keys of custodian %q in slots %v and %v", c.serial, o.Name, decSlot, sigSlot))
	if err != nil {
		return nil, err
	}
	defer func() { clear(pin) }()
	if err := c.verifyPIN(pin); err != nil {
		return nil, err
	}
	if bytes.Equal(pin, []byte(DefaultPIN)) {
		if pin, err = c.replaceDefaultPIN(pin, o); err != nil {
			return nil, err
		}
	}
	mgmt, err := c.managementKey(pin)
	if err != nil {
		return nil, err
	}
	defer clear(mgmt)

	k := &enrollment{c: c, o: o, mgmt: mgmt, pin: pin}
	dec, err := k.generate(decSlot, o.PINPolicy, o.TouchPolicy)
	if err != nil {
		return nil, err
	}
	sig := keep
	if sig == nil {
		if sig, err = k.generate(sigSlot, PINNever, TouchNever); err != nil {
			return nil, err
		}
	}
	f9, err := c.yk.AttestationCertificate()
	if err != nil {
		return nil, c.cardErr("reading the attestation certificate (F9)", err)
	}
	if err := k.writeCertificates(dec, sig, keep == nil); err != nil {
		return nil, err
	}
	return k.record(dec, sig, f9)
}

func checkEnrollOptions(o EnrollOptions) error {
	if !shares.ValidName(o.Name) {
		return fmt.Errorf("card: custodian name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", o.Name)
	}
	if o.Slot < 0 || o.Slot > 20 {
		return fmt.Errorf("card: --slot %d: choose a retired slot 1 to 20", o.Slot)
	}
	if o.PINPolicy != PINOnce && o.PINPolicy != PINAlways {
		return fmt.Errorf("card: PIN policy %v: a decryption key needs the PIN (once or always)", o.PINPolicy)
	}
	if _, ok := touchPolicyNames[o.TouchPolicy]; !ok {
		return fmt.Errorf("card: touch policy %v", o.TouchPolicy)
	}
	return nil
}

// chooseSlots picks the decryption key's slot and the signing key's; with DecryptionKeyOnly it returns
// the card's existing signing key instead of a slot for a new one.
func (c *Card) chooseSlots(o EnrollOptions) (dec, sig Slot, keep *enrolledKey, err error) {
	states := map[Slot]SlotState{}
	for _, s := range candidateSlots() {
		if states[s], err = c.slotState(s); err != nil {
			return 0, 0, nil, err
		}
	}
	free := func(except Slot) Slot {
		for k := FirstRetiredSlot; k <= LastRetiredSlot; k++ {
			if s := Slot(k); s != except && !states[s].Occupied() {
				return s
			}
		}
		return 0
	}
	if o.Slot != 0 {
		dec = Slot(0x81 + o.Slot)
		if st := states[dec]; st.Occupied() {
			if !o.Force {
				return 0, 0, nil, fmt.Errorf("card: YubiKey %d --slot %d is not free (%s); custos never replaces a key without --force (%w)", c.serial, o.Slot, st.describe(), ErrNeedsForce)
			}
			answer := fmt.Sprintf("replace %v", dec)
			ok, err := o.ConfirmReplace(fmt.Sprintf("YubiKey %d %s will be DESTROYED. Type %q to replace it", c.serial, st.describe(), answer), answer)
			if err != nil {
				return 0, 0, nil, fmt.Errorf("card: confirming the replacement of slot %v: %w", dec, err)
			}
			if !ok {
				return 0, 0, nil, fmt.Errorf("card: YubiKey %d slot %v left as it was: the replacement was not confirmed", c.serial, dec)
			}
		}
	} else if dec = free(0); dec == 0 {
		return 0, 0, nil, fmt.Errorf("card: YubiKey %d has no free retired slot (all 20 hold a key or certificate)", c.serial)
	}
	if o.DecryptionKeyOnly {
		for _, s := range candidateSlots() {
			if states[s].Use == "custos-signing" {
				k, err := c.existingKey(s)
				return dec, s, k, err
			}
		}
		return 0, 0, nil, fmt.Errorf("card: YubiKey %d holds no custos signing key to keep; enroll it without --decryption-key-only", c.serial)
	}
	if sig = SlotCardAuthentication; states[sig].Occupied() {
		if sig = free(dec); sig == 0 {
			return 0, 0, nil, fmt.Errorf("card: YubiKey %d has no free slot for the signing key (9e and the retired slots are taken)", c.serial)
		}
	}
	return dec, sig, nil, nil
}

// replaceDefaultPIN sets a new PIN and PUK on a card that still has the default PIN, and returns the
// new PIN (verified) in place of the old.
func (c *Card) replaceDefaultPIN(old []byte, o EnrollOptions) ([]byte, error) {
	if o.NewCredentials == nil {
		return nil, fmt.Errorf("card: YubiKey %d still has the default PIN; custos enrolls it only after setting a new PIN and PUK", c.serial)
	}
	pin, puk, err := o.NewCredentials(c.serial)
	if err != nil {
		return nil, err
	}
	defer clear(puk)
	if err := checkPIN(pin); err != nil {
		clear(pin)
		return nil, fmt.Errorf("card: new PIN: %w", err)
	}
	if len(puk) < 6 || len(puk) > 8 || bytes.Equal(puk, []byte(DefaultPUK)) || bytes.Equal(pin, []byte(DefaultPIN)) {
		clear(pin)
		return nil, errors.New("card: the new PIN and PUK must be 6 to 8 characters and not the defaults")
	}
	if err := c.yk.SetPIN(string(old), string(pin)); err != nil {
		clear(pin)
		return nil, c.cardErr("setting the new PIN", err)
	}
	if err := c.yk.SetPUK(DefaultPUK, string(puk)); err != nil {
		var ae piv.AuthErr
		if !errors.As(err, &ae) {
			clear(pin)
			return nil, c.cardErr("setting the new PUK", err)
		}
		o.PIN.UI.Message(fmt.Sprintf("YubiKey %d: the PUK is not the default; it was left unchanged (%d PUK tries left).", c.serial, ae.Retries))
	}
	clear(old)
	if err := c.verifyPIN(pin); err != nil {
		clear(pin)
		return nil, err
	}
	return pin, nil
}

// managementKey returns the card's management key: a default one is replaced by a random key stored
// PIN-protected on the card (first stored, then set, so that a failure in between never leaves the card
// with a key no one knows); otherwise the PIN-protected one is read.
func (c *Card) managementKey(pin []byte) ([]byte, error) {
	// 24 bytes: piv-go sets it as AES-192 on firmware 5.4 and later (3DES before), and writes the
	// PIN-protected copy with a fixed 24-byte length, which would garble a 32-byte key.
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := c.yk.SetMetadata(piv.DefaultManagementKey, &piv.Metadata{ManagementKey: &key}); err == nil {
		if err := c.yk.SetManagementKey(piv.DefaultManagementKey, key); err != nil {
			clear(key)
			return nil, c.cardErr("replacing the default management key", err)
		}
		return key, nil
	}
	clear(key)
	m, err := c.yk.Metadata(string(pin))
	if err != nil {
		return nil, c.cardErr("reading the PIN-protected management key", err)
	}
	if m.ManagementKey == nil {
		return nil, fmt.Errorf("card: YubiKey %d's management key is neither the default nor stored PIN-protected on the card; custos cannot enroll it (ykman piv access change-management-key --protect stores it so)", c.serial)
	}
	return *m.ManagementKey, nil
}
