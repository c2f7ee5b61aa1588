package testenv

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/custos-pki/custos/internal/softtoken"
)

// OpenCryptoki runs the calling top-level test against openCryptoki's soft token. Outside the
// namespaces it re-runs this test binary, only this test, under softtoken.OpenCryptokiCommand, relays
// the output, fails if that run fails and returns nil: the caller returns at once. Inside, it starts
// pkcsslotd, initialises the token with label and the PINs above, and returns it. Needs root.
//
//	tok := testenv.OpenCryptoki(t, "ock")
//	if tok == nil {
//		return
//	}
func OpenCryptoki(t *testing.T, label string) *softtoken.Token {
	t.Helper()
	if softtoken.InOpenCryptoki() {
		tok, err := softtoken.StartOpenCryptoki(label, TokenSOPIN, TokenUserPIN)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	RequireTool(t, "pkcsslotd")
	RequireTool(t, "unshare")
	if _, err := os.Stat(softtoken.OpenCryptokiModule); err != nil {
		Missing(t, "%s not found; run 'make deps' (as root) to install opencryptoki", softtoken.OpenCryptokiModule)
	}
	if os.Geteuid() != 0 {
		Missing(t, "openCryptoki tests need root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd, release, err := softtoken.OpenCryptokiCommand(context.Background(), exe, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	out, err := cmd.CombinedOutput()
	t.Logf("openCryptoki run of %s:\n%s", t.Name(), out)
	if err != nil {
		t.Fatalf("openCryptoki run of %s: %v", t.Name(), err)
	}
	if bytes.Contains(out, []byte("no tests to run")) {
		t.Fatalf("openCryptoki run of %s ran no test", t.Name())
	}
	return nil
}

// InOpenCryptokiRun reports whether this test process is the re-run inside openCryptoki's namespaces;
// set-up that must happen outside (fixtures to hand in through the environment) checks it.
func InOpenCryptokiRun() bool { return softtoken.InOpenCryptoki() }
