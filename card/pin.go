package card

// PIN safety: every prompt names the flow, the record and what the card will do; tries left are
// shown after a wrong PIN; the last try is never spent without a typed confirmation or
// --allow-last-pin-try; a blocked PIN is explained with the way to unblock it.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"
)

// Errors of PIN entry that callers branch on.
var (
	// ErrWrongPIN is wrapped by the refusal of a wrong PIN; the message says how many tries are left.
	ErrWrongPIN = errors.New("wrong PIN")
	// ErrPINBlocked is wrapped when the card's PIN has no tries left.
	ErrPINBlocked = errors.New("PIN blocked")
	// ErrLastPINTry is wrapped when the last PIN try was not confirmed.
	ErrLastPINTry = errors.New("one PIN try left")
)

// PINUI is how custos reaches the custodian at the card.
type PINUI interface {
	// PIN returns the PIN for the card with this serial, for the caller to wipe. prompt names the
	// flow, the record and what the card is about to do.
	PIN(serial uint32, prompt string) ([]byte, error)
	// ConfirmLastTry asks for a typed confirmation before the card's last PIN try is spent.
	ConfirmLastTry(serial uint32, prompt string) (bool, error)
	// Message shows a line to the custodian, such as a request to touch the card.
	Message(msg string)
}

// PINOptions are how a command enters PINs.
type PINOptions struct {
	UI PINUI
	// AllowLastTry spends a card's last PIN try without asking (--allow-last-pin-try).
	AllowLastTry bool
}

// DefaultPIN and DefaultPUK are the values of a new YubiKey; enrollment replaces them.
const (
	DefaultPIN = "123456"
	DefaultPUK = "12345678"
)

// pinTries returns the PIN tries left, asked with an empty VERIFY (which spends none), or -1 when the
// card says the PIN is verified (its last entry was right, so no try is at risk).
func (c *Card) pinTries() (int, error) {
	tries, err := c.yk.Retries()
	if err == nil {
		return tries, nil
	}
	var ae piv.AuthErr
	if errors.As(err, &ae) {
		return ae.Retries, nil
	}
	if c.pinVerified || strings.HasPrefix(err.Error(), "expected error code") {
		// piv-go reports an empty VERIFY that succeeds (the PIN is verified) as an error without status.
		return -1, nil
	}
	return 0, c.cardErr("reading the PIN tries left", err)
}

// VerifyPIN asks for the card's PIN with prompt and verifies it: one VERIFY carrying a PIN. It refuses
// a blocked PIN and, unless confirmed or allowed, the last try, and reports the tries left after a
// wrong PIN.
func (c *Card) VerifyPIN(o PINOptions, prompt string) error {
	pin, err := c.askPIN(o, prompt)
	if err != nil {
		return err
	}
	defer clear(pin)
	return c.verifyPIN(pin)
}

// askPIN checks the tries left and asks for the PIN, for the caller to wipe.
func (c *Card) askPIN(o PINOptions, prompt string) ([]byte, error) {
	tries, err := c.pinTries()
	if err != nil {
		return nil, err
	}
	switch {
	case tries == 0:
		return nil, c.blocked()
	case tries == 1 && !o.AllowLastTry:
		ok, err := o.UI.ConfirmLastTry(c.serial, fmt.Sprintf("YubiKey %d has ONE PIN try left: a wrong PIN blocks it. Type \"last try\" to enter the PIN anyway", c.serial))
		if err != nil {
			return nil, fmt.Errorf("card: YubiKey %d: %w: %v", c.serial, ErrLastPINTry, err)
		}
		if !ok {
			return nil, fmt.Errorf("card: YubiKey %d has %w; custos does not spend it without a typed confirmation or --allow-last-pin-try", c.serial, ErrLastPINTry)
		}
	}
	pin, err := o.UI.PIN(c.serial, prompt)
	if err != nil {
		return nil, err
	}
	if err := checkPIN(pin); err != nil {
		clear(pin)
		return nil, fmt.Errorf("card: PIN for YubiKey %d: %w", c.serial, err)
	}
	return pin, nil
}

// verifyPIN sends the PIN.
func (c *Card) verifyPIN(pin []byte) error {
	err := c.yk.VerifyPIN(string(pin))
	var ae piv.AuthErr
	switch {
	case err == nil:
		c.pinVerified = true
		return nil
	case errors.As(err, &ae) && ae.Retries == 0:
		return c.blocked()
	case errors.As(err, &ae):
		return fmt.Errorf("card: YubiKey %d: %w, %d tries left", c.serial, ErrWrongPIN, ae.Retries)
	}
	return c.cardErr("verifying the PIN", err)
}

func (c *Card) blocked() error {
	return fmt.Errorf("card: YubiKey %d: %w (no tries left); unblock it with the PUK (ykman --device %d piv access unblock-pin), then run the command again",
		c.serial, ErrPINBlocked, c.serial)
}
