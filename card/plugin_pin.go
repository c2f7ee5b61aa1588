package card

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ErrRehearsalOnly is wrapped by the refusal of a non-interactive PIN source (CUSTOS_PIN, a PIN file)
// outside a rehearsal.
var ErrRehearsalOnly = errors.New("CUSTOS_PIN and --pin-file are accepted only in rehearsal")

// PluginRehearsal reports whether plugin mode runs as a rehearsal. age starts the plugin without
// custos's flags, so a set CUSTOS_SIM_DIR (exported by custos-sim up) stands for --rehearsal
// (DESIGN.md §3).
func PluginRehearsal(getenv func(string) string) bool {
	return getenv("CUSTOS_SIM_DIR") != ""
}

// RehearsalPINs are card PINs given without a terminal: the CUSTOS_PIN variable and a PIN file of
// "SERIAL PIN" lines ("*" for any serial; blank lines and lines starting with # are skipped). custos
// accepts them only in rehearsal. A serial's own line wins over "*", which wins over CUSTOS_PIN.
type RehearsalPINs struct {
	file     string
	bySerial map[uint32][]byte
	any      []byte
	env      []byte
}

// LoadRehearsalPINs collects the non-interactive PIN sources: envPIN is CUSTOS_PIN's value and
// pinFile the --pin-file flag, either possibly empty. Outside a rehearsal a non-empty one is refused
// with an error wrapping ErrRehearsalOnly. The PIN file must be a regular file no one but its owner can
// read or write (mode 0600 or stricter). The result may hold no PIN at all; call Wipe when done.
func LoadRehearsalPINs(rehearsal bool, envPIN, pinFile string) (*RehearsalPINs, error) {
	p, err := loadRehearsalPINs(rehearsal, envPIN, pinFile)
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	return p, nil
}

// loadRehearsalPINs is LoadRehearsalPINs with errors that do not name the package, for plugin mode.
func loadRehearsalPINs(rehearsal bool, envPIN, pinFile string) (*RehearsalPINs, error) {
	if !rehearsal {
		switch {
		case envPIN != "":
			return nil, fmt.Errorf("CUSTOS_PIN is set: %w; unset it and type the PIN", ErrRehearsalOnly)
		case pinFile != "":
			return nil, fmt.Errorf("--pin-file %s: %w; type the PIN instead", pinFile, ErrRehearsalOnly)
		}
	}
	p := &RehearsalPINs{file: pinFile, bySerial: map[uint32][]byte{}}
	if envPIN != "" {
		p.env = []byte(envPIN)
		if err := checkPIN(p.env); err != nil {
			p.Wipe()
			return nil, fmt.Errorf("CUSTOS_PIN: %w", err)
		}
	}
	if pinFile != "" {
		if err := p.readFile(pinFile); err != nil {
			p.Wipe()
			return nil, err
		}
	}
	return p, nil
}

func (p *RehearsalPINs) readFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("PIN file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("PIN file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("PIN file %s is not a regular file", name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("PIN file %s has mode %04o, want 0600 (chmod 600 %s)", name, perm, name)
	}
	data, err := io.ReadAll(f)
	defer clear(data)
	if err != nil {
		return fmt.Errorf("PIN file %s: %w", name, err)
	}
	for n, line := range bytes.Split(data, []byte("\n")) {
		fields := bytes.Fields(line)
		if len(fields) == 0 || fields[0][0] == '#' {
			continue
		}
		if len(fields) != 2 {
			return fmt.Errorf("PIN file %s line %d: want \"SERIAL PIN\" (or \"* PIN\"), got %d fields", name, n+1, len(fields))
		}
		if err := checkPIN(fields[1]); err != nil {
			return fmt.Errorf("PIN file %s line %d: %w", name, n+1, err)
		}
		if string(fields[0]) == "*" {
			if p.any != nil {
				return fmt.Errorf("PIN file %s line %d: a second \"*\" line", name, n+1)
			}
			p.any = bytes.Clone(fields[1])
			continue
		}
		serial, err := strconv.ParseUint(string(fields[0]), 10, 32)
		if err != nil {
			return fmt.Errorf("PIN file %s line %d: the first field is not a decimal card serial or \"*\"", name, n+1)
		}
		if _, dup := p.bySerial[uint32(serial)]; dup {
			return fmt.Errorf("PIN file %s line %d: serial %d is listed twice", name, n+1, serial)
		}
		p.bySerial[uint32(serial)] = bytes.Clone(fields[1])
	}
	return nil
}

// PIN returns a copy of the PIN for the card with this serial, for the caller to wipe, and where it
// came from; ok is false when no source names the card.
func (p *RehearsalPINs) PIN(serial uint32) (pin []byte, source string, ok bool) {
	if pin, ok := p.bySerial[serial]; ok {
		return bytes.Clone(pin), "PIN file " + p.file, true
	}
	if p.any != nil {
		return bytes.Clone(p.any), "PIN file " + p.file + " (*)", true
	}
	if p.env != nil {
		return bytes.Clone(p.env), "CUSTOS_PIN", true
	}
	return nil, "", false
}

// Wipe clears every PIN held.
func (p *RehearsalPINs) Wipe() {
	for serial, pin := range p.bySerial {
		clear(pin)
		delete(p.bySerial, serial)
	}
	clear(p.any)
	clear(p.env)
	p.any, p.env = nil, nil
}

// checkPIN refuses what cannot be a PIV PIN (6 to 8 bytes) before it reaches a card and costs a try.
// Like age-plugin-yubikey it recognises a YubiKey OTP typed by an accidental touch.
func checkPIN(pin []byte) error {
	if len(pin) == 44 && len(bytes.Trim(pin, "cbdefghijklnrtuv")) == 0 { // 44 modhex characters
		return errors.New("that is a YubiKey OTP, not a PIN: was the YubiKey touched by accident?")
	}
	if len(pin) < 6 || len(pin) > 8 {
		return fmt.Errorf("a PIN is 6 to 8 characters, got %d", len(pin))
	}
	return nil
}
