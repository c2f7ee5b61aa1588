package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
)

// Object is one PKCS#11 object as the lister sees it.
type Object struct {
	Handle  uint
	Class   uint
	KeyType uint // for keys
	Token   bool
	Label   string
	ID      []byte
	// Sensitive and Extractable are read for keys (false where the object has no such attribute).
	Sensitive   bool
	Extractable bool
}

func (o Object) String() string {
	return fmt.Sprintf("class=%#x keytype=%#x token=%v label=%q id=%x sensitive=%v extractable=%v", o.Class, o.KeyType, o.Token, o.Label, o.ID, o.Sensitive, o.Extractable)
}

// ListObjects logs in to the token with the given serial on module with the user PIN and lists every
// object a new session of this process sees: the token's objects and the session objects of this
// process's open sessions. The module stays initialised (others in the process may use it).
func ListObjects(t testing.TB, module, serial, pin string) []Object {
	t.Helper()
	objs, err := listObjects(module, serial, pin)
	if err != nil {
		t.Fatalf("testenv: listing objects: %v", err)
	}
	return objs
}

func listObjects(module, serial, pin string) ([]Object, error) {
	p := pkcs11.New(module)
	if p == nil {
		return nil, fmt.Errorf("cannot load %s", module)
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, err
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	for _, slot := range slots {
		ti, err := p.GetTokenInfo(slot)
		if err != nil || ti.SerialNumber != serial {
			continue
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return nil, err
		}
		defer p.CloseSession(sh)
		if err := p.Login(sh, pkcs11.CKU_USER, pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			return nil, err
		} else if err == nil {
			defer p.Logout(sh)
		}
		if err := p.FindObjectsInit(sh, nil); err != nil {
			return nil, err
		}
		var hs []pkcs11.ObjectHandle
		for {
			batch, _, err := p.FindObjects(sh, 100)
			if err != nil {
				p.FindObjectsFinal(sh)
				return nil, err
			}
			if len(batch) == 0 {
				break
			}
			hs = append(hs, batch...)
		}
		if err := p.FindObjectsFinal(sh); err != nil {
			return nil, err
		}
		var objs []Object
		for _, h := range hs {
			o := Object{Handle: uint(h)}
			for _, typ := range []uint{pkcs11.CKA_CLASS, pkcs11.CKA_TOKEN, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE} {
				a, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
				if err != nil {
					continue
				}
				v := a[0].Value
				switch typ {
				case pkcs11.CKA_CLASS:
					o.Class = ulong(v)
				case pkcs11.CKA_KEY_TYPE:
					o.KeyType = ulong(v)
				case pkcs11.CKA_TOKEN:
					o.Token = len(v) == 1 && v[0] != 0
				case pkcs11.CKA_SENSITIVE:
					o.Sensitive = len(v) == 1 && v[0] != 0
				case pkcs11.CKA_EXTRACTABLE:
					o.Extractable = len(v) == 1 && v[0] != 0
				case pkcs11.CKA_LABEL:
					o.Label = string(v)
				case pkcs11.CKA_ID:
					o.ID = v
				}
			}
			objs = append(objs, o)
		}
		return objs, nil
	}
	return nil, fmt.Errorf("no token with serial %q on %s", serial, module)
}

func ulong(v []byte) uint {
	if len(v) == 8 {
		return uint(binary.NativeEndian.Uint64(v))
	}
	if len(v) == 4 {
		return uint(binary.NativeEndian.Uint32(v))
	}
	return 0
}
