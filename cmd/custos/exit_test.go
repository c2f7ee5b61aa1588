package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestExitStatus: 0 success, 1 failure, 2 usage or ambiguity, with exactly one error line on stderr.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"no-such-command"}, 2, `unknown command "no-such-command"`},
		{[]string{"split", "--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
		{[]string{"version", "extra"}, 2, "takes 0 argument(s)"},
		{[]string{"roster", "create", "--threshold", "2"}, 2, "-o roster.json is required"},
		// A missing pin with no terminal is a usage error: the operator must supply it.
		{[]string{"combine", "--ceremony", dir, "-i", "x", "--out", dir + "/k"}, 2, "--expect-manifest-key is required"},
		{[]string{"combine", "--rehearsal", "--ceremony", dir, "-i", "x", "--out", dir + "/k"}, 1, "manifest.json: no such file"},
		{[]string{"roster", "verify", dir + "/none.json"}, 1, "no such file"},
	} {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, openTTY: func() (*os.File, error) {
			return nil, errors.New("no terminal in this test")
		}}
		code := a.execute(c.args)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, errb.String())
		}
		if c.code == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "custos: ") || !strings.Contains(lines[0], c.err) {
			t.Errorf("%v: stderr %q, want one line containing %q", c.args, errb.String(), c.err)
		}
	}
}
