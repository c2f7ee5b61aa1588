package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

func runCustos(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, openTTY: func() (*os.File, error) {
		return nil, errors.New("no terminal in this test")
	}}
	code := a.execute(args)
	return code, out.String(), errb.String()
}

// custos hsm probe: the active probe with its evidence, JSON, and the exit statuses of a missing token
// (1) and an ambiguous one (2).
func TestHSMProbeCLI(t *testing.T) {
	tok := testenv.SoftHSMToken(t, "cli-probe")
	testenv.SoftHSMToken(t, "cli-twin")
	testenv.SoftHSMToken(t, "cli-twin")
	t.Setenv("CUSTOS_HSM_PIN", tok.UserPIN)

	code, out, errs := runCustos(t, "hsm", "probe", "--rehearsal", "--module", tok.Module, "--token", "cli-probe", "--active")
	if code != 0 || !strings.Contains(out, "RFC 5649 unwrap mechanism   CKM_AES_KEY_WRAP_PAD(0x210a)") || !strings.Contains(out, "SoftHSM 2.6.1's wrap quirk") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errs)
	}
	code, out, _ = runCustos(t, "hsm", "probe", "--rehearsal", "--module", tok.Module, "--token-serial", tok.Serial, "--json")
	var r struct {
		Token struct {
			Serial       string `json:"serial"`
			ModuleSHA256 string `json:"module_sha256"`
		} `json:"token"`
		Active bool `json:"active"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Token.Serial != tok.Serial || len(r.Token.ModuleSHA256) != 64 || r.Active {
		t.Fatalf("--json: exit %d, %s", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--rehearsal", "--token", "nope"}, 1, `tokens there: `},
		{[]string{"--rehearsal", "--token", "cli-twin"}, 2, "more than one token"},
		{[]string{"--token-serial", tok.Serial, "--expect-module-sha256", strings.Repeat("0", 64)}, 1, "does not match --expect-module-sha256"},
		{[]string{"--token-serial", tok.Serial}, 2, "--expect-module-sha256 is required"},
		{[]string{"--token", "cli-probe", "--expect-module-sha256", strings.Repeat("0", 64)}, 2, "--token-serial is required"},
	} {
		code, _, errs := runCustos(t, append([]string{"hsm", "probe", "--module", tok.Module}, c.args...)...)
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		if code != c.code || len(lines) != 1 || !strings.Contains(errs, c.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.err)
		}
	}
}
