package card

import (
	"errors"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestPINSafety: a wrong PIN reports the tries left; the last try is not spent without confirmation
// (or AllowLastTry); a blocked PIN says how to unblock it; each is one line.
func TestPINSafety(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[3]
	enrolled(t, e, serial)
	c := openSim(t, e, serial)
	wrong := PINOptions{UI: &testUI{pin: "99999999"}}
	for _, left := range []string{"2 tries left", "1 tries left"} {
		err := c.VerifyPIN(wrong, "test")
		if !errors.Is(err, ErrWrongPIN) || !contains(err, left) {
			t.Fatalf("wrong PIN: %v, want %q", err, left)
		}
	}
	before := e.Counters(t, serial).PINVerifies
	ui := &testUI{pin: "99999999", confirm: false}
	if err := c.VerifyPIN(PINOptions{UI: ui}, "test"); !errors.Is(err, ErrLastPINTry) || !contains(err, "--allow-last-pin-try") {
		t.Fatalf("last try without confirmation: %v", err)
	}
	if len(ui.prompts) != 1 || !contains(errors.New(ui.prompts[0]), "ONE PIN try left") {
		t.Errorf("prompts %q", ui.prompts)
	}
	if n := e.Counters(t, serial).PINVerifies - before; n != 0 {
		t.Fatalf("the unconfirmed last try was spent (%d VERIFYs)", n)
	}
	err := c.VerifyPIN(PINOptions{UI: &testUI{pin: "99999999"}, AllowLastTry: true}, "test")
	if !errors.Is(err, ErrPINBlocked) || !contains(err, "unblock it with the PUK") {
		t.Fatalf("last wrong try: %v", err)
	}
	if err := c.VerifyPIN(PINOptions{UI: &testUI{pin: testPIN}}, "test"); !errors.Is(err, ErrPINBlocked) {
		t.Fatalf("blocked PIN: %v", err)
	}
	// The last try, confirmed, is spent: unblock and leave one try.
	if err := c.yk.Unblock(testPUK, testPIN); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c.VerifyPIN(wrong, "test")
	}
	if err := c.VerifyPIN(PINOptions{UI: &testUI{pin: testPIN, confirm: true}}, "test"); err != nil {
		t.Fatalf("confirmed last try with the right PIN: %v", err)
	}
}

// TestCardRemovedMidCommand: a card taken out after liveness makes the decryption fail with one line
// that says so.
func TestCardRemovedMidCommand(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[2]
	rec := enrolled(t, e, serial)
	x := ExpectedFromRecord(rec)
	c := openSim(t, e, serial)
	if err := c.Liveness(x); err != nil {
		t.Fatal(err)
	}
	id, err := c.Identity(x, PINOptions{UI: &testUI{pin: testPIN}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	rcp, _ := ParseRecipient(rec.Recipient)
	st, err := rcp.Wrap(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	e.Eject(t, serial)
	_, err = id.Unwrap(st)
	if !errors.Is(err, ErrCardRemoved) || !contains(err, "insert it and run the command again") {
		t.Fatalf("Unwrap after ejection: %v", err)
	}
	c.Close()
}
