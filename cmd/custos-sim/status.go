package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/custos-pki/custos/card/sim"
	"github.com/spf13/cobra"
)

func statusCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "status --dir DIR [--json]",
		Short: "Show the sim's cards: serials, readers, in or out, counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			s, err := sim.Attach(dir)
			if err != nil {
				return err
			}
			st, err := s.Status()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(out, "dir %s, profile %s, pcscd up %v (started %d times)\nPCSCLITE_CSOCK_NAME=%s\n",
				st.Dir, st.Profile, st.PCSCDUp, st.PCSCDStarts, st.Socket)
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SERIAL\tREADER\tCARD\tPIN VERIFIES\tAPDUS BY INS")
			for _, c := range st.Cards {
				state := "out"
				if c.Inserted {
					state = "in"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\n", c.Serial, c.Reader, state, c.PINVerifies, insCounts(c.APDUs))
			}
			return w.Flush()
		},
	}
	dirFlag(c, &dir)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// insCounts formats counters as "A4:3 FD:3", by instruction.
func insCounts(m map[string]uint64) string {
	var parts []string
	for _, ins := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s:%d", ins, m[ins]))
	}
	return strings.Join(parts, " ")
}
