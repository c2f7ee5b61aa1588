package main

import (
	"fmt"
	"os"

	"github.com/custos-pki/custos/card/sim"
	"github.com/spf13/cobra"
)

func upCmd() *cobra.Command {
	var (
		dir, profile string
		cards        int
		first        uint32
	)
	c := &cobra.Command{
		Use:   "up --cards N --dir DIR [--profile 5.2|5.4|5.7] [--first-serial S]",
		Short: "Start the sim's pcscd and cards; print the exports to eval",
		Long: `up starts a private pcscd and the virtual cards of DIR in their own namespaces, and returns
once every card answers through PC/SC. On first use it creates DIR, the fleet's attestation root
(DIR/attestation-root.pem, trusted only by rehearsals) and the cards, serials S, S+1, ... (default
` + fmt.Sprint(sim.DefaultFirstSerial) + `), profile 5.4 unless --profile says otherwise. Later ups bring back the same cards
in the same readers; their flags may be left out and must match when given.

It prints the shell lines to eval: PCSCLITE_CSOCK_NAME (the sim's pcscd socket) and
CUSTOS_SIM_DIR. Example: eval "$(custos-sim up --cards 3 --dir /tmp/sim)".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			if cards < 0 || cards > sim.MaxCards {
				return usagef("--cards must be 1 to %d", sim.MaxCards)
			}
			var p sim.Profile
			if profile != "" {
				var err error
				if p, err = sim.ParseProfile(profile); err != nil {
					return usageError{err}
				}
			}
			// This process has made no PC/SC call: a PCSCLITE_CSOCK_NAME left from another sim's
			// exports must not stop up from checking its own cards.
			os.Unsetenv("PCSCLITE_CSOCK_NAME")
			s, err := sim.Up(dir, sim.UpOptions{Cards: cards, Profile: p, FirstSerial: first, Detach: true})
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s.Exports())
			return nil
		},
	}
	dirFlag(c, &dir)
	c.Flags().IntVar(&cards, "cards", 0, fmt.Sprintf("number of cards, 1 to %d (required for a new DIR)", sim.MaxCards))
	c.Flags().StringVar(&profile, "profile", "", "firmware of new cards: 5.2, 5.4 (default) or 5.7")
	c.Flags().Uint32Var(&first, "first-serial", 0, "serial of the first new card")
	return c
}

func downCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "down --dir DIR",
		Short: "Stop the sim's pcscd and cards; the card files stay",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := needDir(dir); err != nil {
				return err
			}
			s, err := sim.Attach(dir)
			if err != nil {
				return err
			}
			return s.Down()
		},
	}
	dirFlag(c, &dir)
	return c
}
