package card

// Choosing the cards a command uses: by --serial, by the custodians a roster or manifest names, or
// one after another in one reader (--one-reader --card-timeout).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrAmbiguous is wrapped when the cards present do not say which to use (exit status 2).
var ErrAmbiguous = errors.New("ambiguous card choice")

// ErrCardNotFound is wrapped when a card the command needs is not present.
var ErrCardNotFound = errors.New("card not found")

// Selector chooses cards for a command.
type Selector struct {
	Env Env
	// Serials are the cards chosen with --serial; empty for every present card the command expects.
	Serials []uint32
	// OneReader asks for the cards one after another, waiting CardTimeout for each.
	OneReader   bool
	CardTimeout time.Duration
	// Message tells the operator what to do (insert or remove a card).
	Message func(string)
}

// Each opens, one at a time, the present cards of the custodians in want (those chosen with --serial,
// if any) and calls fn for each; it closes each card after fn. At most max cards are used when max is
// positive; more present is ambiguous. fn returns more == false to stop early. A chosen card that is
// not one of want's is refused, naming its serial and the expected ones.
func (s *Selector) Each(want []Expected, max int, fn func(c *Card, e Expected) (more bool, err error)) error {
	want, err := s.chosen(want)
	if err != nil {
		return err
	}
	if max > 0 && len(s.Serials) > max {
		return fmt.Errorf("card: %w: %d cards chosen with --serial, this command uses %d", ErrAmbiguous, len(s.Serials), max)
	}
	if s.OneReader {
		return s.oneReader(want, fn)
	}
	cards, err := s.present(want, max)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range cards {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, e := range want {
		c := cards[i]
		if c == nil {
			continue
		}
		more, err := fn(c, e)
		cards[i] = nil
		if cerr := c.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Hold opens the present cards of want (those chosen with --serial, if any) all at once, for a flow
// that needs them together (a seal the cards co-sign), and returns them in want's order, nil where
// absent. The caller closes them. Not with OneReader.
func (s *Selector) Hold(want []Expected) ([]*Card, error) {
	if s.OneReader {
		return nil, fmt.Errorf("card: %w: this step needs the cards together, not --one-reader", ErrAmbiguous)
	}
	chosen, err := s.chosen(want)
	if err != nil {
		return nil, err
	}
	cards, err := s.present(chosen, 0)
	if err != nil {
		return nil, err
	}
	out := make([]*Card, len(want))
	for i, c := range cards {
		out[slices.IndexFunc(want, func(e Expected) bool { return e.Serial == chosen[i].Serial })] = c
	}
	return out, nil
}

// chosen returns the custodians of want chosen with --serial (all of want without --serial), refusing a
// chosen card that is not one of want's, naming its serial and the expected ones.
func (s *Selector) chosen(want []Expected) ([]Expected, error) {
	for _, serial := range s.Serials {
		if !slices.ContainsFunc(want, func(e Expected) bool { return e.Serial == serial }) {
			return nil, fmt.Errorf("card: YubiKey %d is not a card of this record; expected %s", serial, expectedList(want))
		}
	}
	if len(s.Serials) == 0 {
		return want, nil
	}
	return slices.DeleteFunc(slices.Clone(want), func(e Expected) bool { return !slices.Contains(s.Serials, e.Serial) }), nil
}

// present opens every card present and returns, in want's order, those want names (nil where absent).
func (s *Selector) present(want []Expected, max int) ([]*Card, error) {
	readers, err := s.Env.Readers()
	if err != nil {
		return nil, err
	}
	out := make([]*Card, len(want))
	var others []uint32
	fail := func(err error) ([]*Card, error) {
		for _, c := range out {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	n := 0
	for _, r := range readers {
		c := openPresent(r)
		if c == nil {
			continue
		}
		i := slices.IndexFunc(want, func(e Expected) bool { return e.Serial == c.serial })
		switch {
		case i < 0:
			others = append(others, c.serial)
			c.Close()
			continue
		case out[i] != nil:
			c.Close()
			return fail(fmt.Errorf("card: %w: YubiKey %d answers in two readers (%q and %q)", ErrAmbiguous, c.serial, out[i].reader, r))
		}
		out[i] = c
		n++
	}
	for _, serial := range s.Serials {
		i := slices.IndexFunc(want, func(e Expected) bool { return e.Serial == serial })
		if out[i] == nil {
			return fail(fmt.Errorf("card: %w: YubiKey %d (chosen with --serial) is in no reader", ErrCardNotFound, serial))
		}
	}
	switch {
	case n == 0 && len(others) > 0:
		return fail(fmt.Errorf("card: %w: present YubiKey %s is not a card of this record; expected %s", ErrCardNotFound, serialList(others), expectedList(want)))
	case n == 0:
		return fail(fmt.Errorf("card: %w: no card of this record is present; expected %s", ErrCardNotFound, expectedList(want)))
	case max > 0 && n > max:
		var names []string
		for i, c := range out {
			if c != nil {
				names = append(names, fmt.Sprintf("%d (%s)", c.serial, want[i].Name))
			}
		}
		return fail(fmt.Errorf("card: %w: %d cards of this record are present (%s); choose with --serial", ErrAmbiguous, n, strings.Join(names, ", ")))
	}
	return out, nil
}

// oneReader asks for the cards one after another, waiting for each in turn (in whatever reader it is
// put: an operator with one reader takes each card out before the next comes in).
func (s *Selector) oneReader(want []Expected, fn func(c *Card, e Expected) (bool, error)) error {
	if s.CardTimeout <= 0 {
		return fmt.Errorf("card: %w: --one-reader needs a positive --card-timeout", ErrAmbiguous)
	}
	for _, e := range want {
		s.Message(fmt.Sprintf("Insert %s's YubiKey (serial %d); waiting %v.", e.Name, e.Serial, s.CardTimeout))
		c, err := s.waitCard(e.Serial)
		if err != nil {
			if errors.Is(err, ErrCardNotFound) {
				s.Message(fmt.Sprintf("%v; going on without %s.", err, e.Name))
				continue
			}
			return err
		}
		more, err := fn(c, e)
		if err != nil || !more {
			c.Close()
			return err
		}
		s.Message(fmt.Sprintf("Remove YubiKey %d.", e.Serial))
		s.waitRemoved(c)
	}
	return nil
}

// pollInterval is how often a waiting command looks at the readers.
const pollInterval = 250 * time.Millisecond

// waitCard waits, at most CardTimeout, until the card with this serial is in a reader, and opens it.
func (s *Selector) waitCard(serial uint32) (*Card, error) {
	deadline := time.Now().Add(s.CardTimeout)
	for {
		c, err := s.find(serial)
		if c != nil || err != nil {
			return c, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("card: %w: YubiKey %d did not arrive within %v", ErrCardNotFound, serial, s.CardTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// waitRemoved closes the card and waits, at most CardTimeout, until pcscd no longer sees a card in
// its reader.
func (s *Selector) waitRemoved(c *Card) {
	c.Close()
	deadline := time.Now().Add(s.CardTimeout)
	for time.Now().Before(deadline) {
		if present, err := cardPresent(c.reader); err != nil || !present {
			return
		}
		time.Sleep(pollInterval)
	}
}

// openPresent opens the card in a reader where pcscd sees one; nil for an empty reader, or a card that
// is not a YubiKey.
func openPresent(reader string) *Card {
	if present, err := cardPresent(reader); err != nil || !present {
		return nil
	}
	c, err := Open(reader)
	if err != nil {
		return nil
	}
	return c
}

// find opens the card with this serial if it is in a reader; nil if not.
func (s *Selector) find(serial uint32) (*Card, error) {
	readers, err := s.Env.Readers()
	if err != nil {
		return nil, err
	}
	for _, r := range readers {
		c := openPresent(r)
		if c == nil {
			continue
		}
		if c.serial == serial {
			return c, nil
		}
		c.Close()
	}
	return nil, nil
}

func expectedList(want []Expected) string {
	if len(want) == 0 {
		return "no card (the record names no card custodian)"
	}
	var s []string
	for _, e := range want {
		s = append(s, fmt.Sprintf("%d (%s)", e.Serial, e.Name))
	}
	return "YubiKey " + strings.Join(s, ", ")
}

func serialList(serials []uint32) string {
	var s []string
	for _, n := range serials {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}

// OpenOne opens the one card a command that is not about a record uses (card enroll): the card chosen
// with --serial, or the only card present. Several present without --serial is ambiguous.
func (s *Selector) OpenOne() (*Card, error) {
	if len(s.Serials) > 1 {
		return nil, fmt.Errorf("card: %w: this command uses one card; %d were chosen with --serial", ErrAmbiguous, len(s.Serials))
	}
	readers, err := s.Env.Readers()
	if err != nil {
		return nil, err
	}
	var found *Card
	var serials []uint32
	for _, r := range readers {
		c := openPresent(r)
		if c == nil {
			continue
		}
		serials = append(serials, c.serial)
		if found == nil && (len(s.Serials) == 0 || c.serial == s.Serials[0]) {
			found = c
			continue
		}
		c.Close()
	}
	switch {
	case found == nil && len(s.Serials) == 1:
		return nil, fmt.Errorf("card: %w: YubiKey %d (chosen with --serial) is in no reader; present: %s", ErrCardNotFound, s.Serials[0], serialList(serials))
	case found == nil:
		return nil, fmt.Errorf("card: %w: no YubiKey is present", ErrCardNotFound)
	case len(s.Serials) == 0 && len(serials) > 1:
		found.Close()
		return nil, fmt.Errorf("card: %w: %d YubiKeys are present (%s); choose one with --serial", ErrAmbiguous, len(serials), serialList(serials))
	}
	return found, nil
}
