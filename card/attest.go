package card

// PIV attestation: what a YubiKey's slot attestation certificate says about a key (the Yubico
// extensions under 1.3.6.1.4.1.41482.3), in types the custodian record shares.

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// ErrAttestation is wrapped by every refusal of an attestation chain: a signature that does not verify,
// a chain that does not end at a trusted root, or a slot attestation certificate that does not parse.
var ErrAttestation = errors.New("attestation not verified")

// Yubico's attestation extensions (developers.yubico.com, PIV/Introduction/Yubico_extensions).
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// slotSubjectPrefix starts the common name of a slot attestation certificate, followed by the slot in
// hex: "YubiKey PIV Attestation 9a".
const slotSubjectPrefix = "YubiKey PIV Attestation "

// Slot is a PIV key reference: 0x9A, 0x9C, 0x9D, 0x9E or a retired slot 0x82 to 0x95. Its text form is
// two lower-case hex digits, as in the attestation certificate's subject.
type Slot byte

// SlotCardAuthentication is slot 9E, where custos puts a card's signing key when it is free.
const SlotCardAuthentication Slot = 0x9e

func (s Slot) String() string { return fmt.Sprintf("%02x", byte(s)) }

// Retired reports whether s is a retired key management slot, the only slots for decryption keys.
func (s Slot) Retired() bool { return s >= FirstRetiredSlot && s <= LastRetiredSlot }

// MarshalText implements [encoding.TextMarshaler].
func (s Slot) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts exactly two lower-case hex digits.
func (s *Slot) UnmarshalText(b []byte) error {
	v, err := parseSlot(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func parseSlot(t string) (Slot, error) {
	if len(t) != 2 || strings.ToLower(t) != t {
		return 0, fmt.Errorf("slot %q: want two lower-case hex digits", t)
	}
	v, err := strconv.ParseUint(t, 16, 8)
	if err != nil {
		return 0, fmt.Errorf("slot %q: want two lower-case hex digits", t)
	}
	return Slot(v), nil
}

// Firmware is a YubiKey firmware version: major, minor, patch. Its text form is "5.4.3".
type Firmware [3]byte

func (f Firmware) String() string { return fmt.Sprintf("%d.%d.%d", f[0], f[1], f[2]) }

// MarshalText implements [encoding.TextMarshaler].
func (f Firmware) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts only the form String returns.
func (f *Firmware) UnmarshalText(b []byte) error {
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 {
		return fmt.Errorf("firmware %q: want MAJOR.MINOR.PATCH", b)
	}
	var v Firmware
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || strconv.FormatUint(n, 10) != p {
			return fmt.Errorf("firmware %q: want MAJOR.MINOR.PATCH, each 0 to 255", b)
		}
		v[i] = byte(n)
	}
	*f = v
	return nil
}

// PINPolicy is a PIV key's PIN policy, numbered as in Yubico's policy extension.
type PINPolicy byte

// PIN policies.
const (
	PINNever       PINPolicy = 1
	PINOnce        PINPolicy = 2
	PINAlways      PINPolicy = 3
	PINMatchOnce   PINPolicy = 4 // YubiKey Bio: fingerprint once per session
	PINMatchAlways PINPolicy = 5 // YubiKey Bio: fingerprint at every use
)

var pinPolicyNames = map[PINPolicy]string{
	PINNever: "never", PINOnce: "once", PINAlways: "always", PINMatchOnce: "match-once", PINMatchAlways: "match-always",
}

func (p PINPolicy) String() string {
	if s, ok := pinPolicyNames[p]; ok {
		return s
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(p))
}

// MarshalText implements [encoding.TextMarshaler].
func (p PINPolicy) MarshalText() ([]byte, error) {
	if _, ok := pinPolicyNames[p]; !ok {
		return nil, fmt.Errorf("PIN policy 0x%02x is not one of never, once, always, match-once, match-always", byte(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (p *PINPolicy) UnmarshalText(b []byte) error {
	for v, s := range pinPolicyNames {
		if s == string(b) {
			*p = v
			return nil
		}
	}
	return fmt.Errorf("PIN policy %q is not one of never, once, always, match-once, match-always", b)
}

// TouchPolicy is a PIV key's touch policy, numbered as in Yubico's policy extension.
type TouchPolicy byte

// Touch policies.
const (
	TouchNever  TouchPolicy = 1
	TouchAlways TouchPolicy = 2
	TouchCached TouchPolicy = 3 // a touch is good for 15 seconds
)

var touchPolicyNames = map[TouchPolicy]string{TouchNever: "never", TouchAlways: "always", TouchCached: "cached"}

func (p TouchPolicy) String() string {
	if s, ok := touchPolicyNames[p]; ok {
		return s
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(p))
}

// MarshalText implements [encoding.TextMarshaler].
func (p TouchPolicy) MarshalText() ([]byte, error) {
	if _, ok := touchPolicyNames[p]; !ok {
		return nil, fmt.Errorf("touch policy 0x%02x is not one of never, always, cached", byte(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (p *TouchPolicy) UnmarshalText(b []byte) error {
	for v, s := range touchPolicyNames {
		if s == string(b) {
			*p = v
			return nil
		}
	}
	return fmt.Errorf("touch policy %q is not one of never, always, cached", b)
}

// Attestation is what a verified slot attestation certificate says about a key. Only [VerifyChain]
// makes one, after the chain has verified.
type Attestation struct {
	// Serial is the card's serial number, or 0 when the certificate names none (some YubiKey 4).
	Serial      uint32
	Firmware    Firmware
	Slot        Slot
	PINPolicy   PINPolicy
	TouchPolicy TouchPolicy
	// FormFactor is Yubico's form factor byte (1 USB-A keychain … 5 USB-C/Lightning, +0x80 FIPS),
	// or 0 when the certificate names none.
	FormFactor byte
	// PublicKey is the attested key's SubjectPublicKeyInfo (DER).
	PublicKey []byte
	// Rehearsal is set when the chain ended at a rehearsal (virtual) root, not at Yubico's.
	Rehearsal bool
}

// parseAttestation reads the slot, the key and Yubico's extensions from a slot attestation
// certificate. The firmware and policy extensions are required; each may appear once.
func parseAttestation(c *x509.Certificate) (*Attestation, error) {
	cn := c.Subject.CommonName
	if !strings.HasPrefix(cn, slotSubjectPrefix) {
		return nil, fmt.Errorf("subject %q is not a slot attestation (%q and the slot)", cn, slotSubjectPrefix+"9a")
	}
	slot, err := parseSlot(strings.TrimPrefix(cn, slotSubjectPrefix))
	if err != nil {
		return nil, fmt.Errorf("subject %q: %v", cn, err)
	}
	a := &Attestation{Slot: slot, PublicKey: bytes.Clone(c.RawSubjectPublicKeyInfo)}
	seen := map[string]bool{}
	for _, e := range c.Extensions {
		id := e.Id.String()
		known := e.Id.Equal(oidFirmware) || e.Id.Equal(oidSerial) || e.Id.Equal(oidPolicy) || e.Id.Equal(oidFormFactor)
		if !known {
			continue
		}
		if seen[id] {
			return nil, fmt.Errorf("extension %s appears twice", id)
		}
		seen[id] = true
		if err := a.setExtension(e.Id, e.Value); err != nil {
			return nil, err
		}
	}
	if !seen[oidFirmware.String()] {
		return nil, fmt.Errorf("no firmware extension (%s)", oidFirmware)
	}
	if !seen[oidPolicy.String()] {
		return nil, fmt.Errorf("no PIN and touch policy extension (%s)", oidPolicy)
	}
	return a, nil
}

func (a *Attestation) setExtension(id asn1.ObjectIdentifier, v []byte) error {
	switch {
	case id.Equal(oidFirmware):
		if len(v) != 3 {
			return fmt.Errorf("firmware extension is %d bytes, want 3", len(v))
		}
		a.Firmware = Firmware(v)
	case id.Equal(oidSerial):
		var n *big.Int
		rest, err := asn1.Unmarshal(v, &n)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("serial extension is not one DER INTEGER")
		}
		if n.Sign() <= 0 || n.Cmp(big.NewInt(math.MaxUint32)) > 0 {
			return fmt.Errorf("serial extension %v is not a serial number (1 to 2^32-1)", n)
		}
		a.Serial = uint32(n.Uint64())
	case id.Equal(oidPolicy):
		if len(v) != 2 {
			return fmt.Errorf("policy extension is %d bytes, want 2", len(v))
		}
		a.PINPolicy, a.TouchPolicy = PINPolicy(v[0]), TouchPolicy(v[1])
		if _, ok := pinPolicyNames[a.PINPolicy]; !ok {
			return fmt.Errorf("policy extension: unknown PIN policy 0x%02x", v[0])
		}
		if _, ok := touchPolicyNames[a.TouchPolicy]; !ok {
			return fmt.Errorf("policy extension: unknown touch policy 0x%02x", v[1])
		}
	case id.Equal(oidFormFactor):
		if len(v) != 1 {
			return fmt.Errorf("form factor extension is %d bytes, want 1", len(v))
		}
		a.FormFactor = v[0]
	}
	return nil
}
