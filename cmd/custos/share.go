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
	cmd := &cobra.Command{
		Use:   "check --ceremony DIR -i IDENTITY_FILE [-o receipt.json]",
		Short: "Show a custodian's key and share file intact without opening the share",
		Long: `Show that a custodian's key opens its check token, and that the share file on disk is the one the
signed manifest lists, without decrypting the share. Writes a receipt (-o) that records the outcome.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Ceremony == "" || o.Identity == "" {
				return usageError{fmt.Errorf("--ceremony and -i are required")}
			}
			var err error
			if o.ExpectManifestKey, err = a.pinned(o.ExpectManifestKey, "expect-manifest-key", "the manifest key fingerprint", o.Rehearsal); err != nil {
				return err
			}
			rc, err := ceremony.ShareCheck(o)
			if err != nil {
				return err
			}
			a.warn()
			if asJSON {
				return a.printJSON(rc)
			}
			fmt.Fprintf(a.stdout, "share check %s: %s of ceremony %s generation %d\n", rc.Outcome, rc.Custodian, rc.CeremonyID, rc.Generation)
			if o.Receipt != "" {
				fmt.Fprintf(a.stdout, "receipt: %s\n", o.Receipt)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Ceremony, "ceremony", "", "the record's directory")
	f.StringVar(&o.ExpectManifestKey, "expect-manifest-key", "", "the manifest key fingerprint from the minutes")
	f.StringVarP(&o.Identity, "identity", "i", "", "a file holding the custodian's native age X25519 identity")
	f.StringVarP(&o.Receipt, "output", "o", "", "where to write the receipt (must not exist)")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "rehearsal: accept rehearsal records only")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
