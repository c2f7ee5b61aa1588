package card

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestVirtualReaderDetection: every reader of the sim is recognised as vpcd's, real reader names are
// not, and the environment checks refuse what each mode does not accept.
func TestVirtualReaderDetection(t *testing.T) {
	e := testenv.Sim(t)
	readers, err := rehearsalEnv(t, e).Readers()
	if err != nil {
		t.Fatal(err)
	}
	if len(readers) != len(e.Readers()) {
		t.Fatalf("rehearsal lists %q, the sim serves %q", readers, e.Readers())
	}
	prod := Env{Getenv: func(string) string { return "" }}
	for _, r := range append(readers, "Virtual PCD 00 00", "Virtual PCD 00 01") {
		if !VirtualReader(r) {
			t.Errorf("VirtualReader(%q) = false", r)
		}
		if err := prod.CheckReader(r); !errors.Is(err, ErrVirtualReader) {
			t.Errorf("production accepted reader %q: %v", r, err)
		}
	}
	for _, r := range []string{"Yubico YubiKey OTP+FIDO+CCID 00 00", "Yubico YubiKey CCID 01 00", "Virtual"} {
		if VirtualReader(r) {
			t.Errorf("VirtualReader(%q) = true", r)
		}
		if err := rehearsalEnv(t, e).CheckReader(r); !errors.Is(err, ErrVirtualReader) {
			t.Errorf("a rehearsal accepted the real reader %q: %v", r, err)
		}
	}
	sock := os.Getenv("PCSCLITE_CSOCK_NAME")
	for _, c := range []struct {
		env  Env
		want string
	}{
		{Env{Getenv: env(map[string]string{"PCSCLITE_CSOCK_NAME": sock})}, "PCSCLITE_CSOCK_NAME is set"},
		{Env{Getenv: env(map[string]string{"CUSTOS_SIM_DIR": simVars(e)["CUSTOS_SIM_DIR"]})}, "CUSTOS_SIM_DIR is set"},
		{Env{Rehearsal: true, Getenv: env(map[string]string{"PCSCLITE_CSOCK_NAME": sock})}, "CUSTOS_SIM_DIR is not set"},
		{Env{Rehearsal: true, Getenv: env(map[string]string{"CUSTOS_SIM_DIR": simVars(e)["CUSTOS_SIM_DIR"]})}, "not the sim's socket"},
	} {
		if _, err := c.env.Readers(); !errors.Is(err, ErrVirtualReader) || !contains(err, c.want) {
			t.Errorf("Readers() = %v, want a refusal saying %q", err, c.want)
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
