package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Preflight check names, as --allow-deviation takes them.
const (
	CheckNetwork     = "network"
	CheckSwap        = "swap"
	CheckCoreDumps   = "core-dumps"
	CheckMemoryLock  = "memory-lock"
	CheckVPCD        = "vpcd"
	CheckEnvironment = "environment"
)

// ErrPreflight is returned when a production flow's preflight fails a check no deviation allows.
var ErrPreflight = errors.New("preflight failed")

// PreflightCheck is one check's result.
type PreflightCheck struct {
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Detail    string `json:"detail"`
	Deviation bool   `json:"deviation"` // failed, and allowed by --allow-deviation
}

// PreflightReport is what preflight shows the witnesses and the record keeps.
type PreflightReport struct {
	Checks       []PreflightCheck `json:"checks"`
	Clock        string           `json:"clock"`
	BinarySHA256 string           `json:"binary_sha256"`
}

// Host is what preflight reads of the machine. The zero value reads the real one.
type Host struct {
	Root       string                          // prefix for /proc, /sys and /etc (tests)
	Getenv     func() []string                 // the environment (os.Environ)
	Interfaces func() ([]net.Interface, error) // net.Interfaces
	Warnings   []string                        // process hygiene that could not be applied (hygiene.Apply)
	Now        func() time.Time
}

// FailedChecks returns the names of the checks that failed without a deviation.
func (r *PreflightReport) FailedChecks() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK && !c.Deviation {
			out = append(out, c.Name)
		}
	}
	return out
}

// Deviations lists the failed checks a deviation allowed, as the manifest records them.
func (r *PreflightReport) Deviations() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Deviation {
			out = append(out, "preflight "+c.Name+": "+c.Detail)
		}
	}
	return out
}

// Facts returns the report as transcript facts.
func (r *PreflightReport) Facts() Facts {
	checks := []any{}
	for _, c := range r.Checks {
		checks = append(checks, Facts{"name": c.Name, "ok": c.OK, "detail": c.Detail, "deviation": c.Deviation})
	}
	return Facts{"checks": checks, "clock": r.Clock, "binary_sha256": r.BinarySHA256}
}

// Preflight checks the ceremony host: no network interface up but loopback (a deviation may name one
// HSM interface, which must have no default route), swap off, core dumps off, memory locking in force, no
// vpcd reader configured, and no PCSCLITE_CSOCK_NAME or CUSTOS_* variable set. allow names checks whose
// failure is accepted as a recorded deviation ("network=IFACE" for an HSM interface). In production a
// failure no deviation allows stops the flow with ErrPreflight; in rehearsal the report only records it.
func Preflight(h Host, binarySHA256 string, allow []string, rehearsal bool) (*PreflightReport, error) {
	if h.Getenv == nil {
		h.Getenv = os.Environ
	}
	if h.Interfaces == nil {
		h.Interfaces = net.Interfaces
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	allowed := map[string]string{}
	for _, a := range allow {
		name, arg, _ := strings.Cut(a, "=")
		switch name {
		case CheckNetwork:
			if arg == "" {
				return nil, fmt.Errorf("%w: --allow-deviation network=IFACE names the one HSM interface that may be up", ErrUsage)
			}
			allowed[name] = arg
		case CheckSwap, CheckCoreDumps, CheckMemoryLock, CheckVPCD, CheckEnvironment:
			allowed[name] = arg
		default:
			return nil, fmt.Errorf("%w: --allow-deviation %q: no such check; the checks are %s", ErrUsage, a,
				strings.Join([]string{CheckNetwork, CheckSwap, CheckCoreDumps, CheckMemoryLock, CheckVPCD, CheckEnvironment}, ", "))
		}
	}
	r := &PreflightReport{Clock: h.Now().UTC().Format(time.RFC3339), BinarySHA256: binarySHA256}
	add := func(name string, ok bool, detail string) {
		_, dev := allowed[name]
		r.Checks = append(r.Checks, PreflightCheck{Name: name, OK: ok, Detail: detail, Deviation: !ok && dev})
	}
	ok, dev, detail := h.checkNetwork(allowed[CheckNetwork])
	r.Checks = append(r.Checks, PreflightCheck{Name: CheckNetwork, OK: ok, Detail: detail, Deviation: dev})
	ok, detail = h.checkSwap()
	add(CheckSwap, ok, detail)
	ok, detail = checkCoreDumps()
	add(CheckCoreDumps, ok, detail)
	if len(h.Warnings) == 0 {
		add(CheckMemoryLock, true, "memory locked (mlockall)")
	} else {
		add(CheckMemoryLock, false, strings.Join(h.Warnings, "; "))
	}
	ok, detail = h.checkVPCD()
	add(CheckVPCD, ok, detail)
	ok, detail = h.checkEnvironment()
	add(CheckEnvironment, ok, detail)

	if failed := r.FailedChecks(); len(failed) > 0 && !rehearsal {
		var msgs []string
		for _, name := range failed {
			msgs = append(msgs, name+": "+r.check(name).Detail)
		}
		return r, fmt.Errorf("%w: %s; fix the host, or record a deviation with --allow-deviation %s", ErrPreflight, strings.Join(msgs, "; "), failed[0])
	}
	return r, nil
}

func (r *PreflightReport) check(name string) PreflightCheck {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return PreflightCheck{}
}

// checkNetwork: every interface that is up must be a loopback. A deviation may name one HSM interface
// that is up too, which must carry no default route; it is reported as a deviation, never as a pass.
func (h Host) checkNetwork(hsmIface string) (ok, deviation bool, detail string) {
	ifaces, err := h.Interfaces()
	if err != nil {
		return false, false, fmt.Sprintf("cannot list network interfaces: %v", err)
	}
	var up []string
	hsmUp := false
	for _, i := range ifaces {
		switch {
		case i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0:
		case i.Name == hsmIface:
			hsmUp = true
		default:
			up = append(up, i.Name)
		}
	}
	if len(up) > 0 {
		return false, false, fmt.Sprintf("network interface %s is up; an offline ceremony host has only loopback", strings.Join(up, ", "))
	}
	if !hsmUp {
		return true, false, "only loopback is up"
	}
	routes, _ := os.ReadFile(filepath.Join(h.Root, "/proc/net/route"))
	for _, l := range strings.Split(string(routes), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 2 && f[0] == hsmIface && f[1] == "00000000" {
			return false, false, fmt.Sprintf("HSM interface %s carries a default route; remove it", hsmIface)
		}
	}
	return false, true, fmt.Sprintf("HSM interface %s is up (no default route); only loopback besides", hsmIface)
}

func (h Host) checkSwap() (bool, string) {
	b, err := os.ReadFile(filepath.Join(h.Root, "/proc/swaps"))
	if err != nil {
		return false, fmt.Sprintf("cannot read /proc/swaps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 1 {
		return false, fmt.Sprintf("swap is on (%s); run swapoff -a", strings.Fields(lines[1])[0])
	}
	return true, "swap is off"
}

func checkCoreDumps() (bool, string) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		return false, fmt.Sprintf("cannot read RLIMIT_CORE: %v", err)
	}
	if lim.Cur != 0 {
		return false, fmt.Sprintf("core dumps are on (RLIMIT_CORE %d)", lim.Cur)
	}
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || dumpable != 0 {
		return false, "the process is dumpable"
	}
	return true, "core dumps are off and the process is not dumpable"
}

// checkVPCD refuses any pcsc-lite reader configuration that loads vsmartcard's vpcd driver: it lets any
// process pose as a smart card.
func (h Host) checkVPCD() (bool, string) {
	var found []string
	confs, _ := filepath.Glob(filepath.Join(h.Root, "/etc/reader.conf.d/*"))
	for _, c := range confs {
		if b, err := os.ReadFile(c); err == nil && bytes.Contains(b, []byte("vpcd")) {
			found = append(found, c)
		}
	}
	sort.Strings(found)
	if len(found) > 0 {
		return false, fmt.Sprintf("a vpcd virtual reader is configured in %s; remove it and restart pcscd", strings.Join(found, ", "))
	}
	return true, "no vpcd reader configured"
}

// checkEnvironment refuses the variables that steer custos or PC/SC toward rehearsal parts.
func (h Host) checkEnvironment() (bool, string) {
	var set []string
	for _, kv := range h.Getenv() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "PCSCLITE_CSOCK_NAME" || strings.HasPrefix(name, "CUSTOS_") {
			set = append(set, name)
		}
	}
	sort.Strings(set)
	if len(set) > 0 {
		return false, fmt.Sprintf("%s set; production takes PINs and readers only from the terminal and the host's pcscd (unset them)", strings.Join(set, ", "))
	}
	return true, "no PCSCLITE_CSOCK_NAME or CUSTOS_* variable set"
}
