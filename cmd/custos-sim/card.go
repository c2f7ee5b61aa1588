package main

import (
	"github.com/custos-pki/custos/card/sim"
	"github.com/spf13/cobra"
)

// cardCmd is eject or insert.
func cardCmd(op string) *cobra.Command {
	var (
		dir    string
		serial uint32
	)
	short := "Take a card out of its reader (PC/SC clients see it removed)"
	if op == "insert" {
		short = "Put a card back into its reader, with its state"
	}
	c := &cobra.Command{
		Use:   op + " --dir DIR --serial S",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			if serial == 0 {
				return usagef("--serial is required")
			}
			s, err := sim.Attach(dir)
			if err != nil {
				return err
			}
			if op == "insert" {
				return s.Insert(serial)
			}
			return s.Eject(serial)
		},
	}
	dirFlag(c, &dir)
	c.Flags().Uint32Var(&serial, "serial", 0, "the card's serial")
	return c
}
