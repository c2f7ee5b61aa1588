package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) rosterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "roster", Short: "Create and verify k-of-n custodian rosters"}
	cmd.AddCommand(a.rosterCreateCmd(), a.rosterVerifyCmd())
	return cmd
}

func (a *app) rosterCreateCmd() *cobra.Command {
	var o ceremony.RosterOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --threshold K -o roster.json [CUSTODIAN.json...] [--recipient NAME=age1...]",
		Short: "Write a k-of-n roster and print its SHA-256 for the minutes",
		Long: `Write a k-of-n roster of custodians and print its SHA-256, which the witnesses write into the minutes;
every flow that writes shares for this roster pins it (--expect-roster-sha256).

Card custodians are the records 'custos card enroll' wrote (CUSTODIAN.json arguments): each record's
two attestations must chain to Yubico's roots (with --rehearsal: only to the sim's virtual root,
$CUSTOS_SIM_DIR/attestation-root.pem), certify the recorded keys on the recorded card, and show a
decryption key that needs the PIN and, in production, a touch (unless --allow-touch-never REASON, which
the roster records). No card serves two custodians.

Software custodians are native age X25519 recipients (--recipient NAME=age1...), accepted only with
--allow-software. Production rosters must have fewer than K of them, so that no quorum can form without
cards.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Records = args
			if o.Out == "" {
				return usageError{fmt.Errorf("-o roster.json is required")}
			}
			res, err := ceremony.CreateRoster(o)
			if err != nil {
				return err
			}
			return a.printRoster(res, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Threshold, "threshold", 0, "shares needed to rebuild the key (K)")
	f.StringVarP(&o.Out, "output", "o", "", "where to write the roster (must not exist)")
	f.StringArrayVar(&o.Recipients, "recipient", nil, "a software custodian NAME=age1... (repeatable; needs --allow-software)")
	f.BoolVar(&o.AllowSoftware, "allow-software", false, "allow software (X25519) recipients")
	f.StringVar(&o.AllowTouchNever, "allow-touch-never", "", "accept decryption keys without touch always in production, for this recorded reason")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "a rehearsal roster: never accepted in production")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.MarkFlagRequired("threshold")
	return cmd
}

func (a *app) rosterVerifyCmd() *cobra.Command {
	var rehearsal, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify roster.json",
		Short: "Check a roster and print its SHA-256 to compare with the minutes",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := ceremony.VerifyRoster(args[0], rehearsal)
			if err != nil {
				return err
			}
			return a.printRoster(res, asJSON)
		},
	}
	cmd.Flags().BoolVar(&rehearsal, "rehearsal", false, "verify a rehearsal roster")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) printRoster(res *ceremony.RosterResult, asJSON bool) error {
	if asJSON {
		return a.printJSON(res)
	}
	fmt.Fprintf(a.stdout, "roster %s: %d of %d custodians (%d software)\n", res.Path, res.Threshold, len(res.Custodians), res.Software)
	fmt.Fprintf(a.stdout, "%s  %s\n", res.SHA256, res.Path)
	return nil
}
