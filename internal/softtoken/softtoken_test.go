package softtoken_test

import (
	"os"
	"testing"

	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/miekg/pkcs11"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveTokenDirs()
	os.Exit(code)
}

// Many SoftHSM tokens in one process, each usable at once with its PIN.
func TestSoftHSMManyTokens(t *testing.T) {
	serials := map[string]bool{}
	for _, label := range []string{"one", "two", "three"} {
		tok := testenv.SoftHSMToken(t, label)
		if serials[tok.Serial] {
			t.Fatalf("serial %s twice", tok.Serial)
		}
		serials[tok.Serial] = true
		if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
			t.Fatalf("new token %s has objects: %v", label, objs)
		}
	}
	if _, err := softtoken.OpenSoftHSM(t.TempDir()); err == nil {
		t.Fatal("a second SoftHSM configuration in one process was accepted")
	}
}

// openCryptoki's soft token runs in private namespaces with its own pkcsslotd and takes the PINs.
func TestOpenCryptoki(t *testing.T) {
	tok := testenv.OpenCryptoki(t, "custos-ock")
	if tok == nil {
		return
	}
	p := pkcs11.New(tok.Module)
	if err := p.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	ti, err := p.GetTokenInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	if ti.Label != "custos-ock" || ti.Model != "IBM SoftTok" || ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0 {
		t.Fatalf("token info %+v", ti)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("new token has objects: %v", objs)
	}
	if _, err := os.Stat("/run/pkcsslotd.socket"); err != nil {
		t.Fatal(err)
	}
}
