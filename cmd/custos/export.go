package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

// ttyDisplay shows key components on the controlling terminal only, never on stdout or stderr.
type ttyDisplay struct {
	tty *os.File
	r   *bufio.Reader
}

// clearScreen clears the terminal and its scrollback.
const clearScreen = "\033[H\033[2J\033[3J"

func (d *ttyDisplay) Show(i, n int, component []byte, check string) (string, error) {
	fmt.Fprintf(d.tty, "%sComponent %d of %d. Everyone but its holder looks away.\nHolder, type your name: ", clearScreen, i, n)
	line, err := d.r.ReadString('\n')
	holder := strings.TrimSpace(line)
	if holder == "" {
		return "", fmt.Errorf("no holder named for component %d: %v", i, err)
	}
	fmt.Fprintf(d.tty, "\nComponent %d of %d for %s:\n\n    ", i, n, holder)
	if err := ceremony.WriteGroupedHex(d.tty, component); err != nil {
		return "", err
	}
	fmt.Fprintf(d.tty, "\n\n    check value %s\n\nWrite it down and check it, then press Enter to clear the screen.", check)
	if _, err := d.r.ReadString('\n'); err != nil {
		fmt.Fprint(d.tty, clearScreen)
		return "", fmt.Errorf("component %d: the terminal closed before the holder confirmed", i)
	}
	fmt.Fprint(d.tty, clearScreen)
	return holder, nil
}

func (a *app) exportCmd() *cobra.Command {
	var (
		f          flowFlags
		o          ceremony.ExportOptions
		expectSeal string
	)
	cmd := &cobra.Command{
		Use:   "export --ceremony DIR --components N --out DIR",
		Short: "Emergency: show the KEK as XOR components on the terminal, one holder at a time",
		Long: `The emergency path for an HSM that accepts a key only by component entry. The record is pinned, a quorum
rebuilds and checks the KEK, and each of N random XOR components is shown on the terminal to one holder at
a time with its check value; the screen is cleared between holders. The record under --out says who
received which component. No component is written anywhere: it appears only on the terminal, never on
standard output or standard error.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(o.Ceremony) == 0 || f.out == "" || o.Components == 0 {
				return usageError{errors.New("--ceremony, --components and --out are required")}
			}
			pf, facts, err := a.begin(&f)
			if err != nil {
				return err
			}
			rehearsal := f.hsm.rehearsal
			if o.ExpectSeal, err = a.pinned(expectSeal, "expect-seal", "the record's seal", rehearsal); err != nil {
				return err
			}
			tty, err := a.openTTY()
			if err != nil {
				return fmt.Errorf("%w: components are shown only on a terminal", ceremony.ErrUsage)
			}
			defer tty.Close()
			o.Display = &ttyDisplay{tty: tty, r: bufio.NewReader(tty)}
			o.Preflight, o.HostFacts, o.Rehearsal, o.Identities, o.Out = pf, facts, rehearsal, f.identities, f.out
			var wipe func()
			if o.Cards, wipe, err = a.cardOptions(&f); err != nil {
				return err
			}
			defer wipe()
			return runFlow(a, cmd, f.asJSON, func(ctx context.Context) (*ceremony.ExportResult, error) { return ceremony.Export(ctx, o) },
				func(res *ceremony.ExportResult) {
					fmt.Fprintf(a.stdout, "exported %d components of the KEK (%s) to %s\nseal %s\n", res.Components, res.KEKCheck, strings.Join(res.Holders, ", "), res.Seal)
				})
		},
	}
	f.register(cmd, false, false)
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Ceremony, "ceremony", nil, "the records, oldest first; the last holds the current generation")
	fl.StringVar(&expectSeal, "expect-seal", "", "the last record's seal from the minutes")
	fl.IntVar(&o.Components, "components", 0, "how many XOR components (2 to 16)")
	return cmd
}
