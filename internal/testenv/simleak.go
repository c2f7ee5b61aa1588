package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/custos-pki/custos/card/sim"
)

// hostState is what the sim must leave as it found it in the host's namespaces.
type hostState struct {
	listeners []string // TCP listening sockets, sorted
	mounts    []string // mount points the sim's daemon mounts over, as mounted on the host
}

func snapshotHost() (hostState, error) {
	l, err := listeners()
	if err != nil {
		return hostState{}, err
	}
	m, err := simMountPoints("")
	if err != nil {
		return hostState{}, err
	}
	return hostState{listeners: l, mounts: m}, nil
}

// listeners returns the TCP sockets listening in this process's network namespace, like `ss -ltnH`:
// "tcp 0100007F:8C7B" (hex address and port as /proc/net/tcp writes them).
func listeners() ([]string, error) {
	var out []string
	for _, proto := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/net/" + proto)
		if errors.Is(err, os.ErrNotExist) && proto == "tcp6" {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 3 && f[3] == "0A" { // TCP_LISTEN
				out = append(out, proto+" "+f[1])
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// simMountPoints returns the lines of this process's mount table whose mount point is one the sim
// mounts over inside its namespace (/run, /run/pcscd, /usr/lib/pcsc/drivers) or lies under dir.
func simMountPoints(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := f[4]
		if mp == "/run" || mp == "/run/pcscd" || mp == "/usr/lib/pcsc/drivers" ||
			(dir != "" && (mp == dir || strings.HasPrefix(mp, dir+"/"))) {
			out = append(out, strings.Join(f[4:], " "))
		}
	}
	slices.Sort(out)
	return out, nil
}

// simNS identifies a running sim's processes and namespaces.
type simNS struct {
	pids []procID
	ns   map[string]bool // "pid:[4026532…]", "net:[…]", "mnt:[…]" of the processes inside
}

type procID struct {
	pid   int
	start string
}

func simNamespaces(s *sim.Sim) (*simNS, error) {
	pids, err := s.Processes()
	if err != nil {
		return nil, err
	}
	out := &simNS{ns: map[string]bool{}}
	for i, pid := range pids {
		id, err := readProcID(pid)
		if err != nil {
			return nil, err
		}
		out.pids = append(out.pids, id)
		if i == 0 {
			continue // unshare itself runs in the host's namespaces
		}
		for _, kind := range []string{"pid", "net", "mnt"} {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
			if err != nil {
				return nil, err
			}
			out.ns[l] = true
		}
	}
	if len(out.ns) == 0 {
		return nil, errors.New("no process inside the sim's namespaces")
	}
	return out, nil
}

func readProcID(pid int) (procID, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procID{}, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return procID{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return procID{}, fmt.Errorf("process %d is a zombie", pid)
	}
	return procID{pid: pid, start: f[19]}, nil
}

// checkNoLeak checks, after down, that no process of the sim runs and none sits in its namespaces
// (which therefore no longer exist), that the host's mount table and listening sockets are as before,
// and that no socket file is left in dir.
func checkNoLeak(dir string, n *simNS, before hostState) error {
	var leaks []string
	for _, id := range n.pids {
		if now, err := readProcID(id.pid); err == nil && now.start == id.start {
			leaks = append(leaks, fmt.Sprintf("process %d still runs", id.pid))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		for _, kind := range []string{"pid", "net", "mnt"} {
			if l, err := os.Readlink(p + "/ns/" + kind); err == nil && n.ns[l] {
				leaks = append(leaks, fmt.Sprintf("%s is in the sim's namespace %s", p, l))
			}
		}
	}
	if m, err := simMountPoints(dir); err != nil {
		return err
	} else if !slices.Equal(m, before.mounts) {
		leaks = append(leaks, fmt.Sprintf("host mounts changed: before %q, after %q", before.mounts, m))
	}
	if l, err := listeners(); err != nil {
		return err
	} else if !slices.Equal(l, before.listeners) {
		leaks = append(leaks, fmt.Sprintf("host listening sockets changed: before %q, after %q", before.listeners, l))
	}
	for _, f := range []string{"control.sock", "pcscd/pcscd.comm", "pcscd/pcscd.pid"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			leaks = append(leaks, dir+"/"+f+" left behind")
		}
	}
	if len(leaks) > 0 {
		return fmt.Errorf("after down: %s", strings.Join(leaks, "; "))
	}
	return nil
}
