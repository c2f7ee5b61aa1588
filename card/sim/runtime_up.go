package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// ErrRunning is returned by Up when the directory's sim is already running.
var ErrRunning = errors.New("sim: already running in this directory (custos-sim down first)")

// ErrLayout is returned by Up when the options contradict the cards a directory already holds.
var ErrLayout = errors.New("sim: options do not match the sim in this directory")

// unshareArgs are the namespaces of DESIGN.md section 6: a user namespace mapping the caller to root
// (no privileges needed), private mounts, a private network (vpcd's ports exist only there) and a
// PID namespace whose first process is the daemon, so that nothing outlives it; --kill-child ends the
// daemon when unshare dies.
var unshareArgs = []string{"--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child"}

// UpOptions configure Up. Zero values mean "as the directory already holds, or the default".
type UpOptions struct {
	// Cards is the number of cards, 1 to MaxCards; required for a new directory.
	Cards int
	// Profile is the firmware of new cards (default 5.4).
	Profile Profile
	// FirstSerial is the first card's serial; the others follow (default DefaultFirstSerial).
	FirstSerial uint32
	// Detach starts the sim in its own session so that it outlives this process (custos-sim up).
	// Otherwise it is killed when this process's thread that started it exits.
	Detach bool
}

// upTimeout bounds how long Up waits for every card to answer.
const upTimeout = 30 * time.Second

// A Sim is a running sim: a private pcscd and its virtual cards, seen from the host.
type Sim struct {
	dir   string
	child *exec.Cmd // nil when this process did not start it
	exit  chan error
}

// run.json records the host process that holds the sim's namespaces (unshare), for down.
type runInfo struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // /proc/PID/stat field 22, to tell a reused PID apart
}

// Up starts the sim in dir: creates the directory, its attestation root and its cards on first use
// (or checks opts against them), starts the daemon in its namespaces, and returns once every card
// answers through pcscd. The daemon is this program, run again with ServeEnv set: its main (or
// TestMain) must then call Serve before anything else. It sets PCSCLITE_CSOCK_NAME in this process's environment, which must then
// have made no PC/SC call yet (libpcsclite reads the variable once), unless it already holds the
// sim's socket.
func Up(dir string, opts UpOptions) (*Sim, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	if v, ok := os.LookupEnv("PCSCLITE_CSOCK_NAME"); ok && v != SocketPath(dir) {
		return nil, fmt.Errorf("sim: PCSCLITE_CSOCK_NAME is %s in this process, not the sim's %s", v, SocketPath(dir))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if _, err := call(dir, request{Op: "status"}, time.Second); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrRunning, dir)
	}
	if info, err := (&Sim{dir: dir}).readRun(); err == nil && alive(info) {
		return nil, fmt.Errorf("%w: %s (its daemon, unshare pid %d, does not answer)", ErrRunning, dir, info.PID)
	}
	l, err := prepare(dir, opts)
	if err != nil {
		return nil, err
	}
	s, err := start(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(l, time.Now().Add(upTimeout)); err != nil {
		s.Down()
		return nil, err
	}
	return s, nil
}

// checkDir refuses directories the daemon's mounts would hide and paths too long for a socket.
func checkDir(dir string) error {
	for _, hidden := range []string{"/run", filepath.Dir(filepath.Dir(vpcdDriver))} {
		if dir == hidden || strings.HasPrefix(dir, hidden+"/") {
			return fmt.Errorf("sim: directory %s is under %s, which the sim hides; choose another", dir, hidden)
		}
	}
	if n := len(SocketPath(dir)); n >= len(syscall.RawSockaddrUnix{}.Path) {
		return fmt.Errorf("sim: directory %s is too long for a unix socket path (%d bytes); choose a shorter one", dir, n)
	}
	return nil
}

func checkTools() error {
	if _, err := exec.LookPath("unshare"); err != nil {
		return fmt.Errorf("sim: unshare (util-linux) not found: %w", err)
	}
	if _, err := exec.LookPath(pcscdPath()); err != nil {
		return fmt.Errorf("sim: pcscd not found (install pcscd): %w", err)
	}
	if _, err := os.Stat(vpcdDriver); err != nil {
		return fmt.Errorf("sim: vpcd driver missing (install vsmartcard-vpcd): %w", err)
	}
	return nil
}

// prepare reads or creates the layout and the cards, and writes the files the daemon needs.
func prepare(dir string, opts UpOptions) (*layout, error) {
	l, err := readLayout(dir)
	switch {
	case err == nil:
		if err := l.matches(opts); err != nil {
			return nil, err
		}
	case errors.Is(err, ErrNoSim):
		if l, err = create(dir, opts); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	for _, sub := range []string{pcscdDir, emptyDrivers, snapshotsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	// The daemon binds DIR/pcscd over /run/pcscd; pcscd's clients need to traverse it.
	if err := os.Chmod(filepath.Join(dir, pcscdDir), 0o755); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	driver, err := os.ReadFile(vpcdDriver)
	if err != nil {
		return nil, fmt.Errorf("sim: vpcd driver: %w", err)
	}
	for e := range entries(len(l.Serials)) {
		if err := writeFileAtomic(driverCopy(dir, e), driver, 0o644, false); err != nil {
			return nil, fmt.Errorf("sim: copy vpcd driver: %w", err)
		}
	}
	conf := readerConfig(dir, len(l.Serials))
	if err := writeFileAtomic(filepath.Join(dir, readerConf), []byte(conf), 0o600, false); err != nil {
		return nil, fmt.Errorf("sim: reader configuration: %w", err)
	}
	return l, nil
}

func (l *layout) matches(opts UpOptions) error {
	if opts.Cards != 0 && opts.Cards != len(l.Serials) {
		return fmt.Errorf("%w: it holds %d cards, not %d", ErrLayout, len(l.Serials), opts.Cards)
	}
	if opts.Profile != "" && opts.Profile != l.Profile {
		return fmt.Errorf("%w: its cards have profile %s, not %s", ErrLayout, l.Profile, opts.Profile)
	}
	if opts.FirstSerial != 0 && opts.FirstSerial != l.Serials[0] {
		return fmt.Errorf("%w: its first serial is %d, not %d", ErrLayout, l.Serials[0], opts.FirstSerial)
	}
	return nil
}

// create makes a new sim: the fleet's attestation root, the cards, and last the layout, which marks
// the directory as a sim.
func create(dir string, opts UpOptions) (*layout, error) {
	if opts.Cards < 1 || opts.Cards > MaxCards {
		return nil, fmt.Errorf("sim: a new sim needs 1 to %d cards, not %d", MaxCards, opts.Cards)
	}
	profile, err := ParseProfile(string(opts.Profile))
	if err != nil {
		return nil, err
	}
	first := opts.FirstSerial
	if first == 0 {
		first = DefaultFirstSerial
	}
	if uint64(first)+uint64(opts.Cards)-1 > 0xFFFFFFFF {
		return nil, fmt.Errorf("sim: serials from %d for %d cards overflow 32 bits", first, opts.Cards)
	}
	fleet, err := OpenFleet(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, cardsDir), 0o700); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	l := &layout{Version: 1, Profile: profile}
	for i := range opts.Cards {
		serial := first + uint32(i)
		if _, err := fleet.NewCard(cardFile(dir, serial), serial, profile); err != nil {
			return nil, fmt.Errorf("sim: new card %d: %w", serial, err)
		}
		l.Serials = append(l.Serials, serial)
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, layoutFile), append(b, '\n'), 0o600, true); err != nil {
		return nil, fmt.Errorf("sim: write layout: %w", err)
	}
	return l, nil
}

// start runs unshare with the daemon, logging to DIR/sim.log, and records its PID.
func start(dir string, opts UpOptions) (*Sim, error) {
	// The daemon is this program: started with ServeEnv set, it calls Serve.
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	for _, f := range []string{controlSock, filepath.Join(pcscdDir, pcscdSock), filepath.Join(pcscdDir, "pcscd.pid")} {
		os.Remove(filepath.Join(dir, f))
	}
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sim: log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("unshare", append(slices.Clone(unshareArgs), exe)...)
	cmd.Env = append(scrubEnv(os.Environ()), ServeEnv+"="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	if opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sim: start unshare: %w", err)
	}
	s := &Sim{dir: dir, child: cmd, exit: make(chan error, 1)}
	go func() { s.exit <- cmd.Wait() }()
	st, err := procStartTime(cmd.Process.Pid)
	if err == nil {
		var b []byte
		b, err = json.Marshal(runInfo{PID: cmd.Process.Pid, StartTime: st})
		if err == nil {
			err = writeFileAtomic(filepath.Join(dir, runFile), b, 0o600, false)
		}
	}
	if err != nil {
		cmd.Process.Kill()
		<-s.exit
		return nil, fmt.Errorf("sim: record daemon: %w", err)
	}
	return s, nil
}

// waitReady waits for the daemon to report every card ready (see Link.Ready), then for PC/SC to list
// exactly the sim's readers and for each card to answer with its serial.
func (s *Sim) waitReady(l *layout, deadline time.Time) error {
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exit:
			s.exit <- err
			return fmt.Errorf("sim: daemon exited (%v) before the cards answered; see %s", err, filepath.Join(s.dir, logFile))
		case <-time.After(50 * time.Millisecond):
		}
		st, err := s.Status()
		if err != nil {
			last = err
			continue
		}
		if last = st.notReady(); last != nil {
			continue
		}
		if err := os.Setenv("PCSCLITE_CSOCK_NAME", SocketPath(s.dir)); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		if last = checkPCSC(l); last == nil {
			return nil
		}
	}
	return fmt.Errorf("sim: cards not answering by the deadline: %w (see %s)", last, filepath.Join(s.dir, logFile))
}

func (st *Status) notReady() error {
	if !st.PCSCDUp {
		return errors.New("pcscd not running")
	}
	for _, c := range st.Cards {
		if c.Inserted && !c.Ready {
			return fmt.Errorf("card %d not connected to %s", c.Serial, c.Reader)
		}
	}
	return nil
}

// checkPCSC asks pcscd, as any client would, for its readers and each inserted card's serial.
func checkPCSC(l *layout) error {
	readers, err := piv.Cards()
	if err != nil {
		return fmt.Errorf("list readers: %w", err)
	}
	want := readerNames(len(l.Serials))
	if !slices.Equal(slices.Sorted(slices.Values(readers)), want) {
		return fmt.Errorf("pcscd lists readers %q, want %q", readers, want)
	}
	for i, serial := range l.Serials {
		yk, err := piv.Open(readerName(i))
		if err != nil {
			return fmt.Errorf("open %s: %w", readerName(i), err)
		}
		got, err := yk.Serial()
		yk.Close()
		if err != nil {
			return fmt.Errorf("serial of %s: %w", readerName(i), err)
		}
		if got != serial {
			return fmt.Errorf("%s answers serial %d, want %d", readerName(i), got, serial)
		}
	}
	return nil
}

// Attach returns the running sim in dir, for status, eject, insert and down from another process.
func Attach(dir string) (*Sim, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if _, err := readLayout(dir); err != nil {
		return nil, err
	}
	return &Sim{dir: dir}, nil
}

// Exports returns the shell lines that point PC/SC clients and custos at the sim.
func (s *Sim) Exports() string {
	return "export PCSCLITE_CSOCK_NAME=" + shellQuote(SocketPath(s.dir)) + "\n" +
		"export CUSTOS_SIM_DIR=" + shellQuote(s.dir) + "\n"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Status asks the daemon for the sim's state.
func (s *Sim) Status() (*Status, error) {
	rep, err := call(s.dir, request{Op: "status"}, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return rep.Status, nil
}

// Eject takes the card out of its reader; PC/SC clients see it removed. The card keeps its state.
func (s *Sim) Eject(serial uint32) error {
	_, err := call(s.dir, request{Op: "eject", Serial: serial}, 10*time.Second)
	return err
}

// Insert puts the card back into its reader and returns once pcscd has taken it in.
func (s *Sim) Insert(serial uint32) error {
	_, err := call(s.dir, request{Op: "insert", Serial: serial}, readyTimeout+5*time.Second)
	return err
}

// SetTouch sets whether the card's holder approves touches (approved by default).
func (s *Sim) SetTouch(serial uint32, approve bool) error {
	_, err := call(s.dir, request{Op: "touch", Serial: serial, Approve: approve}, 5*time.Second)
	return err
}

// Snapshot saves the card's current state under name (letters, digits, '.', '_', '-').
func (s *Sim) Snapshot(serial uint32, name string) error {
	_, err := call(s.dir, request{Op: "snapshot", Serial: serial, Name: name}, 10*time.Second)
	return err
}

// Restore puts the card back into the state saved under name. The card stays in its reader; a
// client holding it open finds it reset.
func (s *Sim) Restore(serial uint32, name string) error {
	_, err := call(s.dir, request{Op: "restore", Serial: serial, Name: name}, readyTimeout+10*time.Second)
	return err
}

// Down stops the sim's daemon, pcscd and the namespaces, and waits until they are gone; the card
// files stay. Down on a sim that is not running only tidies up.
func (s *Sim) Down() error {
	info, _ := s.readRun()
	_, callErr := call(s.dir, request{Op: "down"}, 5*time.Second)
	if callErr != nil && !errors.Is(callErr, ErrNotRunning) {
		return callErr
	}
	err := s.waitGone(info, 15*time.Second)
	os.Remove(filepath.Join(s.dir, runFile))
	return err
}

func (s *Sim) readRun() (*runInfo, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, runFile))
	if err != nil {
		return nil, err
	}
	var info runInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// waitGone waits for the unshare process to end. When it takes too long it sends the daemon SIGTERM
// (unshare itself ignores SIGTERM), then unshare SIGKILL, which kills the daemon (--kill-child) and
// with it the whole PID namespace.
func (s *Sim) waitGone(info *runInfo, timeout time.Duration) error {
	if info == nil {
		return nil
	}
	if s.gone(info, timeout) {
		return nil
	}
	for _, pid := range children(info.PID) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if len(children(info.PID)) > 0 {
		if s.gone(info, 5*time.Second) {
			return fmt.Errorf("sim: daemon did not stop within %v; stopped it with SIGTERM", timeout)
		}
	}
	syscall.Kill(info.PID, syscall.SIGKILL)
	if s.gone(info, 5*time.Second) {
		return fmt.Errorf("sim: daemon did not stop within %v; killed it", timeout)
	}
	return fmt.Errorf("sim: daemon (unshare pid %d) would not stop", info.PID)
}

// gone waits up to timeout for the unshare process to end.
func (s *Sim) gone(info *runInfo, timeout time.Duration) bool {
	if s.child != nil {
		select {
		case err := <-s.exit:
			s.exit <- err
			return true
		case <-time.After(timeout):
			return false
		}
	}
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !alive(info) {
			return true
		}
	}
	return false
}

// children returns the PIDs of pid's children (of all its threads).
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Processes returns the host PIDs of the sim's processes: unshare first, then the daemon, pcscd and
// anything else they started.
func (s *Sim) Processes() ([]int, error) {
	info, err := s.readRun()
	if err != nil || !alive(info) {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, s.dir)
	}
	pids := []int{info.PID}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, children(pids[i])...)
	}
	return pids, nil
}

// alive reports whether the recorded process still runs (a zombie or a reused PID does not count).
func alive(info *runInfo) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", info.PID))
	if err != nil {
		return false
	}
	f := statFields(b)
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && st == info.StartTime
}

// procStartTime reads a process's start time (clock ticks after boot) from /proc.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := statFields(b)
	if len(f) < 20 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// statFields returns /proc/PID/stat's fields after the command name: state first (field 3), so
// start time (field 22) is at index 19.
func statFields(b []byte) []string {
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}
