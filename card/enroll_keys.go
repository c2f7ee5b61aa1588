package card

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// oidYubicoPolicy is Yubico's PIN and touch policy extension, which age-plugin-yubikey also writes
// into its self-signed certificates.
var oidYubicoPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}

// enrollment is one enroll run on an open card whose PIN is verified.
type enrollment struct {
	c    *Card
	o    EnrollOptions
	mgmt []byte
	pin  []byte
}

// enrolledKey is a key custos generated (or keeps) on the card, with its attestation.
type enrolledKey struct {
	slot        Slot
	pin         PINPolicy
	touch       TouchPolicy
	pub         *ecdsa.PublicKey
	spki        []byte
	attestation *x509.Certificate
}

// generate makes a P-256 key in slot with the policies, and attests it.
func (k *enrollment) generate(slot Slot, pin PINPolicy, touch TouchPolicy) (*enrolledKey, error) {
	c := k.c
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	pub, err := c.yk.GenerateKey(k.mgmt, ps, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: toPIVPINPolicy(pin), TouchPolicy: toPIVTouchPolicy(touch)})
	if err != nil {
		return nil, c.cardErr(fmt.Sprintf("generating a P-256 key in slot %v", slot), err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("card: YubiKey %d generated a %T in slot %v, not a P-256 key", c.serial, pub, slot)
	}
	ek := &enrolledKey{slot: slot, pin: pin, touch: touch, pub: ec}
	return ek, k.c.attest(ek)
}

// existingKey returns the card's custos signing key in slot, from its attestation.
func (c *Card) existingKey(slot Slot) (*enrolledKey, error) {
	ek := &enrolledKey{slot: slot, pin: PINNever, touch: TouchNever}
	if err := c.attest(ek); err != nil {
		return nil, err
	}
	pub, ok := ek.attestation.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("card: YubiKey %d: the signing key in slot %v is not a P-256 key", c.serial, slot)
	}
	ek.pub = pub
	return ek, nil
}

// attest reads the slot's attestation certificate and checks it names the key generated.
func (c *Card) attest(ek *enrolledKey) error {
	ps, err := pivSlot(ek.slot)
	if err != nil {
		return err
	}
	a, err := c.yk.Attest(ps)
	if err != nil {
		return c.cardErr(fmt.Sprintf("attesting the key in slot %v", ek.slot), err)
	}
	ek.attestation, ek.spki = a, a.RawSubjectPublicKeyInfo
	if ek.pub != nil {
		spki, err := x509.MarshalPKIXPublicKey(ek.pub)
		if err != nil || string(spki) != string(a.RawSubjectPublicKeyInfo) {
			return fmt.Errorf("card: YubiKey %d attests another key in slot %v than it generated", c.serial, ek.slot)
		}
	}
	return nil
}

// writeCertificates stores the self-signed certificates: the decryption key's in age-plugin-yubikey's
// layout, signed by the key itself (the PIN is verified, a touch may be needed), and, for a new signing
// key, its own.
func (k *enrollment) writeCertificates(dec, sig *enrolledKey, newSigning bool) error {
	if err := k.selfSign(dec, pkix.Name{Organization: []string{agePluginOrg}, OrganizationalUnit: []string{agePluginOU}, CommonName: k.o.Name}); err != nil {
		return err
	}
	if !newSigning {
		return nil
	}
	return k.selfSign(sig, pkix.Name{Organization: []string{signingKeyOrg}, OrganizationalUnit: []string{signingKeyOU}, CommonName: fmt.Sprintf(signingKeyCNFmt, k.o.Name)})
}

func (k *enrollment) selfSign(ek *enrolledKey, subject pkix.Name) error {
	c := k.c
	ps, err := pivSlot(ek.slot)
	if err != nil {
		return err
	}
	if ek.pin == PINAlways {
		if err := c.verifyPIN(k.pin); err != nil {
			return err
		}
	}
	if ek.touch != TouchNever && k.o.PIN.UI != nil {
		k.o.PIN.UI.Message(fmt.Sprintf("Touch YubiKey %d now (its new key in slot %v signs its certificate).", c.serial, ek.slot))
	}
	priv, err := c.yk.PrivateKey(ps, ek.pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return c.cardErr("opening the new key", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject, Issuer: subject,
		NotBefore: k.now(), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		ExtraExtensions: []pkix.Extension{{Id: oidYubicoPolicy, Value: []byte{byte(ek.pin), byte(ek.touch)}}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ek.pub, priv.(*piv.ECDSAPrivateKey))
	if err != nil {
		return c.cardErr(fmt.Sprintf("signing the certificate of slot %v", ek.slot), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := c.yk.SetCertificate(k.mgmt, ps, cert); err != nil {
		return c.cardErr(fmt.Sprintf("storing the certificate of slot %v", ek.slot), err)
	}
	return nil
}

func (k *enrollment) now() time.Time {
	if k.o.Now != nil {
		return k.o.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

// record builds and validates the custodian record.
func (k *enrollment) record(dec, sig *enrolledKey, f9 *x509.Certificate) (*Record, error) {
	pub, err := dec.pub.ECDH()
	if err != nil {
		return nil, err
	}
	rcp, err := NewRecipient(pub)
	if err != nil {
		return nil, err
	}
	stub, err := NewStub(k.c.serial, byte(dec.slot), rcp)
	if err != nil {
		return nil, err
	}
	r := &Record{
		Format: RecordFormat, Name: k.o.Name, Rehearsal: k.o.Rehearsal, Recipient: rcp.String(),
		Identity: stub.String(), Serial: k.c.serial, Firmware: k.c.firmware,
		Decryption:    keyRecord(dec),
		Signing:       keyRecord(sig),
		F9Certificate: certPEM(f9),
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func keyRecord(ek *enrolledKey) KeyRecord {
	return KeyRecord{Slot: ek.slot, PINPolicy: ek.pin, TouchPolicy: ek.touch, PublicKey: ek.spki, Attestation: certPEM(ek.attestation)}
}

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
