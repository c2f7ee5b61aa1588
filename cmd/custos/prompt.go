package main

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/term"

	"github.com/custos-pki/custos/ceremony"
)

// pinned returns the value of a pin flag. When the flag is empty in production and a terminal is there,
// the operator types the value from the minutes; it is not echoed, and custos never displays the value
// it expects, so the operator cannot copy it from the screen.
func (a *app) pinned(flagValue, flagName, what string, rehearsal bool) (string, error) {
	if flagValue != "" || rehearsal {
		return flagValue, nil
	}
	tty, err := a.openTTY()
	if err != nil {
		return "", fmt.Errorf("%w: --%s is required: %s from the minutes (or run on a terminal to type it)", ceremony.ErrUsage, flagName, what)
	}
	defer tty.Close()
	fmt.Fprintf(a.stderr, "Type %s from the minutes (not shown): ", what)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("reading %s from the terminal: %w", what, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("nothing was typed; " + what + " is required")
	}
	return v, nil
}
