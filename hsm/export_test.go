package hsm

import (
	"testing"

	"github.com/miekg/pkcs11"
)

// FailCopyObject makes C_CopyObject fail until the test ends, as on a module that cannot copy.
func FailCopyObject(t testing.TB) {
	old := copyObject
	copyObject = func(*Session, pkcs11.ObjectHandle, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
		return 0, pkcs11.Error(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
	}
	t.Cleanup(func() { copyObject = old })
}
