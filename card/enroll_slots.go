package card

// What a card's key slots hold, for card list and for choosing free slots at enrollment.

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/custos-pki/custos/wrap"
)

// Certificate subjects custos writes: the decryption key's in age-plugin-yubikey's layout (so that
// tool lists it), the signing key's under custos's own organization.
const (
	agePluginOrg    = "age-plugin-yubikey"
	agePluginOU     = "0.5.0"
	signingKeyOrg   = "custos"
	signingKeyOU    = "custos signing key (custos-live-v1, custos-receipt-v1, custos-seal-v1)"
	signingKeyCNFmt = "custos signing key of %s"
)

// SlotState is what one key slot holds.
type SlotState struct {
	Slot Slot `json:"slot"`
	// Use is "age" (an age-plugin-yubikey identity, custos's decryption keys included), "custos-signing",
	// "other" (a key with a foreign certificate) or "key-without-certificate".
	Use  string `json:"use"`
	Name string `json:"name,omitempty"` // the certificate's subject common name
	// PublicKey is the fingerprint of the slot's key, when known.
	PublicKey   string `json:"public_key,omitempty"`
	PINPolicy   string `json:"pin_policy,omitempty"`
	TouchPolicy string `json:"touch_policy,omitempty"`

	cert *x509.Certificate
	key  bool // GET METADATA found a key
}

// Occupied reports whether the slot holds a certificate or a key.
func (s SlotState) Occupied() bool { return s.cert != nil || s.key }

// describe names what a slot holds, for the confirmation that replaces it.
func (s SlotState) describe() string {
	d := fmt.Sprintf("slot %v: %s", s.Slot, s.Use)
	if s.Name != "" {
		d += fmt.Sprintf(" %q", s.Name)
	}
	if s.PublicKey != "" {
		d += " key " + s.PublicKey
	}
	return d
}

// candidateSlots are the slots custos uses: 9e for signing keys and the 20 retired slots.
func candidateSlots() []Slot {
	s := []Slot{SlotCardAuthentication}
	for k := FirstRetiredSlot; k <= LastRetiredSlot; k++ {
		s = append(s, Slot(k))
	}
	return s
}

// Slots reads what the card's slot 9e and retired slots hold: certificates, and on firmware 5.3 and
// later the keys GET METADATA reports (a key imported without a certificate included). Only occupied
// slots are returned.
func (c *Card) Slots() ([]SlotState, error) {
	var out []SlotState
	for _, s := range candidateSlots() {
		st, err := c.slotState(s)
		if err != nil {
			return nil, err
		}
		if st.Occupied() {
			out = append(out, st)
		}
	}
	return out, nil
}

func (c *Card) slotState(s Slot) (SlotState, error) {
	ps, err := pivSlot(s)
	if err != nil {
		return SlotState{}, err
	}
	st := SlotState{Slot: s}
	cert, err := c.yk.Certificate(ps)
	switch {
	case err == nil:
		st.cert, st.Name = cert, cert.Subject.CommonName
		st.PublicKey = wrap.FingerprintBytes(cert.RawSubjectPublicKeyInfo)
		st.Use = "other"
		switch org := cert.Subject.Organization; {
		case len(org) == 1 && org[0] == agePluginOrg:
			st.Use = "age"
		case len(org) == 1 && org[0] == signingKeyOrg:
			st.Use = "custos-signing"
		}
	case errors.Is(err, piv.ErrNotFound):
	default:
		return SlotState{}, c.cardErr(fmt.Sprintf("reading the certificate of slot %v", s), err)
	}
	if !c.hasMetadata() {
		return st, nil
	}
	ki, err := c.yk.KeyInfo(ps)
	switch {
	case err == nil:
		st.key = true
		st.PINPolicy, st.TouchPolicy = pivPINPolicy(ki.PINPolicy).String(), pivTouchPolicy(ki.TouchPolicy).String()
		if st.cert == nil {
			st.Use = "key-without-certificate"
			if spki, err := x509.MarshalPKIXPublicKey(ki.PublicKey); err == nil {
				st.PublicKey = wrap.FingerprintBytes(spki)
			}
		}
	case errors.Is(err, piv.ErrNotFound):
	default:
		return SlotState{}, c.cardErr(fmt.Sprintf("reading the metadata of slot %v", s), err)
	}
	return st, nil
}

func pivPINPolicy(p piv.PINPolicy) PINPolicy {
	switch p {
	case piv.PINPolicyNever:
		return PINNever
	case piv.PINPolicyOnce:
		return PINOnce
	case piv.PINPolicyAlways:
		return PINAlways
	}
	return 0
}

func pivTouchPolicy(p piv.TouchPolicy) TouchPolicy {
	switch p {
	case piv.TouchPolicyNever:
		return TouchNever
	case piv.TouchPolicyAlways:
		return TouchAlways
	case piv.TouchPolicyCached:
		return TouchCached
	}
	return 0
}

func toPIVPINPolicy(p PINPolicy) piv.PINPolicy {
	switch p {
	case PINNever:
		return piv.PINPolicyNever
	case PINOnce:
		return piv.PINPolicyOnce
	}
	return piv.PINPolicyAlways
}

func toPIVTouchPolicy(p TouchPolicy) piv.TouchPolicy {
	switch p {
	case TouchNever:
		return piv.TouchPolicyNever
	case TouchCached:
		return piv.TouchPolicyCached
	}
	return piv.TouchPolicyAlways
}
