// Package softtoken starts and prepares software PKCS#11 tokens: SoftHSM2 tokens in a private token
// directory, and openCryptoki's soft token behind its own pkcsslotd in private namespaces. It is used by
// the tests and by rehearsals; production never touches it.
package softtoken

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Token is an initialised software token and what is needed to use it.
type Token struct {
	Module  string // path of the PKCS#11 module
	Label   string
	Serial  string
	SOPIN   string
	UserPIN string
}

// initialize initialises the module in this process, accepting that someone else in the process already
// did (PKCS#11 modules are initialised once per process). The module is never finalised here: other
// users in the process may hold sessions.
func initialize(p *pkcs11.Ctx) error {
	err := p.Initialize()
	if err == nil || errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil
	}
	return err
}

// initToken runs C_InitToken on slot, sets the user PIN with C_InitPIN and returns the token's serial.
func initToken(p *pkcs11.Ctx, slot uint, label, soPIN, userPIN string) (string, error) {
	if err := p.InitToken(slot, soPIN, label); err != nil {
		return "", fmt.Errorf("softtoken: C_InitToken: %w", err)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return "", fmt.Errorf("softtoken: C_OpenSession: %w", err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return "", fmt.Errorf("softtoken: C_Login (SO): %w", err)
	}
	defer p.Logout(sh)
	if err := p.InitPIN(sh, userPIN); err != nil {
		return "", fmt.Errorf("softtoken: C_InitPIN: %w", err)
	}
	ti, err := p.GetTokenInfo(slot)
	if err != nil {
		return "", fmt.Errorf("softtoken: C_GetTokenInfo: %w", err)
	}
	return ti.SerialNumber, nil
}
