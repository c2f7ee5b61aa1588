package testenv

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// simScriptEnv sets, when the test process has a sim, SIM_DIR and SIM_SOCK (for a script's
// "env CUSTOS_SIM_DIR=$SIM_DIR" and "env PCSCLITE_CSOCK_NAME=$SIM_SOCK": scripts that do not use
// cards keep a production environment) and SIM1 … SIMn, the cards' serials.
func simScriptEnv(e *testscript.Env) {
	if theSim == nil {
		return
	}
	e.Setenv("SIM_DIR", theSim.dir)
	e.Setenv("SIM_SOCK", theSim.dir+"/pcscd/pcscd.comm")
	for i, s := range theSim.serials {
		e.Setenv(fmt.Sprintf("SIM%d", i+1), strconv.FormatUint(uint64(s), 10))
	}
}

// scriptCards is held by the card script running (sim lock).
var scriptCards sync.Mutex

// cmdSim: the test process's virtual cards, for scripts whose test binary runs RunWithSim:
//
//	sim lock                  holds the cards for this script until it ends: scripts run in parallel,
//	                          and opening a card locks its reader, so every card script starts so
//	sim fresh SERIAL...       the cards as they first came up (default PIN, no keys)
//	sim eject|insert SERIAL   takes a card out of its reader, or puts it back
//	sim verifies SERIAL       prints the number of PIN-carrying VERIFYs the card has received
func cmdSim(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: sim fresh|eject|insert|verifies SERIAL...")
	}
	if theSim == nil {
		ts.Fatalf("no sim (guard the script with [!sim] skip)")
	}
	if neg {
		ts.Fatalf("sim does not fail on purpose")
	}
	if args[0] == "lock" {
		scriptCards.Lock()
		ts.Defer(scriptCards.Unlock)
		return
	}
	for _, a := range args[1:] {
		n, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			ts.Fatalf("sim: serial %q", a)
		}
		serial := uint32(n)
		switch args[0] {
		case "fresh":
			err = theSim.s.Restore(serial, initialState)
		case "eject":
			err = theSim.s.Eject(serial)
		case "insert":
			err = theSim.s.Insert(serial)
		case "verifies":
			st, serr := theSim.s.Status()
			if err = serr; err == nil {
				err = fmt.Errorf("no card %d", serial)
				for _, c := range st.Cards {
					if c.Serial == serial {
						fmt.Fprintf(ts.Stdout(), "%d\n", c.Counters().PINVerifies)
						err = nil
					}
				}
			}
		default:
			ts.Fatalf("sim: unknown subcommand %q", args[0])
		}
		ts.Check(err)
	}
}

// simCondition is the script condition [sim]: the test process's sim is up. A missing prerequisite
// under CI, or a sim that failed to start, fails the script instead.
func simCondition() (bool, error) {
	switch {
	case errors.Is(theSimErr, errSimMissing) && InCI():
		return false, fmt.Errorf("missing prerequisite (fails under CI): %v", theSimErr)
	case errors.Is(theSimErr, errSimMissing):
		return false, nil
	case theSimErr != nil:
		return false, fmt.Errorf("sim did not start: %v", theSimErr)
	}
	return theSim != nil, nil
}
