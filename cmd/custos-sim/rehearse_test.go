package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

// builtDir is where built put the binaries; TestMain removes it.
var builtDir string

// built holds the custos and custos-sim binaries, built once per test process the way `make build` does.
var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "custos-rehearse-bin-")
	if err != nil {
		return "", err
	}
	builtDir = dir
	for _, c := range []string{"custos", "custos-sim"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "github.com/custos-pki/custos/cmd/"+c).CombinedOutput()
		if err != nil {
			return "", &buildError{c, string(out)}
		}
	}
	return dir, nil
})

type buildError struct{ cmd, out string }

func (e *buildError) Error() string { return "building " + e.cmd + ": " + e.out }

// rehearse runs `custos-sim rehearse` as `make rehearsal` does, keeping its directory.
func rehearse(t testing.TB, dir string, args ...string) (string, string) {
	t.Helper()
	testenv.RequireTool(t, "pcscd")
	bin, err := built()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "custos-sim"), append([]string{"rehearse", "--dir", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = withoutSim(os.Environ())
	if err := cmd.Run(); err != nil {
		t.Fatalf("custos-sim rehearse: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// withoutSim drops the variables of another sim from an environment.
func withoutSim(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PCSCLITE_CSOCK_NAME=") && !strings.HasPrefix(kv, "CUSTOS_SIM_DIR=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestRehearsalThroughImports runs the rehearsal of the generation and import ceremonies (RSA-3072,
// so that the openCryptoki import is part of it; `make rehearsal`'s default is RSA-4096), then shows that
// it prints the seals, that no KEK, share, check token, PIN or CA private key (PKCS#8 or a private
// value) is in the records, logs or output (the scanner's positive control proving it would find
// them), and that no KEK, transport key or session copy is left in a token.
func TestRehearsalThroughImports(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rehearsal")
	stdout, stderr := rehearse(t, dir, "--ca-key", "rsa3072", "--through", "imports")
	for _, want := range []string{"REHEARSAL complete", "seal generation ", "seal import-softhsm ", "seal import-opencryptoki ",
		"recorded as a deviation"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	scanRehearsal(t, dir, stdout, stderr, []string{"generation"}, nil)

	// No KEK, transport key or session copy in the SoftHSM tokens: the source holds nothing, the target
	// the CA key, its public key and its certificate. (SoftHSM reads its configuration once per process:
	// only this test lists tokens.)
	t.Setenv("SOFTHSM2_CONF", filepath.Join(dir, "softhsm", "softhsm2.conf"))
	for label, want := range map[string]int{"rehearsal-source": 0, "rehearsal-target": 3} {
		serial := tokenSerial(t, stdout, dir, label)
		objs := testenv.ListObjects(t, "/usr/lib/softhsm/libsofthsm2.so", serial, rehearsalHSMPIN)
		if len(objs) != want {
			t.Errorf("token %s holds %d objects, want %d: %v", label, len(objs), want, objs)
		}
		for _, o := range objs {
			if o.Class == 4 || !o.Token {
				t.Errorf("token %s keeps %v", label, o)
			}
		}
	}
}

// TestRehearsal runs the whole rehearsal `make rehearsal` runs (P-256 here): generation, checks,
// imports, a reshare, a rekey and an adoption each with an import, and the retirement of the keys the
// rekey replaced. It prints every seal and calls the first two generations revoked; their share files
// no longer open on the cards; and no KEK, share, check token, PIN, CA private key or legacy component
// is in the records, logs or output.
func TestRehearsal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rehearsal")
	stdout, stderr := rehearse(t, dir, "--ca-key", "p256")
	for _, want := range []string{"REHEARSAL complete", "seal generation ", "seal import-softhsm ",
		"seal reshare ", "seal import-reshare ", "seal rekey ", "seal import-rekey ", "seal adoption ", "seal import-adoption ",
		"generation 1 (latest 3): 0 of 5 members can still open their shares, 3 needed: REVOKED",
		"generation 2 (latest 3): 0 of 3 members can still open their shares, 2 needed: REVOKED"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	scanRehearsal(t, dir, stdout, stderr, []string{"rekey", "adoption"}, []string{"generation", "reshare"})
}

// scanRehearsal brings a finished rehearsal's cards back and learns its secrets: the KEKs of current
// (the records whose quorum can still open), the CA keys they wrap, every share and check token of
// current (retired's must no longer open), the legacy components of an adoption and the rehearsal's
// PINs. Then it scans the rehearsal's directory and output for them, after the scanner's positive
// control, leaving out only the inputs that hold secrets by design and the state of the virtual cards
// and software tokens, which play the hardware.
func scanRehearsal(t *testing.T, dir, stdout, stderr string, current, retired []string) {
	bin, _ := built()
	custos := filepath.Join(bin, "custos")
	up := exec.Command(filepath.Join(bin, "custos-sim"), "up", "--dir", filepath.Join(dir, "sim"))
	up.Env = withoutSim(os.Environ())
	exports, err := up.Output()
	if err != nil {
		t.Fatalf("custos-sim up: %v", err)
	}
	defer exec.Command(filepath.Join(bin, "custos-sim"), "down", "--dir", filepath.Join(dir, "sim")).Run()
	env := append(withoutSim(os.Environ()), "CUSTOS_PIN="+rehearsalPIN, "CUSTOS_SIM_DIR="+filepath.Join(dir, "sim"))
	for _, m := range regexp.MustCompile(`export (PCSCLITE_CSOCK_NAME)='([^']+)'`).FindAllStringSubmatch(string(exports), -1) {
		env = append(env, m[1]+"="+m[2])
	}
	secrets := t.TempDir() // outside the rehearsal's directory
	var found []testenv.Secret
	for _, record := range current {
		kek := filepath.Join(secrets, record+".kek")
		c := exec.Command(custos, "combine", "--rehearsal", "--ceremony", filepath.Join(dir, record), "--pin-file", filepath.Join(dir, "cards.pin"), "--out", kek)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("combine %s: %v: %s", record, err, out)
		}
		kb, _ := os.ReadFile(kek)
		found = append(found, testenv.Secret{Name: "KEK of " + record, Value: kb})
		found = append(found, caKeySecrets(t, kb, filepath.Join(dir, record, "ca-key.wrapped"))...)
	}
	found = append(found, shareSecrets(t, custos, dir, env, current, retired)...)
	if comps, err := os.ReadFile(filepath.Join(dir, "legacy", "components")); err == nil {
		for i, line := range strings.Split(strings.TrimSpace(string(comps)), "\n") {
			hexValue, _, _ := strings.Cut(line, " ")
			v, err := hex.DecodeString(hexValue)
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, testenv.Secret{Name: fmt.Sprintf("legacy component %d", i+1), Value: v})
		}
	}
	for _, p := range []string{rehearsalPIN, rehearsalPUK, rehearsalHSMPIN} {
		found = append(found, testenv.Secret{Name: "PIN " + p[:2] + "…", Value: []byte(p)})
	}
	os.WriteFile(filepath.Join(secrets, "stdout"), []byte(stdout), 0o600)
	os.WriteFile(filepath.Join(secrets, "stderr"), []byte(stderr), 0o600)
	s, err := testenv.NewScanner(found...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PositiveControl(found...); err != nil {
		t.Fatal(err)
	}
	findings, err := s.ScanPaths([]string{dir, filepath.Join(secrets, "stdout"), filepath.Join(secrets, "stderr")},
		filepath.Join(dir, "cards.pin"), filepath.Join(dir, "hsm.pin"), filepath.Join(dir, "legacy"), filepath.Join(dir, "sim"), filepath.Join(dir, "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("secret found: %s", f)
	}
	t.Logf("scanned for %d secrets: none found", len(found))
}

// caKeySecrets unwraps the CA key with the KEK and returns its PKCS#8 DER and private values.
func caKeySecrets(t *testing.T, kek []byte, wrapped string) []testenv.Secret {
	b, err := os.ReadFile(wrapped)
	if err != nil {
		t.Fatal(err)
	}
	f, err := wrap.ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := wrap.Unwrap(kek, f.Blob)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := wrap.SplitQuirk(plain)
	if err != nil {
		t.Fatal(err)
	}
	out := []testenv.Secret{{Name: "CA key PKCS#8", Value: der}}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string, n *big.Int) {
		out = append(out, testenv.Secret{Name: "CA key " + name, Value: n.Bytes()})
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		add("d", k.D)
		add("p", k.Primes[0])
		add("q", k.Primes[1])
		add("dp", k.Precomputed.Dp)
		add("dq", k.Precomputed.Dq)
		add("qinv", k.Precomputed.Qinv)
	case *ecdsa.PrivateKey:
		b, _ := k.Bytes()
		out = append(out, testenv.Secret{Name: "CA key d", Value: b})
	}
	return out
}

// shareSecrets opens every share and check token of the current records with the stock age CLI and
// custos in plugin mode on the virtual cards, and returns the shares, the tokens and their plaintexts;
// the files of the retired records must no longer open.
func shareSecrets(t *testing.T, custos, dir string, env []string, current, retired []string) []testenv.Secret {
	age := testenv.RequireTool(t, "age")
	plugins := t.TempDir()
	if err := os.Symlink(custos, filepath.Join(plugins, "age-plugin-yubikey")); err != nil {
		t.Fatal(err)
	}
	env = append(env, "PATH="+plugins+string(os.PathListSeparator)+os.Getenv("PATH"))
	records, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var out []testenv.Secret
	opened, refused := 0, 0
	for _, rec := range records {
		var r struct {
			Name     string `json:"name"`
			Identity string `json:"identity"`
		}
		b, _ := os.ReadFile(rec)
		if json.Unmarshal(b, &r) != nil || r.Identity == "" {
			continue
		}
		id := filepath.Join(t.TempDir(), "identity")
		os.WriteFile(id, []byte(r.Identity+"\n"), 0o600)
		for _, record := range append(append([]string{}, current...), retired...) {
			if _, err := os.Stat(filepath.Join(dir, record, "shares", r.Name+".age")); err != nil {
				continue
			}
			isRetired := slices.Contains(retired, record)
			for _, kind := range []struct{ dir, field string }{{"shares", "share"}, {"checks", "token"}} {
				c := exec.Command(age, "-d", "-i", id, filepath.Join(dir, record, kind.dir, r.Name+".age"))
				c.Env = env
				plain, err := c.Output()
				if isRetired {
					// card retire destroyed these keys: the file opens no more.
					if err == nil {
						t.Errorf("%s/%s/%s still opens after its card key was retired", record, kind.dir, r.Name)
					}
					refused++
					continue
				}
				if err != nil {
					t.Fatalf("age -d %s/%s/%s: %v", record, kind.dir, r.Name, err)
				}
				var v map[string]any
				if err := json.Unmarshal(plain, &v); err != nil {
					t.Fatal(err)
				}
				raw, err := base64.StdEncoding.DecodeString(v[kind.field].(string))
				if err != nil {
					t.Fatal(err)
				}
				name := record + "/" + kind.dir + "/" + r.Name
				out = append(out, testenv.Secret{Name: name, Value: raw}, testenv.Secret{Name: name + " plaintext", Value: plain})
				opened++
			}
		}
	}
	if opened == 0 || (len(retired) > 0 && refused == 0) {
		t.Fatalf("opened %d files and saw %d refused; want some of each that applies", opened, refused)
	}
	t.Logf("opened %d share and check files; %d files of retired keys stayed shut", opened, refused)
	return out
}

// tokenSerial reads a SoftHSM token's serial from the rehearsal's import record.
func tokenSerial(t *testing.T, stdout, dir, label string) string {
	b, err := os.ReadFile(filepath.Join(dir, "rehearsal.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`--token-serial ([0-9a-f]+)`).FindAllStringSubmatch(string(b), -1)
	// The log's first --token-serial is the source (generation), the second the target (import).
	i := map[string]int{"rehearsal-source": 0, "rehearsal-target": 1}[label]
	if len(m) <= i {
		t.Fatalf("no token serial for %s in the log", label)
	}
	return m[i][1]
}

// side says whose time a step of a flow mostly is: the cards' (the emulator and PC/SC included), the
// HSM's (SoftHSM's PKCS#11 calls), or custos's own.
func side(step string) string {
	root, _, _ := strings.Cut(step, "/")
	switch root {
	case "liveness", "check-round", "quorum", "combine", "slot", "attestation":
		return "card"
	case "token", "kek", "ca-key", "wrap", "trial-import", "certificate", "destroy", "import", "rewrap", "adopt":
		return "hsm"
	}
	return "custos"
}

// recordOf returns the record a rehearsal command writes, for the commands that write one.
func recordOf(name string) (string, bool) {
	switch {
	case name == "ceremony generate":
		return "generation", true
	case name == "ceremony import (SoftHSM)":
		return "import-softhsm", true
	case name == "ceremony import (openCryptoki)":
		return "import-opencryptoki", true
	case strings.HasPrefix(name, "ceremony import ("):
		return strings.TrimSuffix(strings.TrimPrefix(name, "ceremony import ("), ")"), true
	case name == "ceremony reshare", name == "ceremony rekey":
		return strings.TrimPrefix(name, "ceremony "), true
	case name == "ceremony adopt":
		return "adoption", true
	case strings.HasPrefix(name, "card retire "):
		return "retire-" + strings.TrimPrefix(name, "card retire "), true
	}
	return "", false
}

// commandSide says whose time a whole rehearsal command is, for the commands that write no transcript.
func commandSide(name string) string {
	switch {
	case strings.HasPrefix(name, "card enroll"), strings.HasPrefix(name, "share check"):
		return "card"
	}
	return "custos"
}

// BenchmarkRehearseP384 times `custos-sim rehearse --ca-key p384` by step and splits the wall time into
// the cards' (emulator and PC/SC included), the HSM's and custos's own, from the per-command times the
// rehearsal logs and the per-step times of the generation and import transcripts. Target: custos's own
// share under 10 % (docs/performance.md).
func BenchmarkRehearseP384(b *testing.B) {
	var card, hsm, own, total time.Duration
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), "rehearsal")
		start := time.Now()
		stdout, _ := rehearse(b, dir, "--ca-key", "p384")
		total += time.Since(start)
		steps := map[string]time.Duration{}
		for _, m := range regexp.MustCompile(`(?m)^  (.+?) +([0-9.]+m?s)$`).FindAllStringSubmatch(stdout, -1) {
			d, err := time.ParseDuration(m[2])
			if err != nil {
				b.Fatal(err)
			}
			steps[strings.TrimSpace(m[1])] = d
		}
		for name, d := range steps {
			rec, ok := recordOf(name)
			if !ok {
				if commandSide(name) == "card" {
					card += d
				} else {
					own += d
				}
				if i == 0 {
					b.Logf("%-24s %-28s %-6s %8s", name, "(whole command)", commandSide(name), d)
				}
				continue
			}
			byStep := stepTimes(b, filepath.Join(dir, rec, "transcript.jsonl"))
			var inSteps time.Duration
			for step, sd := range byStep {
				inSteps += sd
				switch side(step) {
				case "card":
					card += sd
				case "hsm":
					hsm += sd
				default:
					own += sd
				}
				if i == 0 {
					b.Logf("%-24s %-28s %-6s %8s", name, step, side(step), sd.Round(time.Microsecond))
				}
			}
			own += d - inSteps // starting the process, reading inputs, the seal and the report
			if i == 0 {
				b.Logf("%-24s %-28s %-6s %8s", name, "(outside the steps)", "custos", (d - inSteps).Round(time.Microsecond))
			}
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(total/n)/1e6, "ms/rehearsal")
	b.ReportMetric(float64(card/n)/1e6, "card-ms")
	b.ReportMetric(float64(hsm/n)/1e6, "hsm-ms")
	b.ReportMetric(float64(own/n)/1e6, "custos-ms")
	b.ReportMetric(100*float64(own)/float64(card+hsm+own), "custos-%")
}

// stepTimes reads a transcript and returns the time spent on each step: from the event before to the
// step's (last) event.
func stepTimes(b *testing.B, path string) map[string]time.Duration {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]time.Duration{}
	var prev time.Time
	for i, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var e struct {
			Time string `json:"time"`
			Step string `json:"step"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			b.Fatal(err)
		}
		t, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			out[e.Step] += t.Sub(prev)
		}
		prev = t
	}
	return out
}
