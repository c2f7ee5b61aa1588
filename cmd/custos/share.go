package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) shareCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "share", Short: "Custodian health checks"}
	cmd.AddCommand(a.shareCheckCmd())
	return cmd
}

func (a *app) shareCheckCmd() *cobra.Command {
	var o ceremony.ShareCheckOptions
	var asJSON bool
	var cf cardFlags
	cmd := &cobra.Command{
		Use:   "check --ceremony DIR [-i IDENTITY_FILE | --serial S] [-o receipt.json]",
		Short: "Show a custodian's key and share file intact without opening the share",
		Long: `Show that a custodian's key opens its check token, and that the share file on disk is the one the
signed manifest lists, without decrypting the share. Writes a receipt (-o) that records the outcome.

Without -i the custodian's card is used: the one card of the record present (or chosen with --serial)
proves its liveness, opens the check token with one PIN entry, and signs the receipt with its attested
signing key ('custos transcript verify --receipt' checks it).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Ceremony == "" {
				return usageError{fmt.Errorf("--ceremony is required")}
			}
			var err error
			if o.ExpectSeal == "" {
				if o.ExpectManifestKey, err = a.pinned(o.ExpectManifestKey, "expect-manifest-key", "the manifest key fingerprint", o.Rehearsal); err != nil {
					return err
				}
			}
			var wipe func()
			if o.Cards, wipe, err = a.cards(&cf, o.Rehearsal); err != nil {
				return err
			}
			defer wipe()
			rc, err := ceremony.ShareCheck(o)
			if err != nil {
				return err
			}
			a.warn()
			if asJSON {
				return a.printJSON(rc)
			}
			fmt.Fprintf(a.stdout, "share check %s: %s of ceremony %s generation %d\n", rc.Outcome, rc.Custodian, rc.CeremonyID, rc.Generation)
			if rc.Card != nil {
				fmt.Fprintf(a.stdout, "receipt signed by YubiKey %d\n", rc.Card.Serial)
			}
			if o.Receipt != "" {
				fmt.Fprintf(a.stdout, "receipt: %s\n", o.Receipt)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Ceremony, "ceremony", "", "the record's directory")
	f.StringVar(&o.ExpectManifestKey, "expect-manifest-key", "", "the manifest key fingerprint from the minutes (plain splits)")
	f.StringVar(&o.ExpectSeal, "expect-seal", "", "the record's seal from the minutes (ceremony records)")
	f.StringVarP(&o.Identity, "identity", "i", "", "a file holding the custodian's native age X25519 identity")
	f.StringVarP(&o.Receipt, "output", "o", "", "where to write the receipt (must not exist)")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "rehearsal: accept rehearsal records only")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cf.register(cmd)
	return cmd
}
