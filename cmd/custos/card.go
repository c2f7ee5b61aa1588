package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
)

func (a *app) cardCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "card", Short: "List and enroll custodian YubiKeys"}
	cmd.AddCommand(a.cardListCmd(), a.cardEnrollCmd(), a.cardRetireCmd())
	return cmd
}

// cardListing is one card as card list reports it.
type cardListing struct {
	Reader   string           `json:"reader"`
	Serial   uint32           `json:"serial"`
	Firmware string           `json:"firmware"`
	Slots    []card.SlotState `json:"slots"`
}

func (a *app) cardListCmd() *cobra.Command {
	var rehearsal, asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the YubiKeys present: serial, firmware and what their key slots hold",
		Long: `List the YubiKeys present, with serial, firmware and the keys in slot 9e and the retired slots 82-95:
age identities (custos decryption keys and age-plugin-yubikey's), custos signing keys, foreign
certificates, and keys without a certificate (firmware 5.3 and later only).

Production refuses vpcd virtual readers; --rehearsal lists custos-sim's virtual cards only.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := card.Env{Rehearsal: rehearsal, Getenv: os.Getenv}
			readers, err := env.Readers()
			if err != nil {
				return err
			}
			out := []cardListing{}
			for _, r := range readers {
				c, err := card.Open(r)
				if err != nil {
					continue // an empty reader
				}
				slots, err := c.Slots()
				c.Close()
				if err != nil {
					return err
				}
				out = append(out, cardListing{Reader: r, Serial: c.Serial(), Firmware: c.Firmware().String(), Slots: slots})
			}
			if asJSON {
				return a.printJSON(out)
			}
			for _, l := range out {
				fmt.Fprintf(a.stdout, "YubiKey %d  firmware %s  reader %q\n", l.Serial, l.Firmware, l.Reader)
				for _, s := range l.Slots {
					fmt.Fprintf(a.stdout, "  slot %v  %-24s %q %s pin=%s touch=%s\n", s.Slot, s.Use, s.Name, s.PublicKey, s.PINPolicy, s.TouchPolicy)
				}
			}
			if len(out) == 0 {
				fmt.Fprintln(a.stderr, "custos: no YubiKey present")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rehearsal, "rehearsal", false, "list custos-sim's virtual cards")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) cardEnrollCmd() *cobra.Command {
	var o card.EnrollOptions
	var cf cardFlags
	var out, pinPolicy, touchPolicy string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "enroll --name NAME [--slot 1-20] [--pin-policy once|always] [--touch-policy always|cached|never] [--force] [--decryption-key-only] -o custodian.json",
		Short: "Generate a custodian's two keys on a YubiKey and write the custodian record",
		Long: `Generate a custodian's keys on a YubiKey and write the custodian record (-o), which roster create takes.

The decryption key: P-256 in a free retired slot (--slot 1-20 is 0x82-0x95), PIN policy once or always,
touch policy always (default), cached or never, with a self-signed certificate in age-plugin-yubikey's
layout. The signing key: P-256, PIN and touch never, in 9e when free, else in another free retired slot;
it signs only liveness challenges, receipts and seal co-signatures. --decryption-key-only adds a new
decryption key and keeps the card's signing key.

A slot is free only when it holds no certificate and GET METADATA finds no key in it. An occupied --slot
is replaced only with --force and a typed confirmation naming the key; firmware without GET METADATA
(before 5.3) needs --force. A card with the default PIN gets a new PIN and PUK (typed; in a rehearsal
also CUSTOS_NEW_PIN and CUSTOS_NEW_PUK), and a default management key is replaced by a random one stored
PIN-protected on the card.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Name == "" || out == "" {
				return usageError{errors.New("--name and -o custodian.json are required")}
			}
			if err := o.PINPolicy.UnmarshalText([]byte(pinPolicy)); err != nil || o.PINPolicy == card.PINNever {
				return usageError{fmt.Errorf("--pin-policy %s: choose once or always (a decryption key always needs the PIN)", pinPolicy)}
			}
			if err := o.TouchPolicy.UnmarshalText([]byte(touchPolicy)); err != nil {
				return usageError{fmt.Errorf("--touch-policy %s: choose always, cached or never", touchPolicy)}
			}
			if err := fsx.CheckNew(out); err != nil {
				return err
			}
			if !o.Rehearsal && (os.Getenv("CUSTOS_NEW_PIN") != "" || os.Getenv("CUSTOS_NEW_PUK") != "") {
				return fmt.Errorf("CUSTOS_NEW_PIN and CUSTOS_NEW_PUK are accepted only in rehearsal; unset them and type the new PIN and PUK")
			}
			pins, wipe, err := a.pinEntry(&cf, o.Rehearsal)
			if err != nil {
				return err
			}
			defer wipe()
			o.PIN = pins
			o.NewCredentials = a.newCredentials(o.Rehearsal)
			o.ConfirmReplace = a.confirmTyped
			c, err := a.selector(&cf, o.Rehearsal).OpenOne()
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := card.Enroll(c, o)
			if err != nil {
				return err
			}
			b, err := rec.Marshal()
			if err != nil {
				return err
			}
			if err := fsx.WriteFile(out, b); err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(rec)
			}
			fmt.Fprintf(a.stdout, "enrolled %s on YubiKey %d (firmware %s): decryption key in slot %v (PIN %v, touch %v), signing key in slot %v\n",
				rec.Name, rec.Serial, rec.Firmware, rec.Decryption.Slot, rec.Decryption.PINPolicy, rec.Decryption.TouchPolicy, rec.Signing.Slot)
			fmt.Fprintf(a.stdout, "recipient: %s\nidentity: %s\nrecord: %s\n", rec.Recipient, rec.Identity, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "the custodian's name")
	f.IntVar(&o.Slot, "slot", 0, "retired slot 1-20 for the decryption key (default: the first free)")
	f.StringVar(&pinPolicy, "pin-policy", "once", "decryption key PIN policy: once or always")
	f.StringVar(&touchPolicy, "touch-policy", "always", "decryption key touch policy: always, cached or never")
	f.BoolVar(&o.Force, "force", false, "replace the key in --slot (after a typed confirmation); allow firmware without GET METADATA")
	f.BoolVar(&o.DecryptionKeyOnly, "decryption-key-only", false, "add a decryption key and keep the card's signing key")
	f.StringVarP(&out, "output", "o", "", "where to write the custodian record (must not exist)")
	f.BoolVar(&o.Rehearsal, "rehearsal", false, "enroll a virtual card of custos-sim; the record says rehearsal")
	f.BoolVar(&asJSON, "json", false, "print the record as JSON")
	cf.register(cmd)
	return cmd
}

// newCredentials returns the new PIN and PUK for a card with the default PIN: in a rehearsal from
// CUSTOS_NEW_PIN and CUSTOS_NEW_PUK when set, otherwise typed twice on the terminal.
func (a *app) newCredentials(rehearsal bool) func(serial uint32) ([]byte, []byte, error) {
	return func(serial uint32) ([]byte, []byte, error) {
		if rehearsal && os.Getenv("CUSTOS_NEW_PIN") != "" && os.Getenv("CUSTOS_NEW_PUK") != "" {
			fmt.Fprintf(a.stderr, "custos: rehearsal: YubiKey %d: new PIN and PUK taken from CUSTOS_NEW_PIN and CUSTOS_NEW_PUK\n", serial)
			return []byte(os.Getenv("CUSTOS_NEW_PIN")), []byte(os.Getenv("CUSTOS_NEW_PUK")), nil
		}
		fmt.Fprintf(a.stderr, "custos: YubiKey %d still has the default PIN: choose a new PIN and PUK (6 to 8 characters).\n", serial)
		pin, err := a.typedTwice(fmt.Sprintf("New PIN for YubiKey %d", serial))
		if err != nil {
			return nil, nil, err
		}
		puk, err := a.typedTwice(fmt.Sprintf("New PUK for YubiKey %d", serial))
		if err != nil {
			clear(pin)
			return nil, nil, err
		}
		return pin, puk, nil
	}
}

func (a *app) typedTwice(prompt string) ([]byte, error) {
	v, err := a.readSecret(prompt)
	if err != nil {
		return nil, err
	}
	again, err := a.readSecret(prompt + ", again")
	defer clear(again)
	if err != nil || string(again) != string(v) {
		clear(v)
		if err == nil {
			err = errors.New(prompt + ": the two entries differ")
		}
		return nil, err
	}
	return v, nil
}
