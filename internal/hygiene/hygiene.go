// Package hygiene applies the process protections of DESIGN.md invariant 1 at start-up: memory locked
// (mlockall with MCL_ONFAULT) so secrets never reach swap, the process not dumpable (no ptrace by other
// users, no core file), and core dumps off. What could not be applied is returned as warnings, which
// the caller prints and the record keeps.
package hygiene

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// minLockLimit is the RLIMIT_MEMLOCK below which custos does not lock memory: with MCL_FUTURE every later
// allocation counts against the limit, and the Go runtime cannot survive a failed mmap. 1 GiB covers
// every flow, including RSA-4096 generation.
const minLockLimit = 1 << 30

// Apply protects the running process and returns warnings for what it could not do.
func Apply() []string {
	var warnings []string
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		warnings = append(warnings, fmt.Sprintf("could not mark the process non-dumpable: %v", err))
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		warnings = append(warnings, fmt.Sprintf("could not turn core dumps off: %v", err))
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return append(warnings, fmt.Sprintf("memory not locked: cannot read RLIMIT_MEMLOCK: %v", err))
	}
	if lim.Cur != unix.RLIM_INFINITY && lim.Cur < minLockLimit {
		// Lifting the limit works with CAP_SYS_RESOURCE; raising the soft limit to the hard one needs no
		// privilege.
		if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}) != nil {
			lim.Cur = lim.Max
			_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim)
		}
		_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	}
	if lim.Cur != unix.RLIM_INFINITY && lim.Cur < minLockLimit {
		return append(warnings, fmt.Sprintf("memory not locked: RLIMIT_MEMLOCK is %d bytes; raise it (ulimit -l unlimited, or grant CAP_IPC_LOCK) so secrets cannot reach swap", lim.Cur))
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		warnings = append(warnings, fmt.Sprintf("memory not locked: mlockall: %v", err))
	}
	return warnings
}
