package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/wrap"
)

// ttyComponents asks each legacy component's holder on the terminal: their name, the component without
// echo, and the check value written on the envelope.
type ttyComponents struct {
	a   *app
	tty *os.File
	r   *bufio.Reader
}

func (s *ttyComponents) Component(i, n int) (ceremony.LegacyComponent, error) {
	var c ceremony.LegacyComponent
	fmt.Fprintf(s.a.stderr, "Legacy component %d of %d. Holder, type your name: ", i, n)
	line, _ := s.r.ReadString('\n')
	if c.Holder = strings.TrimSpace(line); c.Holder == "" {
		return c, errors.New("no holder named")
	}
	fmt.Fprintf(s.a.stderr, "%s, type component %d of %d from your envelope, hex (not shown): ", c.Holder, i, n)
	typed, err := term.ReadPassword(int(s.tty.Fd()))
	fmt.Fprintln(s.a.stderr)
	if err != nil {
		return c, fmt.Errorf("reading the component: %w", err)
	}
	c.Value, err = ceremony.ParseComponent(typed)
	clear(typed)
	if err != nil {
		return c, err
	}
	fmt.Fprintf(s.a.stderr, "%s, type the check value written on the envelope (cmac:HEX or ecb:HEX): ", c.Holder)
	line, _ = s.r.ReadString('\n')
	if c.Check, err = wrap.ParseCheckValue(strings.TrimSpace(line)); err != nil {
		clear(c.Value)
		return c, err
	}
	return c, nil
}

// fileComponents reads the components from a rehearsal --components-file: mode 0600, one component a
// line, "HEX CHECK", the hex in groups or not; blank lines and lines starting with # are skipped.
type fileComponents struct {
	path  string
	lines [][]byte
	raw   []byte
}

func readComponentsFile(path string, n int) (*fileComponents, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--components-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--components-file %s: mode %v, want 0600", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--components-file: %w", err)
	}
	f := &fileComponents{path: path, raw: raw}
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 && l[0] != '#' {
			f.lines = append(f.lines, l)
		}
	}
	if len(f.lines) != n {
		clear(raw)
		return nil, fmt.Errorf("--components-file %s has %d components, --components says %d", path, len(f.lines), n)
	}
	return f, nil
}

func (f *fileComponents) Component(i, n int) (ceremony.LegacyComponent, error) {
	c := ceremony.LegacyComponent{Holder: fmt.Sprintf("%s line %d (rehearsal)", f.path, i)}
	l := f.lines[i-1]
	sp := bytes.LastIndexAny(l, " \t")
	if sp < 0 {
		return c, fmt.Errorf("%s: component %d: want HEX CHECK", f.path, i)
	}
	var err error
	if c.Check, err = wrap.ParseCheckValue(string(l[sp+1:])); err != nil {
		return c, fmt.Errorf("%s: component %d: %w", f.path, i, err)
	}
	if c.Value, err = ceremony.ParseComponent(l[:sp]); err != nil {
		return c, fmt.Errorf("%s: component %d: %w", f.path, i, err)
	}
	return c, nil
}

// wipe clears the file's bytes once the adoption is over.
func (f *fileComponents) wipe() { clear(f.raw) }

func (a *app) adoptCmd() *cobra.Command {
	var (
		f              flowFlags
		o              ceremony.AdoptOptions
		expectRoster   string
		componentsFile string
	)
	cmd := &cobra.Command{
		Use:   "adopt --roster R --components N --kcv CHECK --legacy-blob F --legacy-format kwp|cbc-pad --ca-cert F --module LIB --token-serial S --out DIR",
		Short: "Take over a CA key from the paper procedure (legacy AES key in envelopes) and rekey it",
		Long: `Adopt a CA key that a legacy procedure exported wrapped under an AES key whose XOR components are kept
in envelopes. Pins first (roster, module, token). Each component's holder types their name, the component
(not shown) and the check value on the envelope; each component must match its own check value before the
next is asked for. The whole key must match --kcv (cmac:HEX or ecb:HEX), and the blob its HMAC-SHA256
under the legacy key (--legacy-mac, 32 raw bytes or 64 hex digits) before anything else uses it.

--legacy-format kwp is RFC 5649 of the CA key's PKCS#8, opened inside the token: the CA key is unwrapped
there and proven to be the key of --ca-cert by a signature through its handle. cbc-pad (IV ‖ AES-CBC of
the PKCS#7-padded PKCS#8), or kwp on a token without RFC 5649, is opened on the host and needs
--allow-host-unwrap, a recorded deviation. A blob whose key is not the certificate's is refused before
anything but the transcript is written.

Because people saw the legacy key, the CA key is then rekeyed: a fresh KEK (HSM random XOR OS random),
the key re-wrapped under it, a trial import with proof of possession, new shares to the pinned and
witnessed roster with their check round, and a signed manifest of generation 1 of a new ceremony. Only
then a witness confirms the destruction of each envelope. Components come from the terminal; a 0600
--components-file (lines "HEX CHECK") only in rehearsal.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Roster == "" || f.out == "" || o.Components == 0 || o.KCV == "" || o.LegacyBlob == "" || o.LegacyFormat == "" || o.CACert == "" {
				return usageError{errors.New("--roster, --components, --kcv, --legacy-blob, --legacy-format, --ca-cert and --out are required")}
			}
			rehearsal := f.hsm.rehearsal
			if componentsFile != "" && !rehearsal {
				return usageError{errors.New("--components-file is for rehearsals only; holders type their components on the terminal")}
			}
			pf, facts, err := a.begin(&f)
			if err != nil {
				return err
			}
			if o.ExpectRosterSHA256, err = a.pinned(expectRoster, "expect-roster-sha256", "the roster's SHA-256", rehearsal); err != nil {
				return err
			}
			if o.HSM, o.HSMPIN, o.HSMPINSource, err = a.hsmLater(&f.hsm, "ceremony adopt"); err != nil {
				return hsmError(err)
			}
			if componentsFile != "" {
				src, err := readComponentsFile(componentsFile, o.Components)
				if err != nil {
					return err
				}
				defer src.wipe()
				o.Source, o.ComponentsSource = src, "--components-file (rehearsal)"
			} else {
				tty, err := a.openTTY()
				if err != nil {
					return fmt.Errorf("%w: legacy components are typed on a terminal", ceremony.ErrUsage)
				}
				defer tty.Close()
				o.Source, o.ComponentsSource = &ttyComponents{a: a, tty: tty, r: bufio.NewReader(tty)}, "terminal"
			}
			o.Preflight, o.HostFacts, o.Rehearsal, o.Identities, o.Out, o.Prompter = pf, facts, rehearsal, f.identities, f.out, a.prompter(&f)
			var wipe func()
			if o.Cards, wipe, err = a.cardOptions(&f); err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.AdoptResult, error) { return ceremony.Adopt(ctx, o) },
				func(res *ceremony.AdoptResult) {
					where := "in the token"
					if res.Unwrapped == "host" {
						where = "on the host"
					}
					fmt.Fprintf(a.stdout, "adopted CA key %s as ceremony %s in %s (unwrapped %s)\nroster sha256   %s\nmanifest key    %s\nKEK check value %s\nseal            %s\n",
						res.CAFingerprint, res.CeremonyID, res.Dir, where, res.RosterSHA256, res.ManifestKey, res.KEKCheck, res.Seal)
					for _, d := range res.Deviations {
						fmt.Fprintf(a.stdout, "deviation: %s\n", d)
					}
				})
		},
	}
	f.register(cmd, true, true)
	fl := cmd.Flags()
	fl.StringVar(&o.Roster, "roster", "", "the roster of the new custodians")
	fl.StringVar(&expectRoster, "expect-roster-sha256", "", "the roster's SHA-256 from the minutes")
	fl.IntVar(&o.Components, "components", 0, "how many XOR components the legacy key is held in (2 to 16)")
	fl.StringVar(&componentsFile, "components-file", "", `the components, lines "HEX CHECK" (rehearsal only; mode 0600)`)
	fl.StringVar(&o.KCV, "kcv", "", "the whole legacy key's check value: cmac:HEX or ecb:HEX")
	fl.StringVar(&o.LegacyBlob, "legacy-blob", "", "the CA key as the legacy procedure exported it")
	fl.StringVar(&o.LegacyFormat, "legacy-format", "", "the blob's format: kwp (RFC 5649) or cbc-pad (IV ‖ AES-CBC, PKCS#7)")
	fl.StringVar(&o.LegacyMAC, "legacy-mac", "", "HMAC-SHA256 of the blob file under the legacy key (32 raw bytes or 64 hex digits)")
	fl.StringVar(&o.CACert, "ca-cert", "", "the CA certificate (PEM or DER); the blob must hold its key")
	fl.BoolVar(&o.AllowHostUnwrap, "allow-host-unwrap", false, "open the blob on the host (cbc-pad, or a token without RFC 5649): a recorded deviation")
	fl.StringVar(&o.Transport, "kek-transport", "auto", "how the legacy key and the new KEK enter the token: auto, oaep, create")
	return cmd
}
