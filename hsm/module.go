package hsm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/miekg/pkcs11"
)

// A module is a loaded PKCS#11 library. PKCS#11 allows one C_Initialize per process, so modules are
// shared by file identity and finalised when the last user closes, unless someone else in the process
// had initialised it first.
type module struct {
	path   string
	sha256 string
	ctx    *pkcs11.Ctx
	key    [2]uint64
	refs   int
	owned  bool
}

var (
	modulesMu sync.Mutex
	modules   = map[[2]uint64]*module{}
)

// CheckModule hashes the module file and compares it with the pinned SHA-256 (lowercase hex), without
// loading it: flows call it with the other pins, before any PIN is asked for. Open checks again.
func CheckModule(path, expect string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("hsm: module: %w", err)
	}
	defer f.Close()
	sum, err := fileSHA256(f)
	if err != nil {
		return fmt.Errorf("hsm: module %s: %w", path, err)
	}
	if sum != expect {
		return fmt.Errorf("hsm: module %s has SHA-256 %s, pinned %s: %w", path, sum, expect, ErrModuleHash)
	}
	return nil
}

func fileSHA256(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadModule hashes the module file and, when expect is set, refuses a different hash before anything
// of the file is loaded. The library is then loaded from the same open file (through /proc/self/fd), so
// what runs is what was hashed.
func loadModule(path, expect string) (*module, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: module: %w", err)
	}
	defer f.Close()
	sum, err := fileSHA256(f)
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}
	if expect != "" && sum != expect {
		return nil, fmt.Errorf("hsm: module %s has SHA-256 %s, pinned %s: %w", path, sum, expect, ErrModuleHash)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("hsm: module %s: no file identity", path)
	}
	key := [2]uint64{sys.Dev, sys.Ino}

	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[key]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if ctx == nil {
		return nil, fmt.Errorf("hsm: module %s: cannot load it as a PKCS#11 library", path)
	}
	m := &module{path: path, sha256: sum, ctx: ctx, key: key, refs: 1, owned: true}
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("hsm: module %s: C_Initialize: %w", path, err)
		}
		m.owned = false
	}
	modules[key] = m
	return m, nil
}

func (m *module) release() {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules, m.key)
	if m.owned {
		m.ctx.Finalize()
	}
	m.ctx.Destroy()
}
