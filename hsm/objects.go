package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

func attr(typ uint, v any) *pkcs11.Attribute { return pkcs11.NewAttribute(typ, v) }

// getAttrs reads attributes of h; an attribute the token will not reveal has a nil value.
func (s *Session) getAttrs(h pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	out := make(map[uint][]byte, len(types))
	for _, typ := range types {
		a, err := s.ctx.GetAttributeValue(s.sh, h, []*pkcs11.Attribute{attr(typ, nil)})
		switch {
		case err == nil:
			out[typ] = a[0].Value
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)),
			errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)):
			out[typ] = nil
		default:
			return nil, fmt.Errorf("hsm: C_GetAttributeValue(%#x): %w", typ, err)
		}
	}
	return out, nil
}

func (s *Session) getBool(h pkcs11.ObjectHandle, typ uint) (bool, error) {
	a, err := s.getAttrs(h, typ)
	if err != nil {
		return false, err
	}
	v := a[typ]
	if len(v) != 1 {
		return false, fmt.Errorf("hsm: attribute %#x of object %d is not a CK_BBOOL", typ, h)
	}
	return v[0] != 0, nil
}

// KeyAttrs are the security attributes read back from a key.
type KeyAttrs struct {
	Token       bool `json:"token"`
	Private     bool `json:"private"`
	Sensitive   bool `json:"sensitive"`
	Extractable bool `json:"extractable"`
	Sign        bool `json:"sign"`
	Decrypt     bool `json:"decrypt"`
	Unwrap      bool `json:"unwrap"`
	Wrap        bool `json:"wrap"`
}

func (k KeyAttrs) String() string {
	return fmt.Sprintf("TOKEN=%v PRIVATE=%v SENSITIVE=%v EXTRACTABLE=%v SIGN=%v DECRYPT=%v WRAP=%v UNWRAP=%v",
		k.Token, k.Private, k.Sensitive, k.Extractable, k.Sign, k.Decrypt, k.Wrap, k.Unwrap)
}

// readKeyAttrs reads the security attributes of a key; those a key type does not have read false.
func (s *Session) readKeyAttrs(h pkcs11.ObjectHandle) (KeyAttrs, error) {
	a, err := s.getAttrs(h, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_SIGN, pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_WRAP)
	if err != nil {
		return KeyAttrs{}, err
	}
	b := func(t uint) bool { return len(a[t]) == 1 && a[t][0] != 0 }
	return KeyAttrs{
		Token: b(pkcs11.CKA_TOKEN), Private: b(pkcs11.CKA_PRIVATE), Sensitive: b(pkcs11.CKA_SENSITIVE),
		Extractable: b(pkcs11.CKA_EXTRACTABLE), Sign: b(pkcs11.CKA_SIGN), Decrypt: b(pkcs11.CKA_DECRYPT),
		Unwrap: b(pkcs11.CKA_UNWRAP), Wrap: b(pkcs11.CKA_WRAP),
	}, nil
}

// objects tracks the objects an operation created so that every path destroys them.
type objects struct {
	s  *Session
	hs []pkcs11.ObjectHandle
}

func (o *objects) add(h pkcs11.ObjectHandle) pkcs11.ObjectHandle {
	o.hs = append(o.hs, h)
	return h
}

// forget stops tracking h (it was destroyed, or it is kept on purpose).
func (o *objects) forget(h pkcs11.ObjectHandle) {
	for i, x := range o.hs {
		if x == h {
			o.hs = append(o.hs[:i], o.hs[i+1:]...)
			return
		}
	}
}

// destroy destroys every tracked object, newest first, and reports what failed.
func (o *objects) destroy() error {
	var errs []error
	for i := len(o.hs) - 1; i >= 0; i-- {
		if err := o.s.ctx.DestroyObject(o.s.sh, o.hs[i]); err != nil {
			errs = append(errs, fmt.Errorf("hsm: C_DestroyObject(%d): %w", o.hs[i], err))
		}
	}
	o.hs = nil
	return errors.Join(errs...)
}
