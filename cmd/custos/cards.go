package main

// The card options every command that uses cards shares, and how PINs are entered.

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/ceremony"
)

// cardFlags are --serial, --one-reader, --card-timeout, --pin-file and --allow-last-pin-try.
type cardFlags struct {
	serials      []uint
	oneReader    bool
	cardTimeout  time.Duration
	pinFile      string
	allowLastTry bool
}

func (f *cardFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.UintSliceVar(&f.serials, "serial", nil, "use the YubiKey with this serial (repeatable); default: every present card the record names")
	fs.BoolVar(&f.oneReader, "one-reader", false, "ask for the cards one after another in the only reader")
	fs.DurationVar(&f.cardTimeout, "card-timeout", 2*time.Minute, "with --one-reader: how long to wait for each card")
	fs.StringVar(&f.pinFile, "pin-file", "", "rehearsal only: a file (mode 0600) of \"SERIAL PIN\" lines, \"*\" for any card")
	fs.BoolVar(&f.allowLastTry, "allow-last-pin-try", false, "spend a card's last PIN try without asking")
}

// selector returns the card selector of a command.
func (a *app) selector(f *cardFlags, rehearsal bool) *card.Selector {
	s := &card.Selector{Env: card.Env{Rehearsal: rehearsal, Getenv: os.Getenv}, OneReader: f.oneReader, CardTimeout: f.cardTimeout,
		Message: func(m string) { fmt.Fprintf(a.stderr, "custos: %s\n", m) }}
	for _, n := range f.serials {
		s.Serials = append(s.Serials, uint32(n))
	}
	return s
}

// pinEntry returns the PIN options of a command; call wipe when done.
func (a *app) pinEntry(f *cardFlags, rehearsal bool) (card.PINOptions, func(), error) {
	pins, err := card.LoadRehearsalPINs(rehearsal, os.Getenv("CUSTOS_PIN"), f.pinFile)
	if err != nil {
		return card.PINOptions{}, nil, err
	}
	return card.PINOptions{UI: &ttyPINs{a: a, pins: pins}, AllowLastTry: f.allowLastTry}, pins.Wipe, nil
}

// ttyPINs asks for PINs on the terminal, without echo; in a rehearsal CUSTOS_PIN and --pin-file come
// first.
type ttyPINs struct {
	a    *app
	pins *card.RehearsalPINs
}

func (u *ttyPINs) PIN(serial uint32, prompt string) ([]byte, error) {
	if pin, source, ok := u.pins.PIN(serial); ok {
		fmt.Fprintf(u.a.stderr, "custos: rehearsal: %s: PIN taken from %s\n", prompt, source)
		return pin, nil
	}
	return u.a.readSecret(prompt)
}

func (u *ttyPINs) ConfirmLastTry(serial uint32, prompt string) (bool, error) {
	return u.a.confirmTyped(prompt, "last try")
}

func (u *ttyPINs) Message(msg string) { fmt.Fprintf(u.a.stderr, "custos: %s\n", msg) }

// readSecret reads a line from the terminal without echo, for the caller to wipe.
func (a *app) readSecret(prompt string) ([]byte, error) {
	tty, err := a.openTTY()
	if err != nil {
		return nil, fmt.Errorf("%s: no terminal to type it on", prompt)
	}
	defer tty.Close()
	fmt.Fprintf(a.stderr, "%s (not shown): ", prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading from the terminal: %w", err)
	}
	v := bytes.Clone(bytes.TrimSpace(b))
	clear(b)
	return v, nil
}

// confirmTyped asks the operator to type answer on the terminal; anything else, or no terminal, is no.
func (a *app) confirmTyped(prompt, answer string) (bool, error) {
	tty, err := a.openTTY()
	if err != nil {
		return false, nil
	}
	defer tty.Close()
	fmt.Fprintf(a.stderr, "%s: ", prompt)
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := tty.Read(buf)
		if n == 0 || err != nil || buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	return strings.TrimSpace(string(line)) == answer, nil
}

// cards are how a command reaches the custodians' cards: the selector and the PIN entry. Call wipe when
// the command is done.
func (a *app) cards(f *cardFlags, rehearsal bool) (ceremony.CardOptions, func(), error) {
	pins, wipe, err := a.pinEntry(f, rehearsal)
	if err != nil {
		return ceremony.CardOptions{}, nil, err
	}
	return ceremony.CardOptions{Selector: a.selector(f, rehearsal), PIN: pins}, wipe, nil
}
