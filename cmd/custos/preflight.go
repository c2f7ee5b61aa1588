package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) preflightCmd() *cobra.Command {
	var allow []string
	var rehearsal, asJSON bool
	cmd := &cobra.Command{
		Use:   "preflight [--allow-deviation NAME]...",
		Short: "Check the ceremony host and show the binary's SHA-256 and the clock to the witnesses",
		Long: `Check the ceremony host: no network interface up but loopback, swap off, core dumps off, memory locking
in force, no vpcd reader configured, no PCSCLITE_CSOCK_NAME or CUSTOS_* variable set. Shows the custos
binary's SHA-256 and the clock for the witnesses. Production flows run this first and stop on a failed
check unless --allow-deviation names it (network=IFACE for the one HSM interface, which must have no
default route); deviations are recorded. With --rehearsal failures are reported, not fatal.

Checks: network, swap, core-dumps, memory-lock, vpcd, environment.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.preflight(allow, rehearsal)
			if r != nil {
				if asJSON {
					if jerr := a.printJSON(r); jerr != nil {
						return jerr
					}
				} else {
					for _, c := range r.Checks {
						mark := "ok  "
						switch {
						case c.Deviation:
							mark = "DEV "
						case !c.OK:
							mark = "FAIL"
						}
						fmt.Fprintf(a.stdout, "%s %-12s %s\n", mark, c.Name, c.Detail)
					}
					fmt.Fprintf(a.stdout, "clock  %s\ncustos %s\n", r.Clock, r.BinarySHA256)
				}
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&allow, "allow-deviation", nil, "accept a failed check as a recorded deviation (repeatable)")
	cmd.Flags().BoolVar(&rehearsal, "rehearsal", false, "report failures without stopping")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// preflight runs the host checks for a flow.
func (a *app) preflight(allow []string, rehearsal bool) (*ceremony.PreflightReport, error) {
	v, err := selfHash()
	if err != nil {
		return nil, err
	}
	return ceremony.Preflight(ceremony.Host{Warnings: a.warnings}, v.SHA256, allow, rehearsal)
}
