package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/hsm"
)

func (a *app) ceremonyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ceremony", Short: "The CA key ceremonies: generate and import"}
	cmd.AddCommand(a.generateCmd(), a.importCmd(), a.reshareCmd(), a.rekeyCmd(), a.exportCmd(), a.adoptCmd())
	return cmd
}

// flowFlags are the flags every ceremony shares.
type flowFlags struct {
	hsm        hsmFlags
	cards      cardFlags
	allow      []string
	identities []string
	out        string
	witness    string
	asJSON     bool
}

// register adds the flags; a flow that uses no HSM gets --rehearsal alone instead of the HSM flags, and
// a flow with witnesses gets --witness.
func (f *flowFlags) register(cmd *cobra.Command, withHSM, withWitness bool) {
	fl := cmd.Flags()
	if withHSM {
		f.hsm.register(cmd)
	} else {
		fl.BoolVar(&f.hsm.rehearsal, "rehearsal", false, "rehearsal: rehearsal records and rosters only, --witness allowed")
	}
	if withWitness {
		fl.StringVar(&f.witness, "witness", "", "the witness confirming every custodian and destruction (rehearsal only)")
	}
	f.cards.register(cmd)
	fl.StringArrayVar(&f.allow, "allow-deviation", nil, "accept a failed preflight check as a recorded deviation (repeatable)")
	fl.StringArrayVarP(&f.identities, "identity", "i", nil, "identity file of a software custodian (repeatable)")
	fl.StringVar(&f.out, "out", "", "the new record directory (must not exist)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
}

// begin does what every ceremony does first, before any pin is asked for: the --witness rule and the
// preflight; and it collects the host facts the record keeps.
func (a *app) begin(f *flowFlags) (*ceremony.PreflightReport, ceremony.Facts, error) {
	if f.witness != "" && !f.hsm.rehearsal {
		return nil, nil, usageError{errors.New("--witness confirms only in rehearsal; witnesses type their names in production")}
	}
	pf, err := a.preflight(f.allow, f.hsm.rehearsal)
	if err != nil {
		return nil, nil, err
	}
	facts, err := a.hostFacts()
	return pf, facts, err
}

// cardOptions are how the flow reaches the custodians' cards; call wipe when the flow is done.
func (a *app) cardOptions(f *flowFlags) (ceremony.CardOptions, func(), error) {
	return a.cards(&f.cards, f.hsm.rehearsal)
}

// prompter asks the flow's witnesses: on the terminal, or with the --witness name in rehearsal.
func (a *app) prompter(f *flowFlags) *terminalPrompter {
	return &terminalPrompter{a: a, rehearse: f.witness}
}

// runFlow runs a flow, which SIGINT cancels between its steps, and prints its result as JSON or as text.
func runFlow[T any](a *app, cmd *cobra.Command, asJSON bool, flow func(context.Context) (T, error), text func(T)) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	res, err := flow(ctx)
	if err != nil {
		return hsmError(err)
	}
	a.warn()
	if asJSON {
		return a.printJSON(res)
	}
	text(res)
	return nil
}

// nextGeneration fills the shared inputs of reshare and rekey, pins typed where the flags are missing;
// call the returned wipe when the flow is done.
func (a *app) nextGeneration(f *flowFlags, o *ceremony.NextGeneration, expectSeal, expectRoster string) (func(), error) {
	if len(o.Ceremony) == 0 || o.Roster == "" || f.out == "" {
		return nil, usageError{errors.New("--ceremony, --roster and --out are required")}
	}
	pf, facts, err := a.begin(f)
	if err != nil {
		return nil, err
	}
	rehearsal := f.hsm.rehearsal
	if o.ExpectSeal, err = a.pinned(expectSeal, "expect-seal", "the record's seal", rehearsal); err != nil {
		return nil, err
	}
	if o.ExpectRosterSHA256, err = a.pinned(expectRoster, "expect-roster-sha256", "the new roster's SHA-256", rehearsal); err != nil {
		return nil, err
	}
	o.Preflight, o.HostFacts, o.Rehearsal, o.Identities, o.Out, o.Prompter = pf, facts, rehearsal, f.identities, f.out, a.prompter(f)
	var wipe func()
	o.Cards, wipe, err = a.cardOptions(f)
	return wipe, err
}

// nextGenerationFlags registers the flags of nextGeneration.
func nextGenerationFlags(cmd *cobra.Command, o *ceremony.NextGeneration, expectSeal, expectRoster *string) {
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Ceremony, "ceremony", nil, "the records, oldest first; the last holds the current generation")
	fl.StringVar(expectSeal, "expect-seal", "", "the last record's seal from the minutes")
	fl.StringVar(&o.Roster, "roster", "", "the new roster")
	fl.StringVar(expectRoster, "expect-roster-sha256", "", "the new roster's SHA-256 from the minutes")
}

// terminalPrompter asks the witnesses on the terminal; in rehearsal, --witness names answer instead.
type terminalPrompter struct {
	a        *app
	rehearse string // the --witness name (rehearsal only)
}

func (p *terminalPrompter) Witness(flow, id, custodian string, serial uint32) (string, error) {
	what := "their identity"
	if serial != 0 {
		what = fmt.Sprintf("their identity and the serial %d printed on their card", serial)
	}
	return p.confirm(fmt.Sprintf("%s %s: witness, confirm custodian %q: %s", flow, id, custodian, what))
}

func (p *terminalPrompter) Confirm(flow, id, statement string) (string, error) {
	return p.confirm(fmt.Sprintf("%s %s: witness, confirm: %s", flow, id, statement))
}

// confirm asks a witness to type their name under a statement; in rehearsal the --witness name answers.
func (p *terminalPrompter) confirm(statement string) (string, error) {
	if p.rehearse != "" {
		return p.rehearse + " (--witness, rehearsal)", nil
	}
	tty, err := p.a.openTTY()
	if err != nil {
		return "", fmt.Errorf("%w: a witness confirms on the terminal: %s", ceremony.ErrUsage, statement)
	}
	defer tty.Close()
	fmt.Fprintf(p.a.stderr, "%s. Type your name to confirm: ", statement)
	line, _ := bufio.NewReader(tty).ReadString('\n')
	name := strings.TrimSpace(line)
	if name == "" {
		return "", fmt.Errorf("not confirmed by a witness: %s", statement)
	}
	return name, nil
}

func (p *terminalPrompter) Minutes(lines []string) {
	bar := strings.Repeat("=", 72)
	fmt.Fprintf(p.a.stderr, "\n%s\n  FOR THE MINUTES\n%s\n", bar, bar)
	for _, l := range lines {
		fmt.Fprintf(p.a.stderr, "  %s\n", l)
	}
	fmt.Fprintf(p.a.stderr, "%s\n\n", bar)
}

func (a *app) generateCmd() *cobra.Command {
	var (
		f                     flowFlags
		o                     ceremony.GenerateOptions
		profile, expectRoster string
		validity              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "generate --roster R --module LIB --token-serial S --ca-key ALG [--subject DN --validity D | --ca-profile F] --out DIR",
		Short: "Generate a CA key in an HSM and back it up to the custodians",
		Long: `The generation ceremony: preflight; pins (roster, module, token); each custodian confirmed by a witness;
the token recorded and probed; a KEK from the HSM's RNG XOR the OS RNG; the CA key pair in the HSM; the
blob written; the software check; a trial import with proof of possession; shares and check tokens; the
check round; the root certificate; the signed manifest; the minutes. Only then the KEK is destroyed and
the CA key destroyed (or locked with --keep-ca-key). The record is sealed. A failure before destruction
aborts: the source token keeps nothing of the ceremony and the record says where and why.

Production pins the roster (--expect-roster-sha256), the module (--expect-module-sha256) and the token
(--token-serial); values not given are typed on the terminal.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Roster == "" || f.out == "" || o.CAKey == "" {
				return usageError{errors.New("--roster, --ca-key and --out are required")}
			}
			pf, facts, err := a.begin(&f)
			if err != nil {
				return err
			}
			rehearsal := f.hsm.rehearsal
			if o.ExpectRosterSHA256, err = a.pinned(expectRoster, "expect-roster-sha256", "the roster's SHA-256", rehearsal); err != nil {
				return err
			}
			if o.HSM, o.HSMPIN, o.HSMPINSource, err = a.hsmLater(&f.hsm, "ceremony generate"); err != nil {
				return hsmError(err)
			}
			o.Validity = validity
			if profile != "" {
				p, err := hsm.LoadRootProfile(profile)
				if err != nil {
					return err
				}
				o.Subject, o.Validity = p.Subject, time.Duration(p.ValidityDays)*24*time.Hour
			}
			if o.Subject != "" && o.Validity == 0 {
				return usageError{errors.New("--subject needs --validity (2922 to 9132 days, e.g. 87600h)")}
			}
			o.Preflight, o.HostFacts, o.Rehearsal, o.Identities, o.Out, o.Prompter = pf, facts, rehearsal, f.identities, f.out, a.prompter(&f)
			var wipe func()
			if o.Cards, wipe, err = a.cardOptions(&f); err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.GenerateResult, error) { return ceremony.Generate(ctx, o) },
				func(res *ceremony.GenerateResult) {
					fmt.Fprintf(a.stdout, "generated %s in %s\nroster sha256   %s\nmanifest key    %s\nCA fingerprint  %s\nKEK check value %s\nseal            %s\n",
						res.CeremonyID, res.Dir, res.RosterSHA256, res.ManifestKey, res.CAFingerprint, res.KEKCheck, res.Seal)
				})
		},
	}
	f.register(cmd, true, true)
	fl := cmd.Flags()
	fl.StringVar(&o.Roster, "roster", "", "the roster (roster.json)")
	fl.StringVar(&expectRoster, "expect-roster-sha256", "", "the roster's SHA-256 from the minutes")
	fl.StringVar(&o.CAKey, "ca-key", "", "the CA key: rsa4096, rsa3072, p384 or p256")
	fl.StringVar(&o.Subject, "subject", "", "the root certificate's subject (RFC 4514 DN); no certificate without it")
	fl.DurationVar(&validity, "validity", 0, "the root certificate's validity (BR: 2922 to 9132 days)")
	fl.StringVar(&profile, "ca-profile", "", "a root certificate profile file (subject, validity_days)")
	fl.BoolVar(&o.KeepCAKey, "keep-ca-key", false, "keep the CA key in the source token, locked (not extractable), instead of destroying it")
	return cmd
}

func (a *app) importCmd() *cobra.Command {
	var (
		f          flowFlags
		o          ceremony.ImportOptions
		expectSeal string
	)
	cmd := &cobra.Command{
		Use:   "import --ceremony DIR --module LIB --token-serial S --out DIR",
		Short: "Import the backed-up CA key into an HSM with a quorum of custodians",
		Long: `The import ceremony: preflight; pins (the record's seal, the module, the token) before any module is
loaded or PIN asked for; the target token opened; the quorum's shares opened and checked against the
signed manifest; the KEK rebuilt and checked; in the target token the KEK transported (--kek-transport
auto|rsa-aes|oaep|create; auto takes the first method an active probe confirmed), the CA key unwrapped
(--ca-unwrap kwp, or host-cbcpad --allow-host-unwrap for tokens without RFC 5649, recorded as a
deviation), hardened, copied to the token and proven; the KEK destroyed; the record sealed and linked to
the one it imports from.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(o.Ceremony) == 0 || f.out == "" {
				return usageError{errors.New("--ceremony and --out are required")}
			}
			pf, facts, err := a.begin(&f)
			if err != nil {
				return err
			}
			rehearsal := f.hsm.rehearsal
			if o.ExpectSeal, err = a.pinned(expectSeal, "expect-seal", "the record's seal", rehearsal); err != nil {
				return err
			}
			if o.HSM, o.HSMPIN, o.HSMPINSource, err = a.hsmLater(&f.hsm, "ceremony import"); err != nil {
				return hsmError(err)
			}
			o.Preflight, o.HostFacts, o.Rehearsal, o.Identities, o.Out = pf, facts, rehearsal, f.identities, f.out
			var wipe func()
			if o.Cards, wipe, err = a.cardOptions(&f); err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.ImportResult, error) { return ceremony.Import(ctx, o) },
				func(res *ceremony.ImportResult) {
					fmt.Fprintf(a.stdout, "imported CA key %s into %s\nKEK transport %s, CA unwrap %s\nproof of possession verified\nseal %s\n",
						res.CAFingerprint, res.Token, res.Import.Transport, res.Import.CAUnwrap, res.Seal)
					for _, d := range res.Import.Deviations {
						fmt.Fprintf(a.stdout, "deviation: %s\n", d)
					}
				})
		},
	}
	f.register(cmd, true, false)
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Ceremony, "ceremony", nil, "the record to import from (repeat for a chain of records, oldest first)")
	fl.StringVar(&expectSeal, "expect-seal", "", "the record's latest seal from the minutes")
	fl.StringVar(&o.Transport, "kek-transport", "auto", "how the KEK enters the token: auto, rsa-aes, oaep, create")
	fl.StringVar(&o.CAUnwrap, "ca-unwrap", "kwp", "how the CA key is unwrapped: kwp, or host-cbcpad with --allow-host-unwrap")
	fl.BoolVar(&o.AllowHostUnwrap, "allow-host-unwrap", false, "allow host-cbcpad, which unwraps the CA key on the host (a recorded deviation)")
	return cmd
}

func (a *app) reshareCmd() *cobra.Command {
	var (
		f                        flowFlags
		o                        ceremony.NextGeneration
		expectSeal, expectRoster string
	)
	cmd := &cobra.Command{
		Use:   "reshare --ceremony DIR --roster NEW --out DIR",
		Short: "Give the same KEK to a new roster or k-of-n (does NOT revoke the old shares)",
		Long: `Reshare: a quorum of the current generation rebuilds the KEK, and new shares and check tokens go to the
custodians of a new roster (new people, or a new k-of-n) as generation + 1, with the same KEK and manifest
key and a byte-identical ca-key.wrapped. The new manifest names the one it supersedes, and shares of an
older generation are refused when the records are given together.

A reshare does NOT revoke: any quorum of an older generation can still rebuild the KEK from its own shares.
Use it for lost or retired cards when no custodian is distrusted; to revoke, use 'ceremony rekey', or
destroy the old card keys with 'card retire'.

Production pins the record (--expect-seal) and the new roster (--expect-roster-sha256).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			wipe, err := a.nextGeneration(&f, &o, expectSeal, expectRoster)
			if err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.ReshareResult, error) { return ceremony.Reshare(ctx, o) },
				func(res *ceremony.ReshareResult) {
					fmt.Fprintf(a.stdout, "reshared %s: generation %d supersedes %d (not revoked) in %s\nroster sha256 %s\nmanifest key  %s\nseal          %s\n",
						res.CeremonyID, res.Generation, res.Supersedes, res.Dir, res.RosterSHA256, res.ManifestKey, res.Seal)
				})
		},
	}
	f.register(cmd, false, true)
	nextGenerationFlags(cmd, &o, &expectSeal, &expectRoster)
	return cmd
}

func (a *app) rekeyCmd() *cobra.Command {
	var (
		f                        flowFlags
		o                        ceremony.RekeyOptions
		expectSeal, expectRoster string
	)
	cmd := &cobra.Command{
		Use:   "rekey --ceremony DIR --roster NEW --module LIB --token-serial S --out DIR",
		Short: "Put the CA key under a new KEK for fresh custodian keys, revoking the old shares",
		Long: `Rekey: a quorum rebuilds the current KEK; a new KEK (HSM random XOR OS random) re-wraps the CA key inside
the HSM; the new blob is checked in software and by a trial import with proof of possession; new shares go
to a roster of fresh keys (made with 'card enroll --decryption-key-only'; any key of an earlier generation
is refused); the new manifest is signed by the new manifest key and a handover by the old one. The old blob
and shares are recorded as superseded, and a witness confirms the destruction of every recorded copy of
the old blob. Afterwards the old KEK opens nothing current: this revokes.

Production pins the record (--expect-seal), the new roster (--expect-roster-sha256), the module
(--expect-module-sha256) and the token (--token-serial).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			wipe, err := a.nextGeneration(&f, &o.NextGeneration, expectSeal, expectRoster)
			if err != nil {
				return err
			}
			defer wipe()
			if o.HSM, o.HSMPIN, o.HSMPINSource, err = a.hsmLater(&f.hsm, "ceremony rekey"); err != nil {
				return hsmError(err)
			}
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.RekeyResult, error) { return ceremony.Rekey(ctx, o) },
				func(res *ceremony.RekeyResult) {
					fmt.Fprintf(a.stdout, "rekeyed %s: generation %d revokes %d in %s\nroster sha256    %s\nnew manifest key %s\nold manifest key %s\nKEK check value  %s\nseal             %s\n",
						res.CeremonyID, res.Generation, res.Supersedes, res.Dir, res.RosterSHA256, res.ManifestKey, res.OldManifestKey, res.KEKCheck, res.Seal)
				})
		},
	}
	f.register(cmd, true, true)
	nextGenerationFlags(cmd, &o.NextGeneration, &expectSeal, &expectRoster)
	cmd.Flags().StringVar(&o.Transport, "kek-transport", "auto", "how the KEKs enter the token: auto, oaep, create")
	return cmd
}
