package hsm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
)

func moduleSHA256(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Refused with one clear line: a module whose SHA-256 differs from the pin (before loading it), a
// missing pin in production, a missing or ambiguous token, a wrong PIN (tried once), protected auth
// where the token has none, a software token outside rehearsal, and one whose label was changed to
// look like hardware. The PIN buffer is wiped on every path.
func TestOpenRefusals(t *testing.T) {
	ctx := context.Background()
	tok := testenv.SoftHSMToken(t, "open")
	testenv.SoftHSMToken(t, "twin")
	testenv.SoftHSMToken(t, "twin")
	luna := testenv.SoftHSMToken(t, "Thales Luna K7 CA")
	sum := moduleSHA256(t, softtoken.SoftHSMModule)

	// Not a library at all: refused on its hash, so it was never loaded.
	notLib := filepath.Join(t.TempDir(), "libvendor.so")
	os.WriteFile(notLib, []byte("not a PKCS#11 module"), 0o600)
	cases := []struct {
		name string
		cfg  hsm.Config
		want error
		text string
	}{
		{"module hash", hsm.Config{Module: notLib, ExpectModuleSHA256: sum, TokenSerial: tok.Serial}, hsm.ErrModuleHash, "has SHA-256"},
		{"no module pin in production", hsm.Config{Module: tok.Module, TokenSerial: tok.Serial}, hsm.ErrModulePin, "--expect-module-sha256"},
		{"missing token", hsm.Config{Module: tok.Module, TokenLabel: "nope", Rehearsal: true}, hsm.ErrTokenNotFound, `"open" serial ` + tok.Serial},
		{"ambiguous token", hsm.Config{Module: tok.Module, TokenLabel: "twin", Rehearsal: true}, hsm.ErrAmbiguousToken, "2 tokens"},
		{"wrong PIN", hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, Rehearsal: true, PIN: []byte("99999999")}, hsm.ErrWrongPIN, "tried once"},
		{"software token in production", hsm.Config{Module: tok.Module, ExpectModuleSHA256: sum, TokenSerial: tok.Serial}, hsm.ErrSoftwareToken, "softhsm2"},
		{"relabelled software token in production", hsm.Config{Module: tok.Module, ExpectModuleSHA256: sum, TokenLabel: "Thales Luna K7 CA"}, hsm.ErrSoftwareToken, luna.Serial},
	}
	for _, c := range cases {
		pin := c.cfg.PIN
		if pin == nil {
			pin = []byte(tok.UserPIN)
			c.cfg.PIN = pin
		}
		s, err := hsm.Open(ctx, c.cfg)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", c.name, err)
		}
		if !bytes.Equal(pin, make([]byte, len(pin))) {
			t.Errorf("%s: PIN not wiped", c.name)
		}
	}
	if _, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, Rehearsal: true, ProtectedAuth: true}); err == nil || !strings.Contains(err.Error(), "protected authentication path") {
		t.Errorf("protected auth on SoftHSM: %v", err)
	}
	// After the one wrong try the right PIN still works, and the token is pinned by module hash too.
	s, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, ExpectModuleSHA256: sum, TokenSerial: tok.Serial, TokenLabel: "open", PIN: []byte(tok.UserPIN), Rehearsal: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Token.ModuleSHA256 != sum || s.Token.Software != "softhsm2" || s.Token.Serial != tok.Serial {
		t.Errorf("token record %+v", s.Token)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
