package hygiene

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestApply: after Apply the process is not dumpable, core dumps are off, and memory is either locked or
// a warning says why not.
func TestApply(t *testing.T) {
	warnings := Apply()
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || dumpable != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, %v; want 0", dumpable, err)
	}
	var core unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil || core.Cur != 0 {
		t.Errorf("RLIMIT_CORE = %d, %v; want 0", core.Cur, err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	locked := false
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmLck:" && f[1] != "0" {
			locked = true
		}
	}
	warned := false
	for _, w := range warnings {
		if strings.HasPrefix(w, "memory not locked") {
			warned = true
		}
	}
	if locked == warned {
		t.Errorf("memory locked: %v, warning given: %v (%q); exactly one must hold", locked, warned, warnings)
	}
}
