package ceremony

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost lays out a host root with the given files.
func fakeHost(t *testing.T, files map[string]string, ifaces []net.Interface, env []string) Host {
	root := t.TempDir()
	for p, s := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o700)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o600)
	}
	return Host{
		Root:       root,
		Getenv:     func() []string { return env },
		Interfaces: func() ([]net.Interface, error) { return ifaces, nil },
	}
}

var (
	lo   = net.Interface{Name: "lo", Flags: net.FlagUp | net.FlagLoopback}
	eth0 = net.Interface{Name: "eth0", Flags: net.FlagUp}
	hsm0 = net.Interface{Name: "hsm0", Flags: net.FlagUp}
)

const noSwap = "Filename\tType\tSize\tUsed\tPriority\n"

func TestPreflightChecks(t *testing.T) {
	clean := map[string]string{"/proc/swaps": noSwap, "/proc/net/route": "Iface\tDestination\n"}
	for name, c := range map[string]struct {
		files  map[string]string
		ifaces []net.Interface
		env    []string
		allow  []string
		failed string // the first failed check, "" for none
		detail string
	}{
		"clean":         {clean, []net.Interface{lo}, []string{"HOME=/root"}, nil, "", ""},
		"network up":    {clean, []net.Interface{lo, eth0}, nil, nil, CheckNetwork, "network interface eth0 is up"},
		"hsm interface": {clean, []net.Interface{lo, hsm0}, nil, []string{"network=hsm0"}, "", ""},
		"hsm default route": {map[string]string{"/proc/swaps": noSwap, "/proc/net/route": "Iface\tDestination\nhsm0\t00000000\t010200C0\n"},
			[]net.Interface{lo, hsm0}, nil, []string{"network=hsm0"}, CheckNetwork, "HSM interface hsm0 carries a default route"},
		"swap on":     {map[string]string{"/proc/swaps": noSwap + "/swapfile file 100 0 -2\n"}, []net.Interface{lo}, nil, nil, CheckSwap, "swap is on (/swapfile)"},
		"vpcd reader": {map[string]string{"/proc/swaps": noSwap, "/etc/reader.conf.d/vpcd": "LIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"}, []net.Interface{lo}, nil, nil, CheckVPCD, "a vpcd virtual reader is configured"},
		"custos pin":  {clean, []net.Interface{lo}, []string{"CUSTOS_PIN=123456"}, nil, CheckEnvironment, "CUSTOS_PIN set"},
		"pcsc socket": {clean, []net.Interface{lo}, []string{"PCSCLITE_CSOCK_NAME=/tmp/x"}, nil, CheckEnvironment, "PCSCLITE_CSOCK_NAME set"},
		"deviation":   {clean, []net.Interface{lo}, []string{"CUSTOS_SIM_DIR=/x"}, []string{CheckEnvironment}, "", ""},
	} {
		h := fakeHost(t, c.files, c.ifaces, c.env)
		// Memory locking and core dumps depend on the test process, not on the fake host.
		r, err := Preflight(h, "abc", append(c.allow, CheckMemoryLock, CheckCoreDumps), false)
		failed := r.FailedChecks()
		switch {
		case c.failed == "" && len(failed) > 0:
			t.Errorf("%s: failed %v: %v", name, failed, err)
		case c.failed != "" && (len(failed) == 0 || failed[0] != c.failed):
			t.Errorf("%s: failed %v, want %s", name, failed, c.failed)
		case c.failed != "" && (!errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), c.detail)):
			t.Errorf("%s: %v, want %q", name, err, c.detail)
		}
		// In rehearsal the same report is only recorded.
		if _, err := Preflight(h, "abc", c.allow, true); err != nil {
			t.Errorf("%s: rehearsal: %v", name, err)
		}
	}
}

func TestPreflightDeviationRecorded(t *testing.T) {
	h := fakeHost(t, map[string]string{"/proc/swaps": noSwap}, []net.Interface{lo, eth0}, nil)
	h2 := fakeHost(t, map[string]string{"/proc/swaps": noSwap}, []net.Interface{lo, hsm0}, nil)
	r, _ := Preflight(h2, "abc", []string{"network=hsm0"}, false)
	c := r.check(CheckNetwork)
	if c.OK || !c.Deviation {
		t.Fatalf("network check %+v, want failed and recorded as a deviation", c)
	}
	if _, err := Preflight(h, "abc", []string{"networks"}, false); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown check name: %v", err)
	}
	if _, err := Preflight(h, "abc", []string{"network"}, false); !errors.Is(err, ErrUsage) {
		t.Fatalf("network deviation without an interface: %v", err)
	}
}

// TestPreflightThisHost: this machine has its network up, so production stops at preflight naming the
// check, and a rehearsal records it and goes on.
func TestPreflightThisHost(t *testing.T) {
	ifaces, _ := net.Interfaces()
	up := false
	for _, i := range ifaces {
		up = up || (i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0)
	}
	if !up {
		t.Fatal("this test expects a host with a network interface up, as CI and development machines have")
	}
	_, err := Preflight(Host{}, "abc", nil, false)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "preflight failed: network: network interface") {
		t.Fatalf("production: %v", err)
	}
	r, err := Preflight(Host{}, "abc", nil, true)
	if err != nil || r.check(CheckNetwork).OK {
		t.Fatalf("rehearsal: %v, network %+v", err, r.check(CheckNetwork))
	}
}
