package card

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestOneReader: with --one-reader the cards are asked for one after another; each is used when it
// arrives and released before the next is asked for, and one that does not arrive in time is skipped
// with a message.
func TestOneReader(t *testing.T) {
	e := testenv.Sim(t)
	a, b, c := e.Serials()[0], e.Serials()[1], e.Serials()[2]
	want := []Expected{
		ExpectedFromRecord(enrolled(t, e, a)), ExpectedFromRecord(enrolled(t, e, b)), ExpectedFromRecord(enrolled(t, e, c)),
	}
	for _, s := range []uint32{a, b, c} {
		e.Eject(t, s)
	}
	messages := make(chan string, 16)
	s := &Selector{Env: rehearsalEnv(t, e), OneReader: true, CardTimeout: 2 * time.Second, Message: func(m string) { messages <- m }}
	var used []uint32
	done := make(chan error, 1)
	go func() {
		done <- s.Each(want, 0, func(card *Card, x Expected) (bool, error) {
			used = append(used, card.Serial())
			return true, card.Liveness(x)
		})
		close(messages)
	}()
	// The operator: a's card in, and out when asked; b's never comes; then c's.
	var skipped bool
	for m := range messages {
		switch {
		case m == fmt.Sprintf("Insert %s's YubiKey (serial %d); waiting 2s.", want[0].Name, a):
			e.Insert(t, a)
		case m == fmt.Sprintf("Remove YubiKey %d.", a):
			e.Eject(t, a)
		case strings.Contains(m, fmt.Sprintf("YubiKey %d did not arrive within 2s; going on without", b)):
			skipped = true
		case strings.HasPrefix(m, "Insert") && strings.Contains(m, fmt.Sprint(c)):
			e.Insert(t, c)
		case m == fmt.Sprintf("Remove YubiKey %d.", c):
			e.Eject(t, c)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(used) != 2 || used[0] != a || used[1] != c || !skipped {
		t.Errorf("cards used: %v, want %d then %d (b skipped: %v)", used, a, c, skipped)
	}
}
