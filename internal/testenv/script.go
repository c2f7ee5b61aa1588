package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custos-pki/custos/internal/softtoken"
)

// RunScripts runs the testscript files (*.txtar) in dir. Scripts get the commands every custos script
// may use (see ScriptCommands) plus extra, and the built-in ttyin/ttyout for typed entries on a
// terminal. CI is passed through, so [ci] conditions and tool checks behave as in Go tests.
func RunScripts(t *testing.T, dir string, extra map[string]func(ts *testscript.TestScript, neg bool, args []string)) {
	t.Helper()
	cmds := ScriptCommands()
	for k, v := range extra {
		cmds[k] = v
	}
	testscript.Run(t, testscript.Params{
		Dir:                 dir,
		Cmds:                cmds,
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			if cond == "sim" {
				return simCondition()
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Setup: func(e *testscript.Env) error {
			e.Setenv("CI", os.Getenv("CI"))
			simScriptEnv(e)
			return nil
		},
	})
}

// ScriptCommands returns the script commands shared by custos's CLI tests:
//
//	agekeys NAME...             writes NAME.key (a native age X25519 identity) and NAME.pub, and sets
//	                            $NAME (upper case) to the recipient
//	randfile FILE N             writes N random bytes to FILE
//	nosecrets [flags] PATH...   fails if any secret is found in the PATHs (files or directories), after
//	                            a positive control proves the scanner would find each one. Secrets:
//	                            -secret FILE (its bytes), and with -ceremony DIR every share and check
//	                            token that the -i identities (repeatable) open. -except PATH skips a
//	                            path (the output a command was asked to write).
//	perm MODE PATH              fails unless PATH has permission bits MODE (octal)
//	replace FILE OLD NEW        replaces the only occurrence of OLD in FILE with NEW
//	flipbyte FILE OFFSET        flips the low bit of the byte at OFFSET (negative: from the end)
//	lines stdout|stderr|FILE N  fails unless the text has exactly N lines
//	notemp DIR                  fails if DIR holds a temporary file or directory custos left behind
//	capture VAR REGEXP          sets $VAR to REGEXP's first group in the last command's stdout, and
//	                            $VAR_RE to the same value quoted for use as a regexp
//	encrypt RECIPIENT IN OUT    age-encrypts IN to an X25519 RECIPIENT, armored, into OUT
//	xorfiles OUT IN...          writes the XOR of the IN files (all the same size) to OUT
//	writefile FILE TEXT         writes TEXT and a newline to FILE ($VARs in TEXT are expanded)
//	softhsm LABEL               makes a SoftHSM token LABEL; sets $MODULE, $SOFTHSM2_CONF and
//	                            $LABEL_SERIAL (upper case, - as _) and writes its user PIN to LABEL.pin
//	objects LABEL N             fails unless the token LABEL holds exactly N objects
//	cpdir SRC DST               copies the directory SRC to the new directory DST
//	sim SUBCOMMAND SERIAL...    the test process's virtual cards (see cmdSim); guard with [!sim] skip
func ScriptCommands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"agekeys":   cmdAgeKeys,
		"randfile":  cmdRandFile,
		"nosecrets": cmdNoSecrets,
		"perm":      cmdPerm,
		"replace":   cmdReplace,
		"flipbyte":  cmdFlipByte,
		"lines":     cmdLines,
		"notemp":    cmdNoTemp,
		"capture":   cmdCapture,
		"encrypt":   cmdEncrypt,
		"xorfiles":  cmdXorFiles,
		"writefile": cmdWriteFile,
		"softhsm":   cmdSoftHSM,
		"objects":   cmdObjects,
		"sim":       cmdSim,
		"cpdir":     cmdCpDir,
	}
}

func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	p := ts.MkAbs(args[0])
	b, err := os.ReadFile(p)
	ts.Check(err)
	if n := bytes.Count(b, []byte(args[1])); n != 1 {
		ts.Fatalf("replace: %q occurs %d times in %s, want once", args[1], n, args[0])
	}
	ts.Check(os.WriteFile(p, bytes.Replace(b, []byte(args[1]), []byte(args[2]), 1), 0o600))
}

func cmdFlipByte(ts *testscript.TestScript, neg bool, args []string) {
	var off int
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	if _, err := fmt.Sscan(args[1], &off); err != nil {
		ts.Fatalf("flipbyte: %v", err)
	}
	p := ts.MkAbs(args[0])
	b, err := os.ReadFile(p)
	ts.Check(err)
	if off < 0 {
		off += len(b)
	}
	if off < 0 || off >= len(b) {
		ts.Fatalf("flipbyte: offset %s outside %d bytes", args[1], len(b))
	}
	b[off] ^= 1
	ts.Check(os.WriteFile(p, b, 0o600))
}

func cmdLines(ts *testscript.TestScript, neg bool, args []string) {
	var n int
	if neg || len(args) != 2 {
		ts.Fatalf("usage: lines stdout|stderr|FILE N")
	}
	if _, err := fmt.Sscan(args[1], &n); err != nil {
		ts.Fatalf("lines: %v", err)
	}
	text := ts.ReadFile(args[0])
	if got := strings.Count(text, "\n"); got != n || (text != "" && !strings.HasSuffix(text, "\n")) {
		ts.Fatalf("%s has %d lines, want %d:\n%s", args[0], got, n, text)
	}
}

func cmdNoTemp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: notemp DIR")
	}
	err := filepath.WalkDir(ts.MkAbs(args[0]), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			return fmt.Errorf("left behind: %s", p)
		}
		return err
	})
	ts.Check(err)
}

func cmdAgeKeys(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: agekeys NAME...")
	}
	for _, name := range args {
		id, err := age.GenerateX25519Identity()
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(name+".key"), []byte(id.String()+"\n"), 0o600))
		ts.Check(os.WriteFile(ts.MkAbs(name+".pub"), []byte(id.Recipient().String()), 0o644))
		ts.Setenv(strings.ToUpper(name), id.Recipient().String())
	}
}

func cmdRandFile(ts *testscript.TestScript, neg bool, args []string) {
	var n int
	if neg || len(args) != 2 {
		ts.Fatalf("usage: randfile FILE N")
	}
	if _, err := fmt.Sscan(args[1], &n); err != nil {
		ts.Fatalf("randfile: %v", err)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), random(n), 0o600))
}

func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm MODE PATH")
	}
	fi, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	got := fmt.Sprintf("%o", fi.Mode().Perm())
	if (got == args[0]) == neg {
		ts.Fatalf("%s has mode %s", args[1], got)
	}
}

func cmdNoSecrets(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("nosecrets does not take !")
	}
	var secrets []Secret
	var ids []age.Identity
	var ceremonyDir string
	var except, paths []string
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 >= len(args) {
				ts.Fatalf("nosecrets: %s needs a value", args[i])
			}
			i++
			return args[i]
		}
		switch args[i] {
		case "-secret":
			name := next()
			b, err := os.ReadFile(ts.MkAbs(name))
			ts.Check(err)
			secrets = append(secrets, Secret{"secret " + name, b})
		case "-i":
			f, err := os.Open(ts.MkAbs(next()))
			ts.Check(err)
			parsed, err := age.ParseIdentities(f)
			f.Close()
			ts.Check(err)
			ids = append(ids, parsed...)
		case "-ceremony":
			ceremonyDir = ts.MkAbs(next())
		case "-except":
			except = append(except, ts.MkAbs(next()))
		default:
			paths = append(paths, ts.MkAbs(args[i]))
		}
	}
	if ceremonyDir != "" {
		found, err := CeremonySecrets(ceremonyDir, ids...)
		ts.Check(err)
		secrets = append(secrets, found...)
	}
	if len(secrets) == 0 || len(paths) == 0 {
		ts.Fatalf("nosecrets: no secrets or no paths to scan")
	}
	s, err := NewScanner(secrets...)
	ts.Check(err)
	ts.Check(s.PositiveControl(secrets...))
	findings, err := s.ScanPaths(paths, except...)
	ts.Check(err)
	for _, f := range findings {
		ts.Logf("secret found: %s", f)
	}
	if len(findings) > 0 {
		ts.Fatalf("%d secret(s) found in the outputs", len(findings))
	}
	ts.Logf("nosecrets: %d secrets, %d paths: none found (positive control passed)", len(secrets), len(paths))
}

// CeremonySecrets opens every share and check file in a record directory that the identities can open
// and returns the secrets inside: each share's bytes and each check token's value, so that a scan can
// show none of them leaked. Files no identity opens are skipped.
func CeremonySecrets(dir string, ids ...age.Identity) ([]Secret, error) {
	var out []Secret
	for _, sub := range []struct{ dir, field string }{{"shares", "share"}, {"checks", "token"}} {
		files, _ := filepath.Glob(filepath.Join(dir, sub.dir, "*.age"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			r, err := age.Decrypt(armor.NewReader(bytes.NewReader(b)), ids...)
			if err != nil {
				continue
			}
			plain, err := io.ReadAll(r)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", f, err)
			}
			var v map[string]any
			if err := json.Unmarshal(plain, &v); err != nil {
				return nil, fmt.Errorf("%s: %v", f, err)
			}
			val, _ := v[sub.field].(string)
			raw, err := base64.StdEncoding.DecodeString(val)
			if err != nil || len(raw) == 0 {
				return nil, fmt.Errorf("%s: no %s field", f, sub.field)
			}
			out = append(out, Secret{sub.field + " " + strings.TrimSuffix(filepath.Base(f), ".age"), raw})
			// The whole plaintext is secret too (its base64 form would hide the value from a scan).
			out = append(out, Secret{sub.dir + "/" + filepath.Base(f) + " plaintext", plain})
		}
	}
	return out, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: %q does not match stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
	ts.Setenv(args[0]+"_RE", regexp.QuoteMeta(m[1]))
}

func cmdEncrypt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: encrypt RECIPIENT IN OUT")
	}
	r, err := age.ParseX25519Recipient(args[0])
	ts.Check(err)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	ts.Check(err)
	_, err = w.Write([]byte(ts.ReadFile(args[1])))
	ts.Check(err)
	ts.Check(w.Close())
	ts.Check(aw.Close())
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), buf.Bytes(), 0o600))
}

func cmdXorFiles(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: xorfiles OUT IN...")
	}
	var out []byte
	for _, in := range args[1:] {
		b := []byte(ts.ReadFile(in))
		if out == nil {
			out = make([]byte, len(b))
		}
		if len(b) != len(out) {
			ts.Fatalf("xorfiles: %s is %d bytes, not %d", in, len(b), len(out))
		}
		for i := range b {
			out[i] ^= b[i]
		}
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), out, 0o600))
}

func cmdWriteFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: writefile FILE TEXT")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(args[1]+"\n"), 0o600))
}

// scriptTokens are the tokens made by softhsm in this test process, by script and label: scripts run in
// parallel and may use the same labels.
var scriptTokens sync.Map

type scriptToken struct {
	ts    *testscript.TestScript
	label string
}

func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: softhsm LABEL")
	}
	tok, err := NewSoftHSMToken(args[0])
	ts.Check(err)
	scriptTokens.Store(scriptToken{ts, args[0]}, tok)
	ts.Setenv("MODULE", tok.Module)
	ts.Setenv("SOFTHSM2_CONF", os.Getenv("SOFTHSM2_CONF"))
	ts.Setenv(strings.ToUpper(strings.ReplaceAll(args[0], "-", "_"))+"_SERIAL", tok.Serial)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".pin"), []byte(tok.UserPIN+"\n"), 0o600))
}

func cmdObjects(ts *testscript.TestScript, neg bool, args []string) {
	var n int
	if neg || len(args) != 2 {
		ts.Fatalf("usage: objects LABEL N")
	}
	if _, err := fmt.Sscan(args[1], &n); err != nil {
		ts.Fatalf("objects: %v", err)
	}
	v, ok := scriptTokens.Load(scriptToken{ts, args[0]})
	if !ok {
		ts.Fatalf("objects: no token %s made by softhsm", args[0])
	}
	tok := v.(*softtoken.Token)
	objs, err := listObjects(tok.Module, tok.Serial, tok.UserPIN)
	ts.Check(err)
	for _, o := range objs {
		ts.Logf("%s: %s", args[0], o)
	}
	if len(objs) != n {
		ts.Fatalf("token %s holds %d objects, want %d", args[0], len(objs), n)
	}
}

func cmdCpDir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cpdir SRC DST")
	}
	src, dst := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	ts.Check(filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.Mkdir(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	}))
}
