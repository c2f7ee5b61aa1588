package hsm

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// Config says which module and token to use and how to log in.
type Config struct {
	Module string
	// ExpectModuleSHA256 is the module file's pinned SHA-256 (lowercase hex). Required outside rehearsal;
	// checked before the module is loaded.
	ExpectModuleSHA256 string
	TokenSerial        string
	TokenLabel         string
	// PIN is the user PIN. Open wipes it on every path.
	PIN []byte
	// ProtectedAuth logs in through the token's protected authentication path (PIN pad, PED):
	// C_Login with no PIN.
	ProtectedAuth bool
	// Rehearsal accepts software tokens, and only them.
	Rehearsal bool
}

// Session is a logged-in read/write session on one token.
type Session struct {
	Token TokenRecord

	mod      *module
	ctx      *pkcs11.Ctx
	sh       pkcs11.SessionHandle
	loggedIn bool
}

// Open checks the module pin, loads the module, selects the token, applies the rehearsal rule and logs
// in. The PIN in cfg is wiped whatever happens. Close the session on every path.
func Open(ctx context.Context, cfg Config) (s *Session, err error) {
	defer clear(cfg.PIN)
	if cfg.ExpectModuleSHA256 == "" && !cfg.Rehearsal {
		return nil, fmt.Errorf("hsm: %w", ErrModulePin)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := loadModule(cfg.Module, cfg.ExpectModuleSHA256)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.release()
		}
	}()
	tok, err := selectToken(m, cfg.TokenSerial, cfg.TokenLabel)
	if err != nil {
		return nil, err
	}
	switch {
	case tok.Software != "" && !cfg.Rehearsal:
		return nil, fmt.Errorf("hsm: token %s is a %s token: %w", tok, tok.Software, ErrSoftwareToken)
	case tok.Software == "" && cfg.Rehearsal:
		return nil, fmt.Errorf("hsm: token %s: %w", tok, ErrNotSoftwareToken)
	}
	if cfg.ProtectedAuth && tok.Flags&pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH == 0 {
		return nil, fmt.Errorf("hsm: token %s has no protected authentication path; log in with the PIN", tok)
	}
	if !cfg.ProtectedAuth && len(cfg.PIN) == 0 {
		return nil, fmt.Errorf("hsm: no PIN for token %s", tok)
	}
	sh, err := m.ctx.OpenSession(tok.Slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_OpenSession on %s: %w", tok, err)
	}
	s = &Session{Token: tok, mod: m, ctx: m.ctx, sh: sh}
	if err := s.login(cfg.PIN); err != nil {
		m.ctx.CloseSession(sh)
		return nil, err
	}
	return s, nil
}

// login logs the user in once; a wrong PIN is never retried here.
func (s *Session) login(pin []byte) error {
	var p string
	if len(pin) > 0 {
		// No Go copy of the PIN: the string shares pin's bytes, which the caller wipes. miekg/pkcs11
		// copies it into C memory for the call (docs/threat-model.md).
		p = unsafe.String(&pin[0], len(pin))
	}
	err := s.ctx.Login(s.sh, pkcs11.CKU_USER, p)
	switch {
	case err == nil:
		s.loggedIn = true
		return nil
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
		return nil // another session of this process logged in; it logs out
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)):
		return fmt.Errorf("hsm: C_Login on %s: %w (tried once; check the PIN before trying again, the token may lock)", s.Token, ErrWrongPIN)
	}
	return fmt.Errorf("hsm: C_Login on %s: %w", s.Token, err)
}

// Close logs out, closes the session (which drops its session objects) and releases the module.
func (s *Session) Close() error {
	if s == nil || s.mod == nil {
		return nil
	}
	var errs []error
	if s.loggedIn {
		if err := s.ctx.Logout(s.sh); err != nil {
			errs = append(errs, fmt.Errorf("hsm: C_Logout: %w", err))
		}
		s.loggedIn = false
	}
	if err := s.ctx.CloseSession(s.sh); err != nil {
		errs = append(errs, fmt.Errorf("hsm: C_CloseSession: %w", err))
	}
	s.mod.release()
	s.mod = nil
	return errors.Join(errs...)
}
