package testenv

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pki/custos/card/sim"
)

// SimOptions choose the virtual cards of a test process's sim.
type SimOptions struct {
	Cards       int         // 1 to sim.MaxCards; default 2
	Profile     sim.Profile // default 5.4
	FirstSerial uint32      // default sim.DefaultFirstSerial
}

// The test process's sim. libpcsclite reads PCSCLITE_CSOCK_NAME once per process, so there is one
// sim per test process, started by RunWithSim before any PC/SC call.
var (
	theSim    *SimEnv
	theSimErr error
)

// initialState names the snapshot of every card taken right after the sim first came up.
const initialState = "initial"

// RunWithSim is the body of TestMain for a package whose tests use virtual cards:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunWithSim(m, testenv.SimOptions{Cards: 3})) }
//
// It starts the sim (unless a prerequisite is missing, which Sim then reports per test), runs the
// tests, brings the sim down and checks that nothing it started is left: a leak fails the run. Run
// with the sim's daemon environment (ServeEnv), the test binary is instead the sim's daemon, started
// by sim.Up inside the namespaces; RunWithSim then serves and returns without running tests.
func RunWithSim(m TestingM, opts SimOptions) int {
	if dir, ok := os.LookupEnv(sim.ServeEnv); ok {
		if err := sim.Serve(dir); err != nil {
			fmt.Fprintf(os.Stderr, "custos-sim daemon: %v\n", err)
			return 1
		}
		return 0
	}
	theSim, theSimErr = startSim(opts)
	code := m.Run()
	if theSim == nil {
		return code
	}
	if err := theSim.down(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: sim: %v\n", err)
		code = 1
	}
	if code == 0 {
		os.RemoveAll(theSim.dir)
	} else {
		fmt.Fprintf(os.Stderr, "testenv: sim directory kept for inspection: %s\n", theSim.dir)
	}
	return code
}

// TestingM is what TestMain runs: *testing.M, or a wrapper around it. A TestMain that hands m to
// another runner (testscript.Main) wraps it:
//
//	type simM struct{ *testing.M }
//	func (m simM) Run() int { return testenv.RunWithSim(m.M, opts) }
//	func TestMain(m *testing.M) { testscript.Main(simM{m}, commands) }
type TestingM interface{ Run() int }

// errSimMissing wraps a missing prerequisite, which is a skip outside CI.
var errSimMissing = errors.New("virtual cards unavailable")

func startSim(opts SimOptions) (*SimEnv, error) {
	for _, tool := range []string{"unshare", "pcscd"} {
		if _, err := exec.LookPath(tool); err != nil && !(tool == "pcscd" && fileExists("/usr/sbin/pcscd")) {
			return nil, fmt.Errorf("%w: %s not found; run 'make deps' (as root)", errSimMissing, tool)
		}
	}
	if !fileExists("/usr/lib/pcsc/drivers/serial/libifdvpcd.so") {
		return nil, fmt.Errorf("%w: vpcd driver missing (Debian vsmartcard-vpcd); run 'make deps' (as root)", errSimMissing)
	}
	// A container may forbid the namespaces the sim needs; that is a missing prerequisite too.
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "true").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: cannot create user, mount, network and PID namespaces (%v: %s)", errSimMissing, err, bytes.TrimSpace(out))
	}
	if opts.Cards == 0 {
		opts.Cards = 2
	}
	dir, err := os.MkdirTemp("", "custos-sim-")
	if err != nil {
		return nil, err
	}
	e := &SimEnv{dir: dir, states: map[string]*sync.Once{}}
	if err := e.start(opts); err != nil {
		if e.s != nil {
			e.s.Down()
		}
		return nil, fmt.Errorf("%w (sim directory kept for inspection: %s)", err, dir)
	}
	return e, nil
}

func (e *SimEnv) start(opts SimOptions) error {
	var err error
	if e.before, err = snapshotHost(); err != nil {
		return err
	}
	if err := e.up(sim.UpOptions{Cards: opts.Cards, Profile: opts.Profile, FirstSerial: opts.FirstSerial}); err != nil {
		return err
	}
	st, err := e.s.Status()
	if err != nil {
		return err
	}
	for _, c := range st.Cards {
		e.serials = append(e.serials, c.Serial)
		e.readers = append(e.readers, c.Reader)
		if err := e.s.Snapshot(c.Serial, initialState); err != nil {
			return err
		}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// SimEnv is the test process's sim.
type SimEnv struct {
	dir     string
	s       *sim.Sim
	serials []uint32
	readers []string
	before  hostState // the host as it was before the sim first came up

	mu     sync.Mutex
	states map[string]*sync.Once
}

// Sim returns the test process's sim. When a prerequisite is missing the test fails under CI and is
// skipped elsewhere; when the sim failed to start the test fails.
func Sim(t testing.TB) *SimEnv {
	t.Helper()
	switch {
	case errors.Is(theSimErr, errSimMissing):
		Missing(t, "%v", theSimErr)
	case theSimErr != nil:
		t.Fatalf("sim did not start: %v", theSimErr)
	case theSim == nil:
		t.Fatal("no sim: call testenv.RunWithSim from TestMain")
	}
	return theSim
}

func (e *SimEnv) up(opts sim.UpOptions) error {
	s, err := sim.Up(e.dir, opts)
	if err != nil {
		return err
	}
	e.s = s
	return nil
}

// Serials returns the cards' serials, in reader order.
func (e *SimEnv) Serials() []uint32 { return slices.Clone(e.serials) }

// Readers returns the readers pcscd serves, the cards' first (and an empty slot when the number of
// cards is odd).
func (e *SimEnv) Readers() []string { return slices.Clone(e.readers) }

// Reader returns the PC/SC reader name of the card with this serial.
func (e *SimEnv) Reader(t testing.TB, serial uint32) string {
	t.Helper()
	i := slices.Index(e.serials, serial)
	if i < 0 {
		t.Fatalf("no virtual card with serial %d (have %v)", serial, e.serials)
	}
	return e.readers[i]
}

// Environ returns the variables that point a child process (a CLI under test, a script) at the sim,
// as custos-sim up exports them.
func (e *SimEnv) Environ() []string {
	return []string{"PCSCLITE_CSOCK_NAME=" + sim.SocketPath(e.dir), "CUSTOS_SIM_DIR=" + e.dir}
}

// Roots returns a pool holding the fleet's virtual attestation root, for piv.Verifier.
func (e *SimEnv) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "attestation-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("attestation-root.pem holds no certificate")
	}
	return pool
}

// Status returns the sim's status.
func (e *SimEnv) Status(t testing.TB) *sim.Status {
	t.Helper()
	st, err := e.s.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Counters returns the card's command counters.
func (e *SimEnv) Counters(t testing.TB, serial uint32) sim.Counters {
	t.Helper()
	for _, c := range e.Status(t).Cards {
		if c.Serial == serial {
			return c.Counters()
		}
	}
	t.Fatalf("no virtual card with serial %d", serial)
	return sim.Counters{}
}

// Eject takes the card out of its reader until Insert, or the end of the test.
func (e *SimEnv) Eject(t testing.TB, serial uint32) {
	t.Helper()
	if err := e.s.Eject(serial); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.s.Insert(serial); err != nil {
			t.Errorf("re-inserting card %d: %v", serial, err)
		}
	})
}

// Insert puts the card back; it returns once pcscd has seen it.
func (e *SimEnv) Insert(t testing.TB, serial uint32) {
	t.Helper()
	if err := e.s.Insert(serial); err != nil {
		t.Fatal(err)
	}
}

// DenyTouch makes the card's holder refuse touches until the end of the test.
func (e *SimEnv) DenyTouch(t testing.TB, serial uint32) {
	t.Helper()
	if err := e.s.SetTouch(serial, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.s.SetTouch(serial, true); err != nil {
			t.Errorf("re-approving touches on card %d: %v", serial, err)
		}
	})
}

// Fresh puts the card back into its state from when the sim first came up: default PIN, PUK and
// management key, no keys, the counters as they were. A client holding it open finds it reset.
func (e *SimEnv) Fresh(t testing.TB, serial uint32) {
	t.Helper()
	if err := e.s.Restore(serial, initialState); err != nil {
		t.Fatal(err)
	}
}

// UseState puts the card into a named state that tests share, such as "enrolled": the first call in
// the test process starts from a fresh card, runs build (which must leave the card in that state
// and close its PC/SC handles) and snapshots the card; every later call restores the snapshot.
func (e *SimEnv) UseState(t testing.TB, serial uint32, name string, build func(testing.TB)) {
	t.Helper()
	key := fmt.Sprintf("%d-%s", serial, name)
	e.mu.Lock()
	once, ok := e.states[key]
	if !ok {
		once = new(sync.Once)
		e.states[key] = once
	}
	e.mu.Unlock()
	built := false
	once.Do(func() {
		e.Fresh(t, serial)
		build(t)
		if err := e.s.Snapshot(serial, name); err != nil {
			t.Fatal(err)
		}
		built = true
	})
	if built {
		return
	}
	if err := e.s.Restore(serial, name); err != nil {
		t.Fatalf("card %d state %q (was its first build successful?): %v", serial, name, err)
	}
}

// Restart brings the sim down, checks that nothing was left behind, and brings it up again on the
// same directory: same cards, same readers, same socket.
func (e *SimEnv) Restart(t testing.TB) {
	t.Helper()
	if err := e.down(); err != nil {
		t.Fatal(err)
	}
	if err := e.up(sim.UpOptions{}); err != nil {
		t.Fatalf("sim up again: %v", err)
	}
}

// CheckIsolated checks that the host's network namespace listens on exactly the sockets it listened
// on before the sim came up.
func (e *SimEnv) CheckIsolated(t testing.TB) {
	t.Helper()
	now, err := listeners()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(now, e.before.listeners) {
		t.Errorf("host listening sockets changed while the sim runs:\nbefore %q\nnow    %q", e.before.listeners, now)
	}
}

// down stops the sim and checks that nothing it started is left.
func (e *SimEnv) down() error {
	ns, err := simNamespaces(e.s)
	if err != nil {
		return fmt.Errorf("sim namespaces: %w", err)
	}
	if err := e.s.Down(); err != nil {
		return err
	}
	return checkNoLeak(e.dir, ns, e.before)
}

// KillPCSCD kills the sim's pcscd, as a crash would, and waits until the sim has started it again and
// every inserted card has reconnected.
func (e *SimEnv) KillPCSCD(t testing.TB) {
	t.Helper()
	starts := e.Status(t).PCSCDStarts
	pids, err := e.s.Processes()
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	for _, pid := range pids {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && string(comm) == "pcscd\n" {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("no pcscd among the sim's processes %v", pids)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := e.Status(t)
		ready := st.PCSCDUp && st.PCSCDStarts > starts
		for _, c := range st.Cards {
			ready = ready && (c.Ready || !c.Inserted)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sim did not recover from a pcscd crash: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
