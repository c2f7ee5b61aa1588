package softtoken

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// SoftHSMModule is the Debian path of SoftHSM2's PKCS#11 module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is this process's SoftHSM2 configuration. SoftHSM reads SOFTHSM2_CONF once, when the module
// is first initialised in a process, and sees tokens that another process creates only after a new
// C_Initialize; so a process has exactly one configuration and makes its tokens with C_InitToken on
// the free slot, in process.
type SoftHSM struct {
	Dir  string // token directory and configuration file live here
	Conf string // the configuration file, also in SOFTHSM2_CONF

	mu  sync.Mutex
	ctx *pkcs11.Ctx
}

var (
	softhsmMu  sync.Mutex
	softhsmCfg *SoftHSM
)

// ErrSoftHSMConfigured is returned by OpenSoftHSM when the process already uses another directory.
var ErrSoftHSMConfigured = errors.New("softtoken: this process already has a SoftHSM configuration")

// OpenSoftHSM writes a SoftHSM2 configuration with its token directory under dir, points SOFTHSM2_CONF
// at it and returns it. A second call with the same dir returns the same configuration; with another
// dir it fails with ErrSoftHSMConfigured. It must run before the module is first loaded.
func OpenSoftHSM(dir string) (*SoftHSM, error) {
	softhsmMu.Lock()
	defer softhsmMu.Unlock()
	if softhsmCfg != nil {
		if softhsmCfg.Dir == dir {
			return softhsmCfg, nil
		}
		return nil, fmt.Errorf("%w (%s)", ErrSoftHSMConfigured, softhsmCfg.Dir)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\nslots.mechanisms = ALL\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	softhsmCfg = &SoftHSM{Dir: dir, Conf: conf}
	return softhsmCfg, nil
}

// NewToken initialises a new token on SoftHSM's free slot with the given label and PINs.
func (s *SoftHSM) NewToken(label, soPIN, userPIN string) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		p := pkcs11.New(SoftHSMModule)
		if p == nil {
			return nil, fmt.Errorf("softtoken: cannot load %s", SoftHSMModule)
		}
		s.ctx = p
	}
	if err := initialize(s.ctx); err != nil {
		return nil, fmt.Errorf("softtoken: C_Initialize: %w", err)
	}
	slots, err := s.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("softtoken: C_GetSlotList: %w", err)
	}
	for _, slot := range slots {
		ti, err := s.ctx.GetTokenInfo(slot)
		if err != nil {
			return nil, fmt.Errorf("softtoken: C_GetTokenInfo: %w", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			continue
		}
		serial, err := initToken(s.ctx, slot, label, soPIN, userPIN)
		if err != nil {
			return nil, err
		}
		return &Token{Module: SoftHSMModule, Label: label, Serial: serial, SOPIN: soPIN, UserPIN: userPIN}, nil
	}
	return nil, errors.New("softtoken: SoftHSM has no free slot")
}
