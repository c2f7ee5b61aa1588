package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/card/sim"
	"github.com/custos-pki/custos/internal/softtoken"
)

// Rehearsal credentials: fixtures of virtual cards and software tokens, never secrets.
const (
	rehearsalPIN     = "24681012"
	rehearsalPUK     = "13572468"
	rehearsalHSMPIN  = "12340000"
	rehearsalHSMSO   = "87650000"
	rehearsalWitness = "Rehearsal Witness"
)

// rehearsal is one run of the whole life cycle on virtual cards and software tokens, driving the real
// custos binary step by step as an operator would.
type rehearsal struct {
	dir     string // everything the rehearsal makes
	custos  string // the custos binary
	self    string // this program, for the openCryptoki step
	caKey   string
	n, k    int
	env     []string
	stdout  io.Writer
	log     *os.File // every command's standard error
	steps   []stepTime
	serials []uint32
	seals   []string // record, seal
	records []string // record directories, in order
	module  string   // SoftHSM's module
	tokens  map[string]string
	through string // the last part to run
	// what the summary shows
	rosterSHA, manifestKey, caFingerprint string
	notes                                 []string
}

// phase is one part of the rehearsal.
type phase struct {
	name string
	run  func(context.Context) error
}

// throughParts are the values --through takes.
var throughParts = []string{"imports", "reshare", "rekey", "adoption", "retire"}

// stepTime is one command of the rehearsal and its wall time.
type stepTime struct {
	Name string
	Dur  time.Duration
}

func rehearseCmd() *cobra.Command {
	var (
		r    rehearsal
		keep string
	)
	c := &cobra.Command{
		Use:   "rehearse [--custodians N] [--threshold K] [--ca-key ALG] [--dir DIR]",
		Short: "Rehearse the whole life cycle on virtual YubiKeys and software tokens",
		Long: `rehearse runs the whole life cycle in a temporary directory (kept when --dir names one): it starts N
virtual cards and SoftHSM tokens, enrolls N custodians, builds a K-of-N roster, generates a CA key with a
root certificate, runs every custodian's share check, imports the key into a second SoftHSM token with K
cards and, for RSA keys, into openCryptoki's soft token (host-cbcpad, recorded as a deviation; openCryptoki
3.8.1 holds no EC keys). Then it reshares to 2 of 3 and imports from the new shares, rekeys to fresh card
keys and imports from the rekeyed shares, adopts a legacy CA key from two paper components and imports
it, and retires the card keys the rekey replaced, whose report calls the first two generations revoked.
It verifies every record, prints a summary with timings, fingerprints and seals, and stops all it
started. Every step is the real custos binary in rehearsal mode, as an operator would run it; every
artifact says REHEARSAL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r.stdout = cmd.OutOrStdout()
			if r.k < 2 || r.k > r.n || r.n < 3 || r.n > sim.MaxCards {
				return usagef("--threshold K and --custodians N need 2 <= K <= N, 3 <= N <= %d", sim.MaxCards)
			}
			if !slices.Contains(throughParts, r.through) {
				return usagef("--through %q: choose one of %s", r.through, strings.Join(throughParts, ", "))
			}
			var err error
			if r.custos, err = findCustos(); err != nil {
				return err
			}
			if r.self, err = os.Executable(); err != nil {
				return err
			}
			r.dir = keep
			if keep == "" {
				if r.dir, err = os.MkdirTemp("", "custos-rehearsal-"); err != nil {
					return err
				}
				defer os.RemoveAll(r.dir)
			} else if err := os.MkdirAll(keep, 0o700); err != nil {
				return err
			}
			return r.run(cmd.Context())
		},
	}
	c.Flags().IntVar(&r.n, "custodians", 5, "custodians and virtual cards")
	c.Flags().IntVar(&r.k, "threshold", 3, "shares needed")
	c.Flags().StringVar(&r.caKey, "ca-key", "rsa4096", "the CA key: rsa4096, rsa3072, p384 or p256")
	c.Flags().StringVar(&keep, "dir", "", "keep everything in DIR (must be empty or new)")
	c.Flags().StringVar(&r.through, "through", "retire", "stop after this part: imports (generation, checks, imports), reshare, rekey, adoption or retire (all)")
	return c
}

// findCustos finds the custos binary: beside this program (make build puts both in bin/), else on PATH.
func findCustos() (string, error) {
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "custos"); isFile(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("custos")
	if err != nil {
		return "", fmt.Errorf("the custos binary is neither beside custos-sim nor on PATH; run 'make build'")
	}
	return p, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// custos runs one custos command as a step of the rehearsal and returns its standard output.
func (r *rehearsal) custosStep(name string, args ...string) (string, error) {
	return r.exec(name, r.custos, args...)
}

func (r *rehearsal) exec(name, bin string, args ...string) (string, error) {
	return r.execCmd(name, exec.Command(bin, args...))
}

// execCmd runs a prepared command as a step, in the rehearsal's directory and environment.
func (r *rehearsal) execCmd(name string, cmd *exec.Cmd) (string, error) {
	fmt.Fprintf(r.log, "\n$ %s\n", strings.Join(cmd.Args, " "))
	cmd.Dir, cmd.Env = r.dir, append(cmd.Env, r.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errb, r.log)
	start := time.Now()
	err := cmd.Run()
	r.steps = append(r.steps, stepTime{name, time.Since(start)})
	if err != nil {
		last := strings.TrimSpace(errb.String())
		if i := strings.LastIndex(last, "\n"); i >= 0 {
			last = last[i+1:]
		}
		return "", fmt.Errorf("rehearsal step %q failed: %s (log: %s)", name, last, r.log.Name())
	}
	fmt.Fprintf(r.stdout, "  %-34s %8s\n", name, time.Since(start).Round(time.Millisecond))
	return out.String(), nil
}

// capture finds the first group of re in out.
func capture(out, re string) (string, error) {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if len(m) < 2 {
		return "", fmt.Errorf("rehearsal: %q not found in the output", re)
	}
	return m[1], nil
}

const sealRE = `seal +(SHA256:[A-Za-z0-9+/]{43})`

func (r *rehearsal) run(ctx context.Context) (err error) {
	if r.log, err = os.Create(filepath.Join(r.dir, "rehearsal.log")); err != nil {
		return err
	}
	defer r.log.Close()
	fmt.Fprintf(r.stdout, "custos rehearsal in %s: %d-of-%d, CA key %s\n", r.dir, r.k, r.n, r.caKey)

	// Virtual cards behind a private pcscd, and SoftHSM tokens, for this process and its children.
	os.Unsetenv("PCSCLITE_CSOCK_NAME")
	s, err := sim.Up(filepath.Join(r.dir, "sim"), sim.UpOptions{Cards: r.n})
	if err != nil {
		return err
	}
	defer func() {
		if derr := s.Down(); derr != nil && err == nil {
			err = derr
		}
	}()
	st, err := s.Status()
	if err != nil {
		return err
	}
	for _, c := range st.Cards {
		r.serials = append(r.serials, c.Serial)
	}
	hsmDir := filepath.Join(r.dir, "softhsm")
	if err := os.Mkdir(hsmDir, 0o700); err != nil {
		return err
	}
	soft, err := softtoken.OpenSoftHSM(hsmDir)
	if err != nil {
		return err
	}
	r.tokens = map[string]string{}
	for _, label := range []string{"rehearsal-source", "rehearsal-target", "rehearsal-reshared", "rehearsal-rekeyed", "rehearsal-adopted"} {
		t, err := soft.NewToken(label, rehearsalHSMSO, rehearsalHSMPIN)
		if err != nil {
			return err
		}
		r.module, r.tokens[label] = t.Module, t.Serial
	}
	r.env = append(os.Environ(), "CUSTOS_SIM_DIR="+filepath.Join(r.dir, "sim"))
	for _, f := range []struct{ name, body string }{{"hsm.pin", rehearsalHSMPIN + "\n"}, {"cards.pin", "* " + rehearsalPIN + "\n"}} {
		if err := os.WriteFile(filepath.Join(r.dir, f.name), []byte(f.body), 0o600); err != nil {
			return err
		}
	}
	started := time.Now()
	phases := []phase{
		{"enroll", r.enroll}, {"generation", r.generate}, {"checks", r.checks}, {"imports", r.imports}, {"verify", r.verify},
		{"reshare", r.reshare}, {"rekey", r.rekey}, {"adoption", r.adopt}, {"retire", r.retire},
	}
	last := slices.IndexFunc(phases, func(p phase) bool { return p.name == r.through })
	if r.through == "imports" {
		last++ // the imports and their verification
	}
	for _, phase := range phases[:last+1] {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := phase.run(ctx); err != nil {
			return err
		}
	}
	r.summary(time.Since(started))
	return nil
}

// names are the custodians' names.
func (r *rehearsal) name(i int) string {
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "lena", "mallory", "nina", "oscar", "peggy"}
	return names[i]
}

func (r *rehearsal) enroll(context.Context) error {
	fmt.Fprintln(r.stdout, "enrollment")
	env := r.env
	r.env = append(r.env, "CUSTOS_PIN=123456", "CUSTOS_NEW_PIN="+rehearsalPIN, "CUSTOS_NEW_PUK="+rehearsalPUK)
	defer func() { r.env = env }()
	args := []string{"roster", "create", "--rehearsal", "--threshold", fmt.Sprint(r.k), "-o", "roster.json"}
	for i, serial := range r.serials {
		if _, err := r.custosStep("card enroll "+r.name(i), "card", "enroll", "--rehearsal", "--serial", fmt.Sprint(serial), "--name", r.name(i), "-o", r.name(i)+".json"); err != nil {
			return err
		}
		args = append(args, r.name(i)+".json")
	}
	out, err := r.custosStep("roster create", args...)
	if err != nil {
		return err
	}
	r.rosterSHA, err = capture(out, `([0-9a-f]{64})  roster.json`)
	return err
}

// record remembers a record directory and its seal.
func (r *rehearsal) record(dir, out string) (string, error) {
	seal, err := capture(out, sealRE)
	if err != nil {
		return "", err
	}
	r.records = append(r.records, dir)
	r.seals = append(r.seals, dir, seal)
	return seal, nil
}

func (r *rehearsal) hsmArgs(label string) []string {
	return []string{"--module", r.module, "--token-serial", r.tokens[label], "--hsm-pin-file", "hsm.pin"}
}

func (r *rehearsal) generate(context.Context) error {
	fmt.Fprintln(r.stdout, "generation")
	args := append([]string{"ceremony", "generate", "--rehearsal", "--roster", "roster.json", "--expect-roster-sha256", r.rosterSHA,
		"--ca-key", r.caKey, "--subject", "CN=Custos Rehearsal Root CA,O=Custos Rehearsal", "--validity", "87600h",
		"--witness", rehearsalWitness, "--pin-file", "cards.pin", "--out", "generation"}, r.hsmArgs("rehearsal-source")...)
	out, err := r.custosStep("ceremony generate", args...)
	if err != nil {
		return err
	}
	if r.manifestKey, err = capture(out, `manifest key +(SHA256:\S+)`); err != nil {
		return err
	}
	if r.caFingerprint, err = capture(out, `CA fingerprint +(SHA256:\S+)`); err != nil {
		return err
	}
	_, err = r.record("generation", out)
	return err
}

func (r *rehearsal) checks(context.Context) error {
	fmt.Fprintln(r.stdout, "share checks")
	for i, serial := range r.serials {
		_, err := r.custosStep("share check "+r.name(i), "share", "check", "--rehearsal", "--ceremony", "generation",
			"--expect-seal", r.seals[1], "--serial", fmt.Sprint(serial), "--pin-file", "cards.pin", "-o", r.name(i)+".receipt")
		if err != nil {
			return err
		}
	}
	return nil
}

// quorum returns the --serial flags of the first k cards.
func (r *rehearsal) quorum() []string {
	var out []string
	for _, s := range r.serials[:r.k] {
		out = append(out, "--serial", fmt.Sprint(s))
	}
	return out
}

func (r *rehearsal) imports(ctx context.Context) error {
	fmt.Fprintln(r.stdout, "imports")
	seal := r.seals[1]
	args := append(append([]string{"ceremony", "import", "--rehearsal", "--ceremony", "generation", "--expect-seal", seal,
		"--pin-file", "cards.pin", "--out", "import-softhsm"}, r.hsmArgs("rehearsal-target")...), r.quorum()...)
	out, err := r.custosStep("ceremony import (SoftHSM)", args...)
	if err != nil {
		return err
	}
	if _, err := r.record("import-softhsm", out); err != nil {
		return err
	}
	if !strings.HasPrefix(r.caKey, "rsa") {
		r.notes = append(r.notes, "openCryptoki 3.8.1's soft token cannot hold EC keys: the import into it is not part of an EC rehearsal")
		return nil
	}
	// openCryptoki runs with this host's installation hidden, in namespaces of its own: this program
	// starts there, prepares the soft token and runs the import.
	ock, release, err := softtoken.OpenCryptokiCommand(ctx, r.self, append([]string{"ock-exec", "--label", "rehearsal-ock", "--", r.custos,
		"ceremony", "import", "--rehearsal", "--ceremony", "generation", "--expect-seal", seal, "--pin-file", "cards.pin",
		"--module", softtoken.OpenCryptokiModule, "--token", "rehearsal-ock", "--hsm-pin-file", "hsm.pin",
		"--kek-transport", "oaep", "--ca-unwrap", "host-cbcpad", "--allow-host-unwrap", "--out", "import-opencryptoki"}, r.quorum()...)...)
	if err != nil {
		return err
	}
	defer release()
	out, err = r.execCmd("ceremony import (openCryptoki)", ock)
	if err != nil {
		return err
	}
	if _, err := r.record("import-opencryptoki", out); err != nil {
		return err
	}
	r.notes = append(r.notes, "openCryptoki 3.8.1 has no RFC 5649 unwrap: its import unwrapped the CA key on the host (host-cbcpad), recorded as a deviation")
	return nil
}

func (r *rehearsal) verify(context.Context) error {
	fmt.Fprintln(r.stdout, "verification")
	args := []string{"transcript", "verify", "generation", "import-softhsm"}
	for i := range r.serials {
		args = append(args, "--receipt", r.name(i)+".receipt")
	}
	if _, err := r.custosStep("transcript verify (chain, receipts)", args...); err != nil {
		return err
	}
	if len(r.records) > 2 {
		if _, err := r.custosStep("transcript verify (openCryptoki)", "transcript", "verify", "generation", "import-opencryptoki"); err != nil {
			return err
		}
	}
	return nil
}

func (r *rehearsal) summary(total time.Duration) {
	fmt.Fprintf(r.stdout, "\nREHEARSAL complete in %s: nothing here may be used in production.\n", total.Round(time.Millisecond))
	fmt.Fprintf(r.stdout, "roster sha256   %s\nmanifest key    %s\nCA fingerprint  %s\n", r.rosterSHA, r.manifestKey, r.caFingerprint)
	for i := 0; i+1 < len(r.seals); i += 2 {
		fmt.Fprintf(r.stdout, "seal %-22s %s\n", r.seals[i], r.seals[i+1])
	}
	for _, n := range r.notes {
		fmt.Fprintf(r.stdout, "note: %s\n", n)
	}
}

// sealOf returns the seal of a record the rehearsal made.
func (r *rehearsal) sealOf(dir string) string {
	for i := 0; i+1 < len(r.seals); i += 2 {
		if r.seals[i] == dir {
			return r.seals[i+1]
		}
	}
	return ""
}

// importInto imports the CA key of the chain of records into a fresh SoftHSM token with the first two
// cards of serials, and verifies the chain.
func (r *rehearsal) importInto(name, token string, serials []uint32, chain ...string) error {
	args := []string{"ceremony", "import", "--rehearsal", "--expect-seal", r.sealOf(chain[len(chain)-1]), "--pin-file", "cards.pin", "--out", name}
	for _, c := range chain {
		args = append(args, "--ceremony", c)
	}
	for _, s := range serials {
		args = append(args, "--serial", fmt.Sprint(s))
	}
	out, err := r.custosStep("ceremony import ("+name+")", append(args, r.hsmArgs(token)...)...)
	if err != nil {
		return err
	}
	if _, err := r.record(name, out); err != nil {
		return err
	}
	_, err = r.custosStep("transcript verify ("+name+")", append(append([]string{"transcript", "verify"}, chain...), name)...)
	return err
}

// reshare gives the KEK to a 2-of-3 roster of the first three custodians (the same keys: a reshare does
// not revoke), and imports from two of the new shares.
func (r *rehearsal) reshare(context.Context) error {
	fmt.Fprintln(r.stdout, "reshare (3 of 5 to 2 of 3)")
	out, err := r.custosStep("roster create (2 of 3)", "roster", "create", "--rehearsal", "--threshold", "2", "-o", "roster-reshare.json",
		r.name(0)+".json", r.name(1)+".json", r.name(2)+".json")
	if err != nil {
		return err
	}
	sha, err := capture(out, `([0-9a-f]{64})  roster-reshare.json`)
	if err != nil {
		return err
	}
	out, err = r.custosStep("ceremony reshare", "ceremony", "reshare", "--rehearsal", "--ceremony", "generation", "--expect-seal", r.sealOf("generation"),
		"--roster", "roster-reshare.json", "--expect-roster-sha256", sha, "--witness", rehearsalWitness, "--pin-file", "cards.pin", "--out", "reshare")
	if err != nil {
		return err
	}
	if _, err := r.record("reshare", out); err != nil {
		return err
	}
	return r.importInto("import-reshare", "rehearsal-reshared", r.serials[1:3], "generation", "reshare")
}

// rekey gives the CA key a new KEK and the last three custodians fresh decryption keys on their cards, revoking
// the shares of both earlier generations, and imports from two of the rekeyed shares.
func (r *rehearsal) rekey(context.Context) error {
	fmt.Fprintln(r.stdout, "rekey (fresh card keys, 2 of 3)")
	env := r.env
	r.env = append(r.env, "CUSTOS_PIN="+rehearsalPIN)
	args := []string{"roster", "create", "--rehearsal", "--threshold", "2", "-o", "roster-rekey.json"}
	for i := r.n - 3; i < r.n; i++ {
		name := r.name(i) + "-2"
		if _, err := r.custosStep("card enroll --decryption-key-only "+name, "card", "enroll", "--rehearsal", "--decryption-key-only",
			"--serial", fmt.Sprint(r.serials[i]), "--name", name, "-o", name+".json"); err != nil {
			r.env = env
			return err
		}
		args = append(args, name+".json")
	}
	r.env = env
	out, err := r.custosStep("roster create (fresh keys)", args...)
	if err != nil {
		return err
	}
	sha, err := capture(out, `([0-9a-f]{64})  roster-rekey.json`)
	if err != nil {
		return err
	}
	out, err = r.custosStep("ceremony rekey", append([]string{"ceremony", "rekey", "--rehearsal", "--ceremony", "generation", "--ceremony", "reshare",
		"--expect-seal", r.sealOf("reshare"), "--roster", "roster-rekey.json", "--expect-roster-sha256", sha, "--witness", rehearsalWitness,
		"--pin-file", "cards.pin", "--out", "rekey"}, r.hsmArgs("rehearsal-source")...)...)
	if err != nil {
		return err
	}
	if _, err := r.record("rekey", out); err != nil {
		return err
	}
	return r.importInto("import-rekey", "rehearsal-rekeyed", r.serials[r.n-2:], "generation", "reshare", "rekey")
}

// retire destroys the first generation's card keys (slot 0x82 on every card), which the rekey replaced,
// giving each retirement the earlier ones, and reports the first two generations revoked.
func (r *rehearsal) retire(context.Context) error {
	fmt.Fprintln(r.stdout, "card retire (the keys the rekey replaced)")
	var earlier []string
	var out string
	for i, serial := range r.serials {
		dir := fmt.Sprintf("retire-%s", r.name(i))
		args := []string{"card", "retire", "--rehearsal", "--serial", fmt.Sprint(serial), "--slot", "1",
			"--ceremony", "generation", "--ceremony", "reshare", "--ceremony", "rekey", "--expect-seal", r.sealOf("rekey"),
			"--witness", rehearsalWitness, "--pin-file", "cards.pin", "--out", dir}
		for _, e := range earlier {
			args = append(args, "--ceremony", e)
		}
		var err error
		if out, err = r.custosStep("card retire "+r.name(i), args...); err != nil {
			return err
		}
		earlier = append(earlier, dir)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "ceremony ") && strings.Contains(line, " generation ") {
			r.notes = append(r.notes, "after the retirements, "+line)
		}
	}
	return nil
}
