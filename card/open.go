package card

// An open connection to one YubiKey's PIV applet.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"
)

// ErrCardRemoved is wrapped by the error of a command whose card left its reader (or was reset by
// another program) while custos was using it.
var ErrCardRemoved = errors.New("card removed")

// Card is one YubiKey, opened through PC/SC. piv-go keeps one exclusive transaction for the whole
// connection, so the PIN, once verified, stays verified until Close; custos opens each card once per
// command. A Card is not safe for concurrent use.
type Card struct {
	yk       *piv.YubiKey
	reader   string
	serial   uint32
	firmware Firmware

	pinVerified bool   // a PIN was verified on this connection (PIN policy once)
	heldPIN     []byte // the PIN entered for a key with PIN policy always, until Close
	closed      bool
}

// Open connects to the card in a reader (exclusively) and reads its serial and firmware: three APDUs
// (SELECT, GET VERSION, GET SERIAL). The caller has checked the reader with [Env.CheckReader].
func Open(reader string) (*Card, error) {
	yk, err := piv.Open(reader)
	if err != nil {
		return nil, fmt.Errorf("card: opening the YubiKey in reader %q: %w", reader, err)
	}
	serial, err := yk.Serial()
	if err != nil {
		yk.Close()
		return nil, fmt.Errorf("card: reading the serial of the card in reader %q: %w", reader, err)
	}
	v := yk.Version()
	return &Card{yk: yk, reader: reader, serial: serial, firmware: Firmware{byte(v.Major), byte(v.Minor), byte(v.Patch)}}, nil
}

// Serial returns the card's serial number.
func (c *Card) Serial() uint32 { return c.serial }

// Firmware returns the firmware version the PIV applet reports.
func (c *Card) Firmware() Firmware { return c.firmware }

// Reader returns the PC/SC reader the card is in.
func (c *Card) Reader() string { return c.reader }

// hasMetadata reports whether the firmware answers GET METADATA (5.3 and later).
func (c *Card) hasMetadata() bool {
	f := c.firmware
	return f[0] > 5 || f[0] == 5 && f[1] >= 3
}

// Close releases the card, leaving it as it is (no reset). Closing a closed card does nothing.
func (c *Card) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	clear(c.heldPIN)
	if err := c.yk.Close(); err != nil {
		return fmt.Errorf("card: closing YubiKey %d: %w", c.serial, err)
	}
	return nil
}

// removalSigns are piv-go's messages for the PC/SC errors of a card that left its reader or was reset
// while custos held it: removed, reset, or its transaction ended with it.
var removalSigns = []string{"has been removed", "has been reset", "non-existent transaction"}

// cardErr wraps an error of a command sent to the card, recognising a card that was removed or reset
// mid-command.
func (c *Card) cardErr(what string, err error) error {
	msg := err.Error()
	if slices.ContainsFunc(removalSigns, func(s string) bool { return strings.Contains(msg, s) }) {
		return fmt.Errorf("card: YubiKey %d left reader %q while custos was %s (%w); insert it and run the command again", c.serial, c.reader, what, ErrCardRemoved)
	}
	return fmt.Errorf("card: YubiKey %d: %s: %w", c.serial, what, err)
}

// pivSlot returns piv-go's slot for a key reference.
func pivSlot(s Slot) (piv.Slot, error) {
	if s == SlotCardAuthentication {
		return piv.SlotCardAuthentication, nil
	}
	if slot, ok := piv.RetiredKeyManagementSlot(uint32(s)); ok {
		return slot, nil
	}
	return piv.Slot{}, fmt.Errorf("card: slot %v is neither 9e nor a retired slot (82 to 95)", s)
}
