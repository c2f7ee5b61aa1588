package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/ceremony"
)

func (a *app) cardRetireCmd() *cobra.Command {
	var (
		f    flowFlags
		o    ceremony.RetireOptions
		slot int
	)
	cmd := &cobra.Command{
		Use:   "retire --slot 1-20 --ceremony DIR... [--expect-seal SEAL]... --out DIR",
		Short: "Destroy a custodian's old decryption key on a YubiKey and report which old generations it revokes",
		Long: `Retire destroys the decryption key in a retired slot of a custodian's YubiKey (--slot 1-20 is 0x82-0x95):
a throwaway P-256 key (PIN and touch always) is generated over it and a tombstone certificate that says
RETIRED is stored in the slot (PIV cannot delete a key). The slot's fresh attestation, naming the
throwaway key, is recorded as proof that the old key is gone.

--ceremony takes the records of the ceremonies the card served (repeatable, any generations) and the
records of earlier retirements. A key that the latest generation of any ceremony given uses is refused,
before the card is asked for anything. For each older generation the report says how many members can
still open their shares: software custodians always can, card custodians unless their slot was retired
now or in an earlier retire record given. A generation is called revoked only when fewer than its
threshold can. Retiring a key never touches the current generation.

The card proves liveness with its signing key before any PIN; a witness confirms the custodian and the
serial printed on the card; the card's signing key co-signs the record (transcript, retire.json,
attestation.pem, tombstone.pem, report.md). Production pins the latest record of each ceremony with
--expect-seal (repeatable).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if slot < 1 || slot > 20 {
				return usageError{fmt.Errorf("--slot %d: choose the retired slot 1 to 20 that holds the old key", slot)}
			}
			if len(o.Ceremony) == 0 || f.out == "" {
				return usageError{errors.New("--ceremony and --out are required")}
			}
			pf, facts, err := a.begin(&f)
			if err != nil {
				return err
			}
			o.Slot, o.Preflight, o.HostFacts, o.Rehearsal, o.Out, o.Prompter = card.Slot(0x81+slot), pf, facts, f.hsm.rehearsal, f.out, a.prompter(&f)
			var wipe func()
			if o.Cards, wipe, err = a.cardOptions(&f); err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.RetireResult, error) { return ceremony.Retire(ctx, o) },
				func(res *ceremony.RetireResult) {
					rep := res.Report
					fmt.Fprintf(a.stdout, "retired YubiKey %d slot %s: key %s destroyed; the slot holds the throwaway key %s (attested)\n",
						rep.Retired.Serial, rep.Retired.Slot, rep.Retired.Fingerprint, rep.NewKey)
					for _, g := range rep.Generations {
						verdict := "not revoked"
						if g.Revoked {
							verdict = "REVOKED"
						}
						fmt.Fprintf(a.stdout, "ceremony %s generation %d (latest %d): %d of %d members can still open their shares, %d needed: %s\n",
							g.CeremonyID, g.Generation, g.Latest, len(g.CanOpen), g.Members, g.Threshold, verdict)
					}
					fmt.Fprintf(a.stdout, "record %s\nseal %s\n", res.Dir, res.Seal)
				})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&slot, "slot", 0, "the retired slot 1-20 (0x82-0x95) whose key is destroyed")
	fl.StringArrayVar(&o.Ceremony, "ceremony", nil, "a record of a ceremony the card served, or of an earlier retirement (repeatable)")
	fl.StringArrayVar(&o.ExpectSeals, "expect-seal", nil, "the seal of a ceremony's latest record from the minutes (repeatable; one per ceremony)")
	fl.StringVar(&f.out, "out", "", "the new record directory (must not exist)")
	fl.BoolVar(&f.hsm.rehearsal, "rehearsal", false, "retire a key on a virtual card of custos-sim; rehearsal records only, --witness allowed")
	fl.StringVar(&f.witness, "witness", "", "the witness confirming the custodian and the card (rehearsal only)")
	fl.StringArrayVar(&f.allow, "allow-deviation", nil, "accept a failed preflight check as a recorded deviation (repeatable)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	f.cards.register(cmd)
	return cmd
}
