package testenv

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custos-pki/custos/card/sim"
)

// simScriptEnv sets, when the test process has a sim, SIM_DIR and SIM_SOCK (for a script's
// "env CUSTOS_SIM_DIR=$SIM_DIR" and "env PCSCLITE_CSOCK_NAME=$SIM_SOCK": scripts that do not use
// cards keep a production environment) and SIM1 … SIMn, the cards' serials.
func simScriptEnv(e *testscript.Env) {
	if theSim == nil {
		return
	}
	e.Setenv("SIM_DIR", theSim.dir)
	e.Setenv("SIM_SOCK", sim.SocketPath(theSim.dir))
	for i, s := range theSim.serials {
		e.Setenv(fmt.Sprintf("SIM%d", i+1), strconv.FormatUint(uint64(s), 10))
	}
}

// scriptCards is held by the card script running (sim lock).
var scriptCards sync.Mutex

// marks are the cards' PIN-carrying VERIFY counts at sim mark.
var marks sync.Map

func pinVerifies(serial uint32) (uint64, error) {
	st, err := theSim.s.Status()
	if err != nil {
		return 0, err
	}
	for _, c := range st.Cards {
		if c.Serial == serial {
			return c.Counters().PINVerifies, nil
		}
	}
	return 0, fmt.Errorf("no card %d", serial)
}

// cmdSim: the test process's virtual cards, for scripts whose test binary runs RunWithSim:
//
//	sim lock                  holds the cards for this script until it ends: scripts run in parallel,
//	                          and opening a card locks its reader, so every card script starts so
//	sim fresh SERIAL...       the cards as they first came up (default PIN, no keys)
//	sim eject|insert SERIAL   takes a card out of its reader, or puts it back
//	sim deny|approve SERIAL   makes the card refuse touch (as when nobody touches it), or approve it again
//	sim verifies SERIAL       prints the number of PIN-carrying VERIFYs the card has received
//	sim mark SERIAL...        remembers the cards' PIN-carrying VERIFY counts
//	sim verified N SERIAL...  fails unless each card received exactly N PIN-carrying VERIFYs since its mark
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
	serials, want := args[1:], -1
	if args[0] == "verified" {
		if len(args) < 2 {
			ts.Fatalf("usage: sim verified N SERIAL...")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		serials, want = args[2:], n
	}
	for _, a := range serials {
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
		case "deny", "approve":
			err = theSim.s.SetTouch(serial, args[0] == "approve")
			ts.Defer(func() { theSim.s.SetTouch(serial, true) })
		case "verifies", "mark", "verified":
			var n uint64
			if n, err = pinVerifies(serial); err != nil {
				break
			}
			switch args[0] {
			case "verifies":
				fmt.Fprintf(ts.Stdout(), "%d\n", n)
			case "mark":
				marks.Store(serial, n)
			case "verified":
				m, ok := marks.Load(serial)
				if !ok {
					ts.Fatalf("sim verified: card %d has no mark", serial)
				}
				if got := n - m.(uint64); got != uint64(want) {
					ts.Fatalf("card %d received %d PIN-carrying VERIFYs since its mark, want %d", serial, got, want)
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
