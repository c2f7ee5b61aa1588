package pcsctest

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// TestIsolation: pcscd lists only the sim's readers (no USB reader, no host card), the host's network
// namespace listens on what it listened on before, and the sim's TCP ports are not reachable from it.
// (After down, the harness checks that no process, mount or socket is left: see
// TestPersistenceAcrossDownUp, which goes down and up, and RunWithSim, which goes down at the end.)
func TestIsolation(t *testing.T) {
	e := testenv.Sim(t)
	readers, err := piv.Cards()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(readers)); !slices.Equal(got, e.Readers()) {
		t.Errorf("pcscd lists %q, want exactly the sim's %q", got, e.Readers())
	}
	e.CheckIsolated(t)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:35963", time.Second); err == nil {
		c.Close()
		t.Error("vpcd's port 35963 answers in the host's network namespace")
	}
}

// TestPersistenceAcrossDownUp: a key generated before down signs after up with the same public key,
// a blocked PIN stays blocked, and serials and readers stay the same.
func TestPersistenceAcrossDownUp(t *testing.T) {
	e := testenv.Sim(t)
	a, b := e.Serials()[0], e.Serials()[1]
	e.Fresh(t, a)
	e.Fresh(t, b)
	yk := open(t, e, a)
	pub := generate(t, yk, piv.SlotSignature)
	yk.Close()
	yk = open(t, e, b)
	for range 3 {
		yk.VerifyPIN("000000")
	}
	yk.Close()
	before := e.Status(t)

	e.Restart(t) // down (with the leak check), then up on the same directory

	after := e.Status(t)
	for i := range before.Cards {
		if before.Cards[i].Serial != after.Cards[i].Serial || before.Cards[i].Reader != after.Cards[i].Reader {
			t.Errorf("card %d was %d in %q, is %d in %q", i, before.Cards[i].Serial, before.Cards[i].Reader,
				after.Cards[i].Serial, after.Cards[i].Reader)
		}
	}
	yk = open(t, e, a)
	info, err := yk.KeyInfo(piv.SlotSignature)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(info.PublicKey) {
		t.Fatal("public key in 9c changed across down and up")
	}
	signVerify(t, yk, piv.SlotSignature, pub)
	yk.Close()
	yk = open(t, e, b)
	if n, err := yk.Retries(); err != nil || n != 0 {
		t.Errorf("blocked PIN after up: %d tries, %v", n, err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err == nil {
		t.Error("the right PIN verified on a blocked card after up")
	}
	yk.Close()
	e.Fresh(t, a)
	e.Fresh(t, b)
}

// TestEjectInsert: an ejected card vanishes for PC/SC clients (its reader stays, empty) and comes
// back with its keys.
func TestEjectInsert(t *testing.T) {
	e := testenv.Sim(t)
	s := e.Serials()[2]
	e.Fresh(t, s)
	yk := open(t, e, s)
	pub := generate(t, yk, piv.SlotAuthentication)
	yk.Close()

	e.Eject(t, s)
	if yk, err := piv.Open(e.Reader(t, s)); err == nil {
		yk.Close()
		t.Fatal("an ejected card opened")
	} else if !strings.Contains(err.Error(), "no Smart Card") {
		t.Fatalf("ejected card: %v, want pcscd's no-card error", err)
	}
	readers, err := piv.Cards()
	if err != nil || !slices.Contains(readers, e.Reader(t, s)) {
		t.Fatalf("the reader of an ejected card is gone: %q, %v", readers, err)
	}
	e.Insert(t, s)
	yk = open(t, e, s)
	info, err := yk.KeyInfo(piv.SlotAuthentication)
	if err != nil || !pub.Equal(info.PublicKey) {
		t.Fatalf("after insert: key in 9a %v, %v", info.PublicKey, err)
	}
	signVerify(t, yk, piv.SlotAuthentication, pub)
	yk.Close()
	e.Fresh(t, s)
}

// TestReconnectAfterPCSCDCrash: when pcscd dies, the sim starts it again and every card's vpcd link
// reconnects by itself; clients then reach the cards with their state.
func TestReconnectAfterPCSCDCrash(t *testing.T) {
	e := testenv.Sim(t)
	s := e.Serials()[3]
	e.Fresh(t, s)
	yk := open(t, e, s)
	pub := generate(t, yk, piv.SlotKeyManagement)
	yk.Close()

	e.KillPCSCD(t)

	for _, serial := range e.Serials() {
		yk := open(t, e, serial)
		if got, err := yk.Serial(); err != nil || got != serial {
			t.Errorf("%s after pcscd restart: serial %d, %v", e.Reader(t, serial), got, err)
		}
		yk.Close()
	}
	yk = open(t, e, s)
	signVerify(t, yk, piv.SlotKeyManagement, pub)
	yk.Close()
	e.Fresh(t, s)
}
