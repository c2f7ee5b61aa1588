package card

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePINFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "pins")
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestRehearsalPINsOnlyInRehearsal(t *testing.T) {
	file := writePINFile(t, "* 271828\n", 0o600)
	for _, tc := range []struct{ env, file, want string }{
		{"271828", "", "CUSTOS_PIN is set"},
		{"", file, "--pin-file " + file},
		{"271828", file, "CUSTOS_PIN is set"},
	} {
		_, err := LoadRehearsalPINs(false, tc.env, tc.file)
		if !errors.Is(err, ErrRehearsalOnly) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadRehearsalPINs(false, %q, %q) = %v", tc.env, tc.file, err)
		}
	}
	p, err := LoadRehearsalPINs(false, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := p.PIN(1); ok {
		t.Error("a PIN without any source")
	}
	if !PluginRehearsal(func(k string) string { return map[string]string{"CUSTOS_SIM_DIR": "/tmp/sim"}[k] }) ||
		PluginRehearsal(func(string) string { return "" }) {
		t.Error("PluginRehearsal does not follow CUSTOS_SIM_DIR")
	}
}

func TestRehearsalPINsLookup(t *testing.T) {
	file := writePINFile(t, "# rehearsal PINs\n\n12345678 11111111\n  777\t222222  \n* 333333\n", 0o600)
	p, err := LoadRehearsalPINs(true, "444444", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		serial       uint32
		pin, sources string
	}{
		{12345678, "11111111", "PIN file " + file},
		{777, "222222", "PIN file " + file},
		{5, "333333", "PIN file " + file + " (*)"},
	} {
		pin, source, ok := p.PIN(tc.serial)
		if !ok || string(pin) != tc.pin || source != tc.sources {
			t.Errorf("PIN(%d) = %q from %q (%v), want %q from %q", tc.serial, pin, source, ok, tc.pin, tc.sources)
		}
		clear(pin)
	}
	if pin, _, _ := p.PIN(777); string(pin) != "222222" {
		t.Error("clearing a returned PIN changed the stored one")
	}
	p.Wipe()
	if _, _, ok := p.PIN(777); ok {
		t.Error("a PIN after Wipe")
	}

	p, err = LoadRehearsalPINs(true, "444444", "")
	if err != nil {
		t.Fatal(err)
	}
	if pin, source, ok := p.PIN(9); !ok || string(pin) != "444444" || source != "CUSTOS_PIN" {
		t.Errorf("PIN(9) = %q from %q", pin, source)
	}
}

func TestRehearsalPINsRefused(t *testing.T) {
	const secret = "98765432"
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group readable", "* " + secret + "\n", 0o640, "has mode 0640, want 0600"},
		{"world readable", "* " + secret + "\n", 0o604, "has mode 0604, want 0600"},
		{"one field", secret + "\n", 0o600, "line 1: want \"SERIAL PIN\""},
		{"three fields", "1 " + secret + " x\n", 0o600, "line 1: want \"SERIAL PIN\""},
		{"serial not a number", "#\nx" + secret + " " + secret + "\n", 0o600, "line 2: the first field is not a decimal card serial"},
		{"serial too large", "4294967296 " + secret + "\n", 0o600, "line 1: the first field is not a decimal card serial"},
		{"serial twice", "1 " + secret + "\n1 " + secret + "\n", 0o600, "line 2: serial 1 is listed twice"},
		{"star twice", "* " + secret + "\n* " + secret + "\n", 0o600, "line 2: a second \"*\" line"},
		{"PIN too short", "1 12345\n", 0o600, "line 1: a PIN is 6 to 8 characters, got 5"},
		{"PIN too long", "1 " + secret + "9\n", 0o600, "line 1: a PIN is 6 to 8 characters, got 9"},
		{"OTP", "1 cccccccfhcbelrhifnjrrddcgrburluurftrgfdrdifj\n", 0o600, "line 1: that is a YubiKey OTP"},
	} {
		_, err := LoadRehearsalPINs(true, "", writePINFile(t, tc.content, tc.mode))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the PIN: %v", tc.name, err)
		}
	}
	if _, err := LoadRehearsalPINs(true, "", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as PIN file: %v", err)
	}
	if _, err := LoadRehearsalPINs(true, "", filepath.Join(t.TempDir(), "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent PIN file: %v", err)
	}
	if _, err := LoadRehearsalPINs(true, "12", ""); err == nil || !strings.Contains(err.Error(), "CUSTOS_PIN: a PIN is 6 to 8 characters, got 2") {
		t.Errorf("short CUSTOS_PIN: %v", err)
	}
}
