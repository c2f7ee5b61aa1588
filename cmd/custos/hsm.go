package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/hsm"
)

func (a *app) hsmCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "hsm", Short: "Inspect PKCS#11 HSM tokens"}
	cmd.AddCommand(a.hsmProbeCmd())
	return cmd
}

// hsmFlags are the flags every HSM command shares.
type hsmFlags struct {
	module, token, serial, expectSHA256, pinFile string
	protectedAuth, rehearsal                     bool
}

func (f *hsmFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.module, "module", "", "the PKCS#11 module (shared library)")
	fl.StringVar(&f.token, "token", "", "the token label")
	fl.StringVar(&f.serial, "token-serial", "", "the token serial number (required in production)")
	fl.StringVar(&f.expectSHA256, "expect-module-sha256", "", "the module's SHA-256 from the minutes, as sha256sum prints it")
	fl.BoolVar(&f.protectedAuth, "protected-auth", false, "log in through the token's PIN pad or PED (C_Login with no PIN)")
	fl.StringVar(&f.pinFile, "hsm-pin-file", "", "file holding the HSM user PIN (rehearsal only; mode 0600)")
	fl.BoolVar(&f.rehearsal, "rehearsal", false, "rehearsal: software tokens only, PIN from --hsm-pin-file or CUSTOS_HSM_PIN")
}

// config checks the pins and the PIN source and returns the hsm configuration; flow names the flow in
// the PIN prompt.
func (a *app) hsmConfig(f *hsmFlags, flow string) (hsm.Config, error) {
	cfg := hsm.Config{Module: f.module, TokenLabel: f.token, TokenSerial: f.serial, ProtectedAuth: f.protectedAuth, Rehearsal: f.rehearsal}
	if f.module == "" {
		return cfg, usageError{errors.New("--module is required")}
	}
	if f.token == "" && f.serial == "" {
		return cfg, usageError{errors.New("name the token with --token-serial (and --token)")}
	}
	if !f.rehearsal && f.serial == "" {
		return cfg, usageError{errors.New("--token-serial is required outside rehearsal")}
	}
	if !f.rehearsal && f.pinFile != "" {
		return cfg, usageError{errors.New("--hsm-pin-file is for rehearsals only; type the PIN or use --protected-auth")}
	}
	var err error
	if cfg.ExpectModuleSHA256, err = a.pinned(f.expectSHA256, "expect-module-sha256", "the HSM module's SHA-256", f.rehearsal); err != nil {
		return cfg, err
	}
	if cfg.ExpectModuleSHA256 != "" {
		if err := hsm.CheckModule(f.module, cfg.ExpectModuleSHA256); err != nil {
			return cfg, err
		}
	}
	if f.protectedAuth {
		return cfg, nil
	}
	cfg.PIN, err = a.hsmPIN(f, flow)
	return cfg, err
}

// hsmLater is hsmConfig for the ceremonies, which ask for the HSM PIN only when they open the token,
// after every pin is checked. It returns the PIN prompt and the PIN's source for the record.
func (a *app) hsmLater(f *hsmFlags, flow string) (hsm.Config, func() ([]byte, error), string, error) {
	pf := *f
	pf.protectedAuth = true // everything but the PIN
	cfg, err := a.hsmConfig(&pf, flow)
	cfg.ProtectedAuth = f.protectedAuth
	if err != nil || f.protectedAuth {
		return cfg, nil, "protected authentication path", err
	}
	source := "terminal"
	switch {
	case f.rehearsal && f.pinFile != "":
		source = "--hsm-pin-file (rehearsal)"
	case f.rehearsal && os.Getenv("CUSTOS_HSM_PIN") != "":
		source = "CUSTOS_HSM_PIN (rehearsal)"
	}
	return cfg, func() ([]byte, error) { return a.hsmPIN(f, flow) }, source, nil
}

// hsmPIN reads the HSM user PIN: in rehearsal from --hsm-pin-file or CUSTOS_HSM_PIN, otherwise from the
// terminal without echo.
func (a *app) hsmPIN(f *hsmFlags, flow string) ([]byte, error) {
	if f.rehearsal {
		if f.pinFile != "" {
			st, err := os.Stat(f.pinFile)
			if err != nil {
				return nil, fmt.Errorf("--hsm-pin-file: %w", err)
			}
			if st.Mode().Perm()&0o077 != 0 {
				return nil, fmt.Errorf("--hsm-pin-file %s: mode %v, want 0600", f.pinFile, st.Mode().Perm())
			}
			b, err := os.ReadFile(f.pinFile)
			if err != nil {
				return nil, fmt.Errorf("--hsm-pin-file: %w", err)
			}
			pin := bytes.TrimSpace(b)
			out := append([]byte{}, pin...)
			clear(b)
			return out, nil
		}
		if v, ok := os.LookupEnv("CUSTOS_HSM_PIN"); ok {
			return []byte(v), nil
		}
	}
	tty, err := a.openTTY()
	if err != nil {
		return nil, fmt.Errorf("%w: the HSM PIN is typed on a terminal (or use --protected-auth)", ceremony.ErrUsage)
	}
	defer tty.Close()
	fmt.Fprintf(a.stderr, "HSM user PIN for token %s (%s: custos logs in to the token): ", describeToken(f), flow)
	pin, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading the HSM PIN: %w", err)
	}
	return pin, nil
}

func describeToken(f *hsmFlags) string {
	if f.serial != "" {
		return fmt.Sprintf("serial %s", f.serial)
	}
	return fmt.Sprintf("%q", f.token)
}

// hsmError maps an ambiguous token to exit status 2.
func hsmError(err error) error {
	if errors.Is(err, hsm.ErrAmbiguousToken) {
		return usageError{err}
	}
	return err
}

func (a *app) hsmProbeCmd() *cobra.Command {
	var (
		f              hsmFlags
		active, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "probe --module LIB --token-serial S [--token LABEL] [--active] [--json]",
		Short: "Report what a token implements for importing a wrapped CA key",
		Long: `Report the token, its module and the module's SHA-256, and the mechanisms that matter for importing a
wrapped CA key, with their flags. With --active, known-answer tests on session objects only (all
destroyed) establish which mechanism number really is RFC 5649 here, whether the token's wrap matches
tink-go byte for byte, which OAEP hashes work, CKM_RSA_AES_KEY_WRAP, C_CreateObject of a secret key,
AES-CBC-PAD unwrap, whether a private key may be wrapped and whether an unwrap keeps the attributes it
was given; each with its evidence. Then the KEK transports and CA unwrap methods in preferred order and
whether the token can serve for generation.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.hsmConfig(&f, "hsm probe")
			if err != nil {
				return err
			}
			// SIGINT takes effect between the probe's tests; a PKCS#11 call in C runs to its end.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			r, err := hsm.RunProbe(ctx, cfg, active)
			if err != nil {
				return hsmError(err)
			}
			if asJSON {
				return a.printJSON(r)
			}
			fmt.Fprint(a.stdout, r.Text())
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&active, "active", false, "run the known-answer tests (session objects only)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
