package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) splitCmd() *cobra.Command {
	var o ceremony.SplitOptions
	var secretFile string
	var asJSON bool
	var cf cardFlags
	cmd := &cobra.Command{
		Use:   "split --roster R (--secret-file F | --generate 16|24|32) --out DIR",
		Short: "Split a secret among a roster's custodians",
		Long: `Split an AES key (16, 24 or 32 bytes) k-of-n among the custodians of a roster. Each custodian gets an
age-encrypted share (shares/NAME.age) and a check token (checks/NAME.age); manifest.json lists them,
signed by a key derived from the secret. Print the manifest key fingerprint into the minutes: combine
and share check pin it (--expect-manifest-key).

In production the roster's SHA-256 from the minutes is required (--expect-roster-sha256, or typed on the
terminal) and the secret is generated (--generate); --secret-file is for rehearsals only.

Card custodians' records are verified again, and before the manifest is signed every card custodian's
card proves its liveness and opens its new share and check token from disk (the check round): one PIN
entry per card.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Roster == "" || o.Out == "" {
				return usageError{fmt.Errorf("--roster and --out are required")}
			}
			var err error
			if o.ExpectRosterSHA256, err = a.pinned(o.ExpectRosterSHA256, "expect-roster-sha256", "the roster's SHA-256", o.Rehearsal); err != nil {
				return err
			}
			if secretFile != "" {
				if !o.Rehearsal {
					return usageError{fmt.Errorf("--secret-file is for rehearsals only (a production secret never touches disk); use --generate")}
				}
				if o.Secret, err = os.ReadFile(secretFile); err != nil {
					return fmt.Errorf("secret file: %w", err)
				}
				defer clear(o.Secret)
				if len(o.Secret) != 16 && len(o.Secret) != 24 && len(o.Secret) != 32 {
					return fmt.Errorf("secret file %s is %d bytes; custos splits AES keys of 16, 24 or 32 bytes", secretFile, len(o.Secret))
				}
			}
			var wipe func()
			if o.Cards, wipe, err = a.cards(&cf, o.Rehearsal); err != nil {
				return err
			}
			defer wipe()
			o.Deviations = a.deviations()
			if o.Host, err = a.hostFacts(); err != nil {
				return err
			}
			res, err := ceremony.Split(o)
			if err != nil {
				return err
			}
			a.warn()
			if asJSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "split %s: %d of %d shares in %s\n", res.CeremonyID, res.Threshold, res.Custodians, res.Dir)
			fmt.Fprintf(a.stdout, "manifest key: %s\n", res.ManifestKey)
			fmt.Fprintf(a.stdout, "secret check value: %s\n", res.SecretCheck)
			fmt.Fprintf(a.stdout, "roster sha256: %s\n", res.RosterSHA256)
			fmt.Fprintf(a.stdout, "seal: %s\n", res.Seal)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Roster, "roster", "", "the roster (roster.json)")
	f.StringVar(&o.ExpectRosterSHA256, "expect-roster-sha256", "", "the roster's SHA-256 from the minutes")
	f.StringVar(&secretFile, "secret-file", "", "the secret to split, raw bytes (rehearsal only)")
	f.IntVar(&o.Generate, "generate", 0, "generate a random secret of 16, 24 or 32 bytes")
	f.StringVar(&o.Out, "out", "", "the new directory (must not exist)")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "rehearsal: rehearsal roster, secret file allowed, record marked")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cf.register(cmd)
	return cmd
}
