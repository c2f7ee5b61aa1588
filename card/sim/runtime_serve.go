package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ServeEnv is the environment variable through which Up tells the program it starts inside the sim's
// namespaces (itself, again) which directory to serve. That program calls Serve with its value.
const ServeEnv = "CUSTOS_SIM_SERVE"

// readyTimeout bounds how long insert waits for pcscd to take a card in.
const readyTimeout = 10 * time.Second

// ErrNotIsolated is returned by Serve outside the namespaces Up creates: Serve mounts over /run and
// must never do that in the host's mount namespace.
var ErrNotIsolated = errors.New("sim: serve runs only inside the sim's namespaces (custos-sim up starts it)")

// daemon is the sim's process inside its namespaces: it isolates pcscd, runs it, links the cards to
// its vpcd readers and answers the control socket.
type daemon struct {
	dir     string
	layout  *layout
	links   []*Link
	log     *log.Logger
	stopped chan struct{} // closed by a down request
	stop    sync.Once

	opMu sync.Mutex // one control operation at a time

	mu          sync.Mutex
	pcscdStarts int
	pcscdUp     bool
}

// Serve runs the sim in dir until a down request, SIGTERM or SIGINT. It must run as the first process
// of the PID namespace inside the user, mount and network namespaces that Up creates; anywhere else it
// returns ErrNotIsolated without touching anything.
func Serve(dir string) error {
	if err := checkIsolated(); err != nil {
		return err
	}
	l, err := readLayout(dir)
	if err != nil {
		return err
	}
	d := &daemon{dir: dir, layout: l, log: log.New(os.Stderr, "custos-sim: ", log.LstdFlags), stopped: make(chan struct{})}
	if err := isolate(dir); err != nil {
		return err
	}
	for i, serial := range l.Serials {
		c, err := LoadCard(cardFile(dir, serial))
		if err != nil {
			return fmt.Errorf("sim: load card %d: %w", serial, err)
		}
		if c.Serial() != serial {
			return fmt.Errorf("sim: card file for %d holds serial %d", serial, c.Serial())
		}
		d.links = append(d.links, NewLink(fmt.Sprintf("127.0.0.1:%d", cardPort(i)), c))
	}

	sock := filepath.Join(dir, controlSock)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("sim: control socket: %w", err)
	}
	defer os.Remove(sock)
	defer ln.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		return fmt.Errorf("sim: control socket: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, lk := range d.links {
		wg.Go(func() { lk.Run(ctx) })
	}
	wg.Go(func() { d.runPCSCD(ctx) })
	go d.accept(ln)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sigs:
		d.log.Printf("%v: going down", s)
	case <-d.stopped:
		d.log.Printf("down requested")
	}
	cancel()
	wg.Wait()
	return nil
}

// checkIsolated makes sure this process is PID 1 of its PID namespace, inside a user namespace.
func checkIsolated() error {
	if os.Getpid() != 1 {
		return ErrNotIsolated
	}
	m, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotIsolated, err)
	}
	if f := strings.Fields(string(m)); len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
		return ErrNotIsolated // the initial user namespace
	}
	return nil
}

// isolate hides the host's /run (so /run/pcscd, pcscd's fixed directory, is the sim's own, bound to
// DIR/pcscd where host clients find the socket) and the host's reader drivers (so no USB reader or real
// card is ever seen), and brings up loopback for vpcd's TCP ports.
func isolate(dir string) error {
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("sim: mount tmpfs on /run: %w", err)
	}
	if err := os.Mkdir("/run/pcscd", 0o755); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := unix.Mount(filepath.Join(dir, pcscdDir), "/run/pcscd", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("sim: bind %s on /run/pcscd: %w", pcscdDir, err)
	}
	drivers := filepath.Dir(filepath.Dir(vpcdDriver))
	if _, err := os.Stat(drivers); err == nil {
		if err := unix.Mount(filepath.Join(dir, emptyDrivers), drivers, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("sim: hide %s: %w", drivers, err)
		}
	}
	return loopbackUp()
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sim: loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("sim: loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("sim: loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("sim: loopback up: %w", err)
	}
	return nil
}

// runPCSCD runs pcscd until ctx is done, starting it again whenever it exits on its own; the cards
// reconnect to the new instance by themselves.
func (d *daemon) runPCSCD(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		// pcscd refuses to start while its socket exists, and a crash leaves it behind.
		for _, f := range []string{pcscdSock, "pcscd.pid"} {
			os.Remove(filepath.Join(d.dir, pcscdDir, f))
		}
		cmd := exec.Command(pcscdPath(), "--foreground", "--config", filepath.Join(d.dir, readerConf))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = scrubEnv(os.Environ())
		if err := cmd.Start(); err != nil {
			d.log.Printf("start pcscd: %v", err)
		} else {
			d.setPCSCD(true)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				d.log.Printf("pcscd exited (%v); starting it again", err)
			case <-ctx.Done():
				stopProcess(cmd, done)
			}
			d.setPCSCD(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (d *daemon) setPCSCD(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pcscdUp = up
	if up {
		d.pcscdStarts++
	}
}

// stopProcess asks a process to end, and kills it if it has not after five seconds.
func stopProcess(cmd *exec.Cmd, done <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// pcscdPath finds pcscd, which lives in /usr/sbin, often not on a user's PATH.
func pcscdPath() string {
	if p, err := exec.LookPath("pcscd"); err == nil {
		return p
	}
	return "/usr/sbin/pcscd"
}

// scrubEnv drops the variables meant for custos-sim and PC/SC clients from pcscd's environment.
func scrubEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, ServeEnv+"=") || strings.HasPrefix(kv, "PCSCLITE_CSOCK_NAME=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (d *daemon) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go d.handle(conn)
	}
}

func (d *daemon) handle(conn net.Conn) {
	defer conn.Close()
	var req request
	if err := json.NewDecoder(io.LimitReader(conn, 1<<16)).Decode(&req); err != nil {
		return
	}
	rep := d.do(req)
	json.NewEncoder(conn).Encode(rep)
	if req.Op == "down" && rep.Error == "" {
		d.stop.Do(func() { close(d.stopped) })
	}
}

var snapshotName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (d *daemon) do(req request) *reply {
	if req.Op == "status" {
		return &reply{Status: d.status()}
	}
	if req.Op == "down" {
		return &reply{}
	}
	i := d.index(req.Serial)
	if i < 0 {
		return &reply{NoCard: true}
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	lk := d.links[i]
	var err error
	switch req.Op {
	case "eject":
		lk.Eject()
	case "insert":
		lk.Insert()
		err = lk.WaitReady(readyTimeout)
	case "touch":
		err = lk.Card().SetTouchApproval(req.Approve)
	case "snapshot", "restore":
		if !snapshotName.MatchString(req.Name) || strings.Trim(req.Name, ".") == "" {
			return &reply{Error: fmt.Sprintf("bad snapshot name %q", req.Name)}
		}
		if req.Op == "snapshot" {
			err = d.snapshot(lk, req.Serial, req.Name)
		} else {
			err = d.restore(lk, req.Serial, req.Name)
		}
	default:
		return &reply{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
	if err != nil {
		return &reply{Error: err.Error(), Timeout: errors.Is(err, ErrLinkTimeout)}
	}
	return &reply{}
}

func (d *daemon) index(serial uint32) int {
	for i, s := range d.layout.Serials {
		if s == serial {
			return i
		}
	}
	return -1
}

func (d *daemon) status() *Status {
	d.mu.Lock()
	st := &Status{Dir: d.dir, Socket: SocketPath(d.dir), Profile: string(d.layout.Profile),
		PCSCDStarts: d.pcscdStarts, PCSCDUp: d.pcscdUp}
	d.mu.Unlock()
	for i, lk := range d.links {
		st.Cards = append(st.Cards, cardStatus(d.layout.Serials[i], i, lk))
	}
	return st
}

func snapshotFile(dir string, serial uint32, name string) string {
	return filepath.Join(dir, snapshotsDir, fmt.Sprintf("%d-%s.card", serial, name))
}

// snapshot copies the card's file while the card handles no command.
func (d *daemon) snapshot(lk *Link, serial uint32, name string) error {
	return lk.Swap(func() (*Card, error) {
		return lk.Card(), copyFile(snapshotFile(d.dir, serial, name), cardFile(d.dir, serial))
	})
}

// restore puts a snapshot back: while the card handles no command, its file is replaced and the card
// loaded afresh. The card stays in its reader; to clients it looks reset.
func (d *daemon) restore(lk *Link, serial uint32, name string) error {
	snap := snapshotFile(d.dir, serial, name)
	if _, err := os.Stat(snap); err != nil {
		return fmt.Errorf("snapshot %q of card %d: %w", name, serial, err)
	}
	return lk.Swap(func() (*Card, error) {
		if err := copyFile(cardFile(d.dir, serial), snap); err != nil {
			return nil, err
		}
		c, err := LoadCard(cardFile(d.dir, serial))
		if err != nil {
			return nil, fmt.Errorf("load restored card %d: %w", serial, err)
		}
		return c, nil
	})
}

// copyFile replaces dst with a copy of src, atomically (a temporary file renamed over dst), mode 0600.
func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("sim: copy: %w", err)
	}
	defer clear(b)
	return writeFileAtomic(dst, b, 0o600, true)
}
