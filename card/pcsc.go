package card

// Which PC/SC readers a command may use: production refuses the virtual readers of vsmartcard's vpcd
// and a redirected pcsc-lite socket; a rehearsal uses only the readers of the sim's own pcscd.

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"
)

// ErrVirtualReader is wrapped by the refusal of a reader or environment that production does not
// accept (a vpcd reader, PCSCLITE_CSOCK_NAME or CUSTOS_SIM_DIR set), and of a non-sim reader in a
// rehearsal.
var ErrVirtualReader = errors.New("reader not allowed")

// vpcdReaderPrefix starts the name pcscd gives every reader of vsmartcard's vpcd driver: the Debian
// package's "Virtual PCD 00 00" and the sim's "Virtual PCD E 00 S" alike (pcscd names a reader by its
// FRIENDLYNAME followed by two numbers).
const vpcdReaderPrefix = "Virtual PCD"

// VirtualReader reports whether a PC/SC reader name is one of vpcd's virtual readers. A reader's name
// comes from its driver's configuration, so this recognises the default vpcd configuration and the
// sim's, not a renamed one; what actually defeats a fake card is the liveness signature under the
// attested key ([Card.Liveness]).
func VirtualReader(name string) bool { return strings.HasPrefix(name, vpcdReaderPrefix) }

// Env is what decides which readers a command may use.
type Env struct {
	Rehearsal bool
	// Getenv reads the environment (os.Getenv): PCSCLITE_CSOCK_NAME and CUSTOS_SIM_DIR.
	Getenv func(string) string
}

// simSocket is where the sim's pcscd socket lies in its directory (custos-sim up exports it as
// PCSCLITE_CSOCK_NAME).
func simSocket(dir string) string { return filepath.Join(dir, "pcscd", "pcscd.comm") }

// Check refuses an environment that the command's mode does not accept: in production a set
// PCSCLITE_CSOCK_NAME or CUSTOS_SIM_DIR (which point PC/SC at a sim); in a rehearsal anything but the
// sim's own pcscd (CUSTOS_SIM_DIR set and PCSCLITE_CSOCK_NAME its socket).
func (e Env) Check() error {
	sock, dir := e.Getenv("PCSCLITE_CSOCK_NAME"), e.Getenv("CUSTOS_SIM_DIR")
	if !e.Rehearsal {
		switch {
		case sock != "":
			return fmt.Errorf("card: %w: PCSCLITE_CSOCK_NAME is set (%s), which points PC/SC at another pcscd such as custos-sim's; production uses the host's pcscd: unset it", ErrVirtualReader, sock)
		case dir != "":
			return fmt.Errorf("card: %w: CUSTOS_SIM_DIR is set (%s): virtual cards are for rehearsals; unset it, or add --rehearsal", ErrVirtualReader, dir)
		}
		return nil
	}
	if dir == "" {
		return fmt.Errorf("card: %w: a rehearsal uses virtual cards only, and CUSTOS_SIM_DIR is not set: run eval \"$(custos-sim up ...)\" first", ErrVirtualReader)
	}
	if want := simSocket(dir); sock != want {
		return fmt.Errorf("card: %w: PCSCLITE_CSOCK_NAME is %q, not the sim's socket %s: run eval \"$(custos-sim up --dir %s ...)\"", ErrVirtualReader, sock, want, dir)
	}
	return nil
}

// CheckReader refuses a reader the mode does not accept: a vpcd reader in production, anything else
// in a rehearsal.
func (e Env) CheckReader(name string) error {
	switch v := VirtualReader(name); {
	case v && !e.Rehearsal:
		return fmt.Errorf("card: %w: %q is a vpcd virtual reader, which any process can pose as a card behind; production uses real YubiKeys only", ErrVirtualReader, name)
	case !v && e.Rehearsal:
		return fmt.Errorf("card: %w: %q is not a virtual reader of custos-sim; a rehearsal uses virtual cards only", ErrVirtualReader, name)
	}
	return nil
}

// Readers lists the PC/SC readers, after checking the environment. A reader the mode does not accept
// is an error naming it: custos never silently skips a card it was shown.
func (e Env) Readers() ([]string, error) {
	if err := e.Check(); err != nil {
		return nil, err
	}
	names, err := piv.Cards()
	if err != nil {
		return nil, fmt.Errorf("card: listing PC/SC readers (is pcscd running?): %w", err)
	}
	for _, n := range names {
		if err := e.CheckReader(n); err != nil {
			return nil, err
		}
	}
	return names, nil
}
