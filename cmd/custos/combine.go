package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) combineCmd() *cobra.Command {
	var o ceremony.CombineOptions
	var asJSON bool
	var cf cardFlags
	cmd := &cobra.Command{
		Use:   "combine --ceremony DIR -i IDENTITY_FILE... --out FILE [--components N]",
		Short: "Rebuild the secret of a plain split from a quorum of shares",
		Long: `Rebuild the secret of a plain split from at least k shares and write it to FILE (0600). Every share is
checked against the signed manifest first; the result must match the manifest's check value and derive
its manifest key. With --components N the secret is written as N random XOR components FILE.1 ... FILE.N,
each printed with its check value.

combine refuses a ceremony record (one that protects a CA key) outside rehearsal. Identities are files of
native age X25519 identities (-i, repeatable) and the custodians' cards present (or chosen with
--serial): each card proves its liveness before its PIN is asked, once. custos never runs age plugins.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Ceremony == "" || o.Out == "" {
				return usageError{fmt.Errorf("--ceremony and --out are required")}
			}
			var err error
			if o.ExpectManifestKey, err = a.pinned(o.ExpectManifestKey, "expect-manifest-key", "the manifest key fingerprint", o.Rehearsal); err != nil {
				return err
			}
			var wipe func()
			if o.Cards, wipe, err = a.cards(&cf, o.Rehearsal); err != nil {
				return err
			}
			defer wipe()
			res, err := ceremony.Combine(o)
			if err != nil {
				return err
			}
			a.warn()
			if asJSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "combined %d shares (threshold %d); check value %s\n", res.Shares, res.Threshold, res.SecretCheck)
			for _, f := range res.Files {
				fmt.Fprintf(a.stdout, "%s  %s\n", f.Check, f.Path)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Ceremony, "ceremony", "", "the split's directory")
	f.StringVar(&o.ExpectManifestKey, "expect-manifest-key", "", "the manifest key fingerprint from the minutes")
	f.StringArrayVarP(&o.Identities, "identity", "i", nil, "a file of native age X25519 identities (repeatable)")
	f.StringVar(&o.Out, "out", "", "the file to write (must not exist)")
	f.IntVar(&o.Components, "components", 0, "write N XOR components instead of the secret")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "rehearsal: accept rehearsal records only")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cf.register(cmd)
	return cmd
}
