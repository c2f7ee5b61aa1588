package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/custos-pki/custos/card/sim"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// TestMain lets sim.Up start this test binary as the sim's daemon (run serves when ServeEnv is set).
func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(sim.ServeEnv); ok {
		os.Exit(run(nil, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// cli runs custos-sim in this process and checks its exit status.
func cli(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != wantCode {
		t.Fatalf("custos-sim %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func status(t *testing.T, dir string) *sim.Status {
	t.Helper()
	out, _ := cli(t, 0, "status", "--dir", dir, "--json")
	var st sim.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

// processDir is the sim directory of this test process: always the same path, because libpcsclite
// keeps the socket path it first read (go test -count=N runs a test N times in one process).
var processDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "custos-sim-cli-") })

func cliDir(t *testing.T) string {
	t.Helper()
	dir, err := processDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpStatusEjectInsertDown drives the commands in one process, which can use one sim only
// (libpcsclite reads PCSCLITE_CSOCK_NAME once): up, status, eject, insert, down, up again.
func TestUpStatusEjectInsertDown(t *testing.T) {
	testenv.RequireTool(t, "unshare")
	dir := cliDir(t)
	t.Cleanup(func() {
		var out, errb bytes.Buffer
		run([]string{"down", "--dir", dir}, &out, &errb)
		os.RemoveAll(dir)
	})

	out, _ := cli(t, 0, "up", "--cards", "3", "--dir", dir, "--profile", "5.2", "--first-serial", "9000001")
	want := "export PCSCLITE_CSOCK_NAME='" + filepath.Join(dir, "pcscd", "pcscd.comm") + "'\n" +
		"export CUSTOS_SIM_DIR='" + dir + "'\n"
	if out != want {
		t.Fatalf("up printed %q, want %q", out, want)
	}
	if _, errOut := cli(t, 1, "up", "--dir", dir); !strings.Contains(errOut, "already running") {
		t.Errorf("second up: %q", errOut)
	}

	st := status(t, dir)
	if st.Profile != "5.2" || len(st.Cards) != 3 || !st.PCSCDUp {
		t.Fatalf("status: %+v", st)
	}
	var serials []uint32
	for _, c := range st.Cards {
		serials = append(serials, c.Serial)
		if !c.Inserted || !c.Ready {
			t.Errorf("card %d not in and ready", c.Serial)
		}
	}
	if !slices.Equal(serials, []uint32{9000001, 9000002, 9000003}) {
		t.Fatalf("serials %v", serials)
	}
	text, _ := cli(t, 0, "status", "--dir", dir)
	if !strings.Contains(text, "9000002  Virtual PCD 0 00 01  in") {
		t.Errorf("status text:\n%s", text)
	}

	cli(t, 0, "eject", "--dir", dir, "--serial", "9000002")
	if c := status(t, dir).Cards[1]; c.Inserted {
		t.Error("ejected card reported in")
	}
	if yk, err := piv.Open("Virtual PCD 0 00 01"); err == nil {
		yk.Close()
		t.Error("ejected card opened")
	}
	cli(t, 0, "insert", "--dir", dir, "--serial", "9000002")
	yk, err := piv.Open("Virtual PCD 0 00 01")
	if err != nil {
		t.Fatalf("inserted card: %v", err)
	}
	if s, err := yk.Serial(); err != nil || s != 9000002 {
		t.Errorf("inserted card serial %d, %v", s, err)
	}
	if v := yk.Version(); v.Major != 5 || v.Minor != 2 {
		t.Errorf("profile 5.2 card reports version %+v", v)
	}
	yk.Close()

	if _, errOut := cli(t, 1, "eject", "--dir", dir, "--serial", "1"); !strings.Contains(errOut, "no such card") {
		t.Errorf("eject of an unknown serial: %q", errOut)
	}
	cli(t, 2, "eject", "--dir", dir)
	cli(t, 2, "status")
	cli(t, 2, "up", "--dir", dir, "--profile", "6.0")

	cli(t, 0, "down", "--dir", dir)
	if _, errOut := cli(t, 1, "status", "--dir", dir); !strings.Contains(errOut, "not running") {
		t.Errorf("status after down: %q", errOut)
	}
	for _, s := range serials {
		if _, err := os.Stat(filepath.Join(dir, "cards", strconv.FormatUint(uint64(s), 10)+".card")); err != nil {
			t.Errorf("card file after down: %v", err)
		}
	}
	if _, errOut := cli(t, 2, "up", "--dir", dir, "--cards", "2"); !strings.Contains(errOut, "holds 3 cards") {
		t.Errorf("up with another card count: %q", errOut)
	}

	cli(t, 0, "up", "--dir", dir)
	again := status(t, dir)
	for i, c := range again.Cards {
		if c.Serial != st.Cards[i].Serial || c.Reader != st.Cards[i].Reader {
			t.Errorf("after down and up card %d is %d in %q, was %d in %q", i, c.Serial, c.Reader, st.Cards[i].Serial, st.Cards[i].Reader)
		}
	}
	if procs := simProcesses(dir); len(procs) < 3 {
		t.Errorf("found %d processes of the running sim (%v), want unshare, daemon and pcscd", len(procs), procs)
	}
	cli(t, 0, "down", "--dir", dir)
	if procs := simProcesses(dir); len(procs) > 0 {
		t.Errorf("processes left after down: %v", procs)
	}
	for _, f := range []string{"control.sock", "pcscd/pcscd.comm"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s left after down", f)
		}
	}
}

// simProcesses lists the live processes of the sim in dir: those started with its daemon variable
// (unshare, the daemon) or naming dir on their command line (pcscd).
func simProcesses(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil || bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		env, _ := os.ReadFile(p + "/environ")
		cmdline, _ := os.ReadFile(p + "/cmdline")
		if bytes.Contains(env, []byte(sim.ServeEnv+"="+dir+"\x00")) || bytes.Contains(cmdline, []byte(dir+"/")) {
			out = append(out, p+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}
