package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/internal/softtoken"
)

// ockExecCmd is the rehearsal's openCryptoki step, run by rehearse inside the namespaces of
// softtoken.OpenCryptokiCommand: it prepares openCryptoki's soft token there and runs the command given
// after --, which shares those namespaces.
func ockExecCmd() *cobra.Command {
	var label string
	c := &cobra.Command{
		Use:    "ock-exec --label L -- COMMAND [ARG...]",
		Short:  "Run a command beside a fresh openCryptoki soft token (used by rehearse)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !softtoken.InOpenCryptoki() {
				return usagef("ock-exec runs only inside the namespaces rehearse makes for openCryptoki")
			}
			if _, err := softtoken.StartOpenCryptoki(label, rehearsalHSMSO, rehearsalHSMPIN); err != nil {
				return err
			}
			run := exec.Command(args[0], args[1:]...)
			run.Stdin, run.Stdout, run.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := run.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return fmt.Errorf("%s exited with status %d", args[0], ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "the soft token's label")
	return c
}
