package testenv

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"
)

func TestMain(m *testing.M) {
	os.Exit(RunWithSim(m, SimOptions{Cards: 3, FirstSerial: 7000001}))
}

// open opens the card with this serial through PC/SC and closes it at the end of the test.
func open(t *testing.T, e *SimEnv, serial uint32) *piv.YubiKey {
	t.Helper()
	yk, err := piv.Open(e.Reader(t, serial))
	if err != nil {
		t.Fatalf("open card %d: %v", serial, err)
	}
	t.Cleanup(func() { yk.Close() })
	return yk
}

// retries opens the card, reads its PIN retry counter and closes it.
func retries(t *testing.T, e *SimEnv, serial uint32) int {
	t.Helper()
	yk := open(t, e, serial)
	defer yk.Close()
	n, err := yk.Retries()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSimCardsAndReaders(t *testing.T) {
	e := Sim(t)
	if got, want := e.Serials(), []uint32{7000001, 7000002, 7000003}; !slices.Equal(got, want) {
		t.Fatalf("serials %v, want %v", got, want)
	}
	readers, err := piv.Cards()
	if err != nil {
		t.Fatal(err)
	}
	// Three cards fill both slots of the first vpcd entry and the first of the second.
	want := []string{"Virtual PCD 0 00 00", "Virtual PCD 0 00 01", "Virtual PCD 1 00 00", "Virtual PCD 1 00 01"}
	if !slices.Equal(slices.Sorted(slices.Values(readers)), want) {
		t.Fatalf("pcscd lists %q, want only the sim's %q", readers, want)
	}
	for _, s := range e.Serials() {
		yk := open(t, e, s)
		got, err := yk.Serial()
		if err != nil || got != s {
			t.Errorf("%s: serial %d, %v; want %d", e.Reader(t, s), got, err, s)
		}
		yk.Close()
	}
	e.CheckIsolated(t)
}

func TestSimEjectInsertKeepsState(t *testing.T) {
	e := Sim(t)
	s := e.Serials()[1]
	e.Fresh(t, s)
	yk := open(t, e, s)
	if err := yk.VerifyPIN("000000"); err == nil {
		t.Fatal("a wrong PIN verified")
	}
	yk.Close()

	e.Eject(t, s)
	if st := e.Status(t); st.Cards[1].Inserted || st.Cards[1].Ready {
		t.Fatalf("ejected card reported in: %+v", st.Cards[1])
	}
	if yk, err := piv.Open(e.Reader(t, s)); err == nil {
		yk.Close()
		t.Fatal("an ejected card opened")
	}
	e.Insert(t, s)
	if got := retries(t, e, s); got != 2 {
		t.Fatalf("after eject and insert: %d PIN tries left, want 2", got)
	}
}

var stateRuns atomic.Int32

func TestSimFreshAndUseState(t *testing.T) {
	e := Sim(t)
	s := e.Serials()[0]
	wrongPIN := func(tb testing.TB) {
		yk, err := piv.Open(e.Reader(tb, s))
		if err != nil {
			tb.Fatal(err)
		}
		defer yk.Close()
		if err := yk.VerifyPIN("000000"); err == nil {
			tb.Fatal("a wrong PIN verified")
		}
	}
	builds := 0
	state := func(tb testing.TB) { builds++; wrongPIN(tb) }

	name := fmt.Sprintf("one-wrong-pin-%d", stateRuns.Add(1)) // a new state each time with -count=N
	e.UseState(t, s, name, state)
	wrongPIN(t) // now two wrong
	e.UseState(t, s, name, state)
	if got := retries(t, e, s); got != 2 || builds != 1 {
		t.Fatalf("restored state: %d tries left after %d builds, want 2 after 1", got, builds)
	}
	e.Fresh(t, s)
	if got := retries(t, e, s); got != 3 {
		t.Fatalf("fresh card: %d tries left, want 3", got)
	}
}

func TestSimCounters(t *testing.T) {
	e := Sim(t)
	s := e.Serials()[2]
	before := e.Counters(t, s)
	yk := open(t, e, s)
	if err := yk.VerifyPIN("123456"); err != nil {
		t.Fatal(err)
	}
	yk.Close()
	after := e.Counters(t, s)
	if d := after.PINVerifies - before.PINVerifies; d != 1 {
		t.Errorf("PIN verifies went up by %d, want 1", d)
	}
	// Open sends SELECT and GET VERSION; VerifyPIN one VERIFY with a PIN.
	for ins, want := range map[byte]uint64{0xA4: 1, 0xFD: 1, 0x20: 1} {
		if d := after.ByINS[ins] - before.ByINS[ins]; d != want {
			t.Errorf("INS %02X counted %d more, want %d", ins, d, want)
		}
	}
}

func TestSimRestartKeepsCardsAndLeavesNothing(t *testing.T) {
	e := Sim(t)
	s := e.Serials()[0]
	e.Fresh(t, s)
	yk := open(t, e, s)
	for range 3 {
		yk.VerifyPIN("000000")
	}
	yk.Close()
	if got := retries(t, e, s); got != 0 {
		t.Fatalf("%d tries left after three wrong PINs", got)
	}
	readers := e.Readers()

	e.Restart(t) // down checks that no process, mount, socket or listener is left

	st := e.Status(t)
	for i, c := range st.Cards {
		if c.Serial != e.Serials()[i] || c.Reader != readers[i] {
			t.Errorf("after restart card %d is %d in %q, was %d in %q", i, c.Serial, c.Reader, e.Serials()[i], readers[i])
		}
	}
	if got := retries(t, e, s); got != 0 {
		t.Errorf("blocked PIN has %d tries after restart", got)
	}
	e.CheckIsolated(t)
	e.Fresh(t, s)
}

func TestSimDenyTouch(t *testing.T) {
	e := Sim(t)
	s := e.Serials()[2]
	e.Fresh(t, s)
	yk := open(t, e, s)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotCardAuthentication, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyAlways})
	if err != nil {
		t.Fatal(err)
	}
	yk.Close()
	sign := func(t *testing.T) error {
		yk := open(t, e, s)
		defer yk.Close()
		priv, err := yk.PrivateKey(piv.SlotCardAuthentication, pub, piv.KeyAuth{})
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("touch"))
		_, err = priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
		return err
	}
	if err := sign(t); err != nil {
		t.Fatalf("touch approved by default, yet: %v", err)
	}
	t.Run("denied", func(t *testing.T) {
		e.DenyTouch(t, s)
		if err := sign(t); err == nil {
			t.Error("signed with touch denied")
		}
	})
	if err := sign(t); err != nil {
		t.Errorf("touch approved again after the subtest, yet: %v", err)
	}
	e.Fresh(t, s)
}

// TestLeakCheckFindsLeaks is the leak check's positive control: a process in the sim's namespace
// (here this test process, whose namespace stands in for the sim's), a process that still runs and
// a socket file left behind are each reported.
func TestLeakCheckFindsLeaks(t *testing.T) {
	before, err := snapshotHost()
	if err != nil {
		t.Fatal(err)
	}
	self, err := readProcID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	netNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "control.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = checkNoLeak(dir, &simNS{pids: []procID{self}, ns: map[string]bool{netNS: true}}, before)
	if err == nil {
		t.Fatal("no leak reported")
	}
	for _, want := range []string{fmt.Sprintf("process %d still runs", os.Getpid()), "is in the sim's namespace " + netNS, "control.sock left behind"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("leak report lacks %q: %v", want, err)
		}
	}
	if err := checkNoLeak(dir+"/none", &simNS{ns: map[string]bool{"net:[0]": true}}, before); err != nil {
		t.Errorf("nothing leaked, yet: %v", err)
	}
}

// TestSimEnviron: a child process given only Environ (and PATH) reaches the sim's pcscd.
func TestSimEnviron(t *testing.T) {
	e := Sim(t)
	tool := RequireTool(t, "opensc-tool")
	cmd := exec.Command(tool, "--list-readers")
	cmd.Env = append(e.Environ(), "PATH="+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("opensc-tool --list-readers: %v\n%s", err, out)
	}
	for _, r := range e.Readers() {
		if !strings.Contains(string(out), r) {
			t.Errorf("opensc-tool does not list %q:\n%s", r, out)
		}
	}
}
