// Command custos-sim runs virtual YubiKeys for tests and ceremony rehearsals: a private pcscd and
// software PIV cards (package card/sim) in their own user, mount, network and PID namespaces, reached
// by PC/SC clients through PCSCLITE_CSOCK_NAME. It is a thin front end over card/sim.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/custos-pki/custos/card/sim"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks an error as the caller's mistake: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func run(args []string, stdout, stderr io.Writer) int {
	// custos-sim up starts this same program inside the sim's namespaces as the sim's daemon.
	if dir, ok := os.LookupEnv(sim.ServeEnv); ok {
		if err := sim.Serve(dir); err != nil {
			fmt.Fprintf(stderr, "custos-sim: %v\n", err)
			return 1
		}
		return 0
	}
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "custos-sim: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, sim.ErrLayout) || errors.Is(err, sim.ErrProfile) {
		return 2
	}
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "custos-sim",
		Short:         "Virtual YubiKeys behind a private pcscd, for tests and rehearsals",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(upCmd(), statusCmd(), cardCmd("eject"), cardCmd("insert"), downCmd(), rehearseCmd(), ockExecCmd())
	return root
}

// dirFlag adds the --dir flag every command takes.
func dirFlag(c *cobra.Command, dir *string) {
	c.Flags().StringVar(dir, "dir", "", "the sim's directory (required)")
}

func needDir(dir string) error {
	if dir == "" {
		return usagef("--dir is required")
	}
	return nil
}
