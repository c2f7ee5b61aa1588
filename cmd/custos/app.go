package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/internal/hygiene"
)

// app is one invocation: its streams and what start-up found about the process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	openTTY        func() (*os.File, error) // the terminal for typed entries
	warnings       []string                 // process hygiene that could not be applied; flows record them
}

// usageError marks errors of the command line itself (exit status 2).
type usageError struct{ error }

func (a *app) execute(args []string) int {
	a.warnings = hygiene.Apply()
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := root.Execute()
	if err == nil {
		return 0
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	msg = strings.TrimPrefix(msg, "usage: ")
	fmt.Fprintf(a.stderr, "custos: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, ceremony.ErrUsage) || errors.Is(err, card.ErrAmbiguous) || isCobraUsage(msg) {
		return 2
	}
	return 1
}

// isCobraUsage recognises the command-line errors cobra makes itself, which carry no type.
func isCobraUsage(msg string) bool {
	for _, p := range []string{"unknown command ", "required flag(s) "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "custos",
		Short: "Smart-card custody of a CA root key backup",
		Long: `custos replaces the paper envelopes of a CA root-key ceremony with smart cards: the AES-256 key that
wraps a CA private key is Shamir-split, each share is age-encrypted to a custodian, and a quorum rebuilds
it. Every command that reads a record checks the values pinned in the minutes first.

Exit status: 0 success, 1 failure, 2 usage or ambiguity.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetHelpCommand(&cobra.Command{Hidden: true})
	root.AddCommand(a.versionCmd(), a.cardCmd(), a.rosterCmd(), a.splitCmd(), a.combineCmd(), a.shareCmd(), a.hsmCmd(), a.transcriptCmd(), a.preflightCmd(), a.ceremonyCmd())
	return root
}

// warn prints the process warnings after a flow that handled secrets has succeeded; a failure prints
// only its one error line.
func (a *app) warn() {
	for _, w := range a.warnings {
		fmt.Fprintf(a.stderr, "custos: warning: %s\n", w)
	}
}

// deviations returns the process warnings in the form records keep.
func (a *app) deviations() []string {
	var out []string
	for _, w := range a.warnings {
		out = append(out, "process: "+w)
	}
	return out
}

// printJSON writes v as indented JSON to stdout.
func (a *app) printJSON(v any) error {
	e := json.NewEncoder(a.stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// args enforces a positional argument count as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d; see 'custos %s --help'", cmd.CommandPath(), n, len(args), cmd.Name())}
		}
		return nil
	}
}
