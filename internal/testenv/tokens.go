package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/custos-pki/custos/internal/softtoken"
)

// Test PINs of the software tokens made here (test fixtures, not secrets).
const (
	TokenSOPIN   = "87650000"
	TokenUserPIN = "12340000"
)

var (
	softhsmOnce sync.Once
	softhsm     *softtoken.SoftHSM
	softhsmErr  error
)

// SoftHSMToken returns a fresh SoftHSM2 token with the given label and the PINs above. All tokens of a
// test process share one SoftHSM configuration in a temporary directory (SoftHSM reads it once per
// process); RemoveTokenDirs removes it at the end of TestMain, and a later test process removes it if
// that did not happen.
func SoftHSMToken(t testing.TB, label string) *softtoken.Token {
	t.Helper()
	if _, err := os.Stat(softtoken.SoftHSMModule); err != nil {
		Missing(t, "%s not found; run 'make deps' (as root) to install softhsm2", softtoken.SoftHSMModule)
	}
	tok, err := NewSoftHSMToken(label)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// NewSoftHSMToken is SoftHSMToken for callers without a testing.TB (script commands).
func NewSoftHSMToken(label string) (*softtoken.Token, error) {
	softhsmOnce.Do(func() {
		removeStaleTokenDirs()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("custos-softhsm-%d", os.Getpid()))
		if err := os.Mkdir(dir, 0o700); err != nil {
			softhsmErr = err
			return
		}
		softhsm, softhsmErr = softtoken.OpenSoftHSM(dir)
	})
	if softhsmErr != nil {
		return nil, softhsmErr
	}
	return softhsm.NewToken(label, TokenSOPIN, TokenUserPIN)
}

// removeStaleTokenDirs removes the SoftHSM directories of test processes that have ended (a TestMain
// that does not call RemoveTokenDirs leaves its directory behind).
func removeStaleTokenDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "custos-softhsm-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "custos-softhsm-"))
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

// RemoveTokenDirs removes the SoftHSM directory made by SoftHSMToken; TestMain calls it after m.Run.
func RemoveTokenDirs() {
	if softhsm != nil {
		os.RemoveAll(softhsm.Dir)
	}
}

var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
)

// Key returns a software key pair of the named algorithm ("p256", "p384", "rsa2048", "rsa3072"), made
// once per test process. Tests that name RSA-4096 make their own.
func Key(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[alg]; ok {
		return k
	}
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		err = fmt.Errorf("testenv: no pre-generated key %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	keys[alg] = k
	return k
}
