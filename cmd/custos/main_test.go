package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// TestMain runs the tests with a sim of eight virtual cards (the card scripts, cards_*.txtar, take them
// in turn with "sim lock"), and serves the custos and age-plugin-yubikey commands to the scripts.
func TestMain(m *testing.M) {
	testscript.Main(withSim{m}, map[string]func(){
		"custos":          func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		card.PluginBinary: func() { os.Exit(runPlugin(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// withSim runs the tests with the sim up.
type withSim struct{ m *testing.M }

func (w withSim) Run() int {
	return testenv.RunWithSim(w.m, testenv.SimOptions{Cards: 8, FirstSerial: 9000001})
}

// TestScripts runs the CLI scripts in testdata/script: each reads as documentation of one behaviour.
func TestScripts(t *testing.T) {
	testenv.RunScripts(t, filepath.Join("..", "..", "testdata", "script"), map[string]func(*testscript.TestScript, bool, []string){
		"forgeshare":  cmdForgeShare,
		"resign":      cmdResign,
		"manifestkey": cmdManifestKey,
		"relist":      cmdRelist,
		"checkvalues": cmdCheckValues,
		"components":  cmdComponents,
	})
}

func readManifest(ts *testscript.TestScript, dir string) *shares.Manifest {
	m, err := shares.ParseManifest([]byte(ts.ReadFile(filepath.Join(dir, "manifest.json"))))
	ts.Check(err)
	return m
}

func writeManifest(ts *testscript.TestScript, dir string, m *shares.Manifest, key ed25519.PrivateKey) {
	b, err := m.Sign(key)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(filepath.Join(dir, "manifest.json")), b, 0o600))
}

// cmdForgeShare: forgeshare DIR NAME IDENTITY SECRET x0|y
//
// Rewrites NAME's share envelope with x = 0 or a changed y, encrypts it correctly to NAME (so age
// accepts it), and records the new file's SHA-256 in a validly re-signed manifest. Only the commitment
// can catch it.
func cmdForgeShare(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: forgeshare DIR NAME IDENTITY SECRET x0|y")
	}
	dir, name, mode := args[0], args[1], args[4]
	ids, err := age.ParseIdentities(bytes.NewReader([]byte(ts.ReadFile(args[2]))))
	ts.Check(err)
	file := filepath.Join(dir, "shares", name+".age")
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader([]byte(ts.ReadFile(file)))), ids...)
	ts.Check(err)
	plain, err := io.ReadAll(r)
	ts.Check(err)
	env, err := shares.ParseEnvelope(plain)
	ts.Check(err)
	switch mode {
	case "x0":
		env.X = 0
	case "y":
		env.Share[0] ^= 0x80
	default:
		ts.Fatalf("forgeshare: mode %q", mode)
	}
	plain, err = env.Marshal()
	ts.Check(err)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, ids[0].(*age.X25519Identity).Recipient())
	ts.Check(err)
	w.Write(plain)
	ts.Check(w.Close())
	ts.Check(aw.Close())
	ts.Check(os.WriteFile(ts.MkAbs(file), buf.Bytes(), 0o600))

	m := readManifest(ts, dir)
	e, ok := m.Custodian(name)
	if !ok {
		ts.Fatalf("forgeshare: %s not in manifest", name)
	}
	e.Share.FileSHA256 = shares.FileSHA256(buf.Bytes())
	key, err := shares.DeriveManifestKey([]byte(ts.ReadFile(args[3])), m.CeremonyID)
	ts.Check(err)
	writeManifest(ts, dir, m, key)
}

// cmdResign: resign DIR — re-signs the manifest with a new random manifest key, as an attacker who
// changed it would.
func cmdResign(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: resign DIR")
	}
	m := readManifest(ts, args[0])
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	ts.Check(err)
	m.ManifestKey = pub
	writeManifest(ts, args[0], m, key)
}

// cmdManifestKey: manifestkey SECRET DIR — fails unless the key derived from SECRET is the manifest key
// that signed DIR's manifest; prints its fingerprint.
func cmdManifestKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: manifestkey SECRET DIR")
	}
	m := readManifest(ts, args[1]) // verifies the signature under m.ManifestKey
	key, err := shares.DeriveManifestKey([]byte(ts.ReadFile(args[0])), m.CeremonyID)
	ts.Check(err)
	if !bytes.Equal(key.Public().(ed25519.PublicKey), m.ManifestKey) {
		ts.Fatalf("the key derived from %s is not the manifest key of %s", args[0], args[1])
	}
	fp, err := m.ManifestKeyFingerprint()
	ts.Check(err)
	ts.Logf("manifest key %s derives from %s", fp, args[0])
}

// cmdRelist: relist DIR NAME SECRET — records the current SHA-256 of NAME's share file in DIR's manifest
// and re-signs it validly with the manifest key derived from SECRET.
func cmdRelist(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: relist DIR NAME SECRET")
	}
	m := readManifest(ts, args[0])
	e, ok := m.Custodian(args[1])
	if !ok {
		ts.Fatalf("relist: %s not in manifest", args[1])
	}
	e.Share.FileSHA256 = shares.FileSHA256([]byte(ts.ReadFile(filepath.Join(args[0], e.Share.File))))
	key, err := shares.DeriveManifestKey([]byte(ts.ReadFile(args[2])), m.CeremonyID)
	ts.Check(err)
	writeManifest(ts, args[0], m, key)
}

// cmdCheckValues: checkvalues N — the last stdout must list N lines "cmac:HEX  PATH", and each HEX must be
// the check value of the file at PATH.
func cmdCheckValues(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: checkvalues N")
	}
	lines := regexp.MustCompile(`(?m)^(cmac:[0-9a-f]{10})  (\S+)$`).FindAllStringSubmatch(ts.ReadFile("stdout"), -1)
	if fmt.Sprint(len(lines)) != args[0] {
		ts.Fatalf("checkvalues: %d check value lines, want %s", len(lines), args[0])
	}
	for _, l := range lines {
		kcv, err := wrap.KCV([]byte(ts.ReadFile(l[2])))
		ts.Check(err)
		if kcv.String() != l[1] {
			ts.Fatalf("checkvalues: %s has %s, printed %s", l[2], kcv, l[1])
		}
	}
}

// cmdComponents: components TTYFILE PREFIX N — the terminal output of an export must show N components,
// each exactly once and each followed by a screen clear before the next holder is asked; writes them to
// PREFIX.1 … PREFIX.N.
func cmdComponents(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: components TTYFILE PREFIX N")
	}
	out := ts.ReadFile(args[0])
	re := regexp.MustCompile(`Component (\d+) of (\d+) for (\S+):\r\n\r\n    ([0-9a-f ]+)\r\n\r\n    check value (cmac:[0-9a-f]{10})`)
	found := re.FindAllStringSubmatchIndex(out, -1)
	if fmt.Sprint(len(found)) != args[2] {
		ts.Fatalf("components: %d shown, want %s", len(found), args[2])
	}
	for i, loc := range found {
		m := func(g int) string { return out[loc[2*g]:loc[2*g+1]] }
		if m(1) != fmt.Sprint(i+1) {
			ts.Fatalf("components: component %s shown in place %d", m(1), i+1)
		}
		raw, err := hex.DecodeString(strings.ReplaceAll(m(4), " ", ""))
		ts.Check(err)
		if strings.Count(out, m(4)) != 1 {
			ts.Fatalf("components: component %d shown more than once", i+1)
		}
		kcv, err := wrap.KCV(raw)
		ts.Check(err)
		if kcv.String() != m(5) {
			ts.Fatalf("components: component %d shown with check value %s, it is %s", i+1, m(5), kcv)
		}
		// The screen is cleared after the component, before anything else is shown.
		rest := out[loc[1]:]
		if c := strings.Index(rest, "\033[H\033[2J\033[3J"); c < 0 || (i+1 < len(found) && c > found[i+1][0]-loc[1]) {
			ts.Fatalf("components: the screen is not cleared after component %d", i+1)
		}
		ts.Check(os.WriteFile(ts.MkAbs(fmt.Sprintf("%s.%d", args[1], i+1)), raw, 0o600))
		ts.Logf("component %d of %s shown to %s", i+1, m(2), m(3))
	}
}
