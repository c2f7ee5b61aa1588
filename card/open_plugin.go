package card

// The piv-go CardOpener of plugin mode: custos run by the age CLI as age-plugin-yubikey.

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
)

// PIVOpener returns the CardOpener plugin mode uses on real (or, in a rehearsal, virtual) cards: one
// connection per serial, shared by the slots opened on it. A rehearsal is a set CUSTOS_SIM_DIR
// ([PluginRehearsal]); production refuses vpcd readers as every command does.
func PIVOpener(getenv func(string) string) CardOpener {
	p := &pluginOpener{env: Env{Rehearsal: PluginRehearsal(getenv), Getenv: getenv}, cards: map[uint32]*pluginCard{}}
	return p.open
}

type pluginOpener struct {
	env   Env
	cards map[uint32]*pluginCard
}

// pluginCard is a card opened in plugin mode, with the number of its slots still open.
type pluginCard struct {
	c    *Card
	refs int
}

func (p *pluginOpener) open(stub Stub, ui PluginUI) (OpenedSlot, error) {
	pc, ok := p.cards[stub.Serial]
	if !ok {
		c, err := p.find(stub.Serial, ui)
		if err != nil {
			return nil, err
		}
		pc = &pluginCard{c: c}
		p.cards[stub.Serial] = pc
	}
	s, err := pc.c.pluginSlot(Slot(stub.Slot), ui)
	if err != nil {
		if pc.refs == 0 {
			delete(p.cards, stub.Serial)
			pc.c.Close()
		}
		return nil, err
	}
	pc.refs++
	s.release = func() error {
		if pc.refs--; pc.refs > 0 {
			return nil
		}
		delete(p.cards, stub.Serial)
		return pc.c.Close()
	}
	return s, nil
}

// find opens the card with this serial, asking for it once when it is not present.
func (p *pluginOpener) find(serial uint32, ui PluginUI) (*Card, error) {
	s := &Selector{Env: p.env}
	for attempt := 0; ; attempt++ {
		c, err := s.find(serial)
		if c != nil || err != nil {
			return c, err
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%w: YubiKey %d is not present", ErrCardNotFound, serial)
		}
		ok, err := ui.Confirm(fmt.Sprintf("Please insert YubiKey with serial %d", serial), "YubiKey is plugged in", "Skip this YubiKey")
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: YubiKey %d is not present and was skipped", ErrCardNotFound, serial)
		}
	}
}

// pluginSlot reads a slot's key and policies: the key from the slot's certificate (as
// age-plugin-yubikey does) or GET METADATA, the policies from GET METADATA or the certificate's
// policy extension.
func (c *Card) pluginSlot(slot Slot, ui PluginUI) (*openedSlot, error) {
	st, err := c.slotState(slot)
	if err != nil {
		return nil, err
	}
	var pub *ecdsa.PublicKey
	switch {
	case st.cert != nil:
		pub, _ = st.cert.PublicKey.(*ecdsa.PublicKey)
	case st.key:
		ps, _ := pivSlot(slot)
		if ki, err := c.yk.KeyInfo(ps); err == nil {
			pub, _ = ki.PublicKey.(*ecdsa.PublicKey)
		}
	}
	if pub == nil {
		return nil, fmt.Errorf("slot %v holds no P-256 key", slot)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	pin, touch := PINOnce, TouchAlways
	var pp PINPolicy
	var tp TouchPolicy
	if pp.UnmarshalText([]byte(st.PINPolicy)) == nil && tp.UnmarshalText([]byte(st.TouchPolicy)) == nil {
		pin, touch = pp, tp
	} else if st.cert != nil {
		pin, touch = certPolicy(st.cert, pin, touch)
	}
	x, err := c.exchanger(slot, spki, pin, touch, PINOptions{UI: pluginPINs{ui}}, fmt.Sprintf("custos (age plugin): PIN of YubiKey %d; the card will decrypt a file key with its key in slot %v", c.serial, slot))
	if err != nil {
		return nil, err
	}
	key, err := pub.ECDH()
	if err != nil {
		return nil, err
	}
	return &openedSlot{slotExchanger: x, pub: key}, nil
}

// certPolicy reads the PIN and touch policy extension age-plugin-yubikey (and custos) write into a
// slot's self-signed certificate.
func certPolicy(c *x509.Certificate, pin PINPolicy, touch TouchPolicy) (PINPolicy, TouchPolicy) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidYubicoPolicy) && len(e.Value) >= 2 {
			return PINPolicy(e.Value[0]), TouchPolicy(e.Value[1])
		}
	}
	return pin, touch
}

// openedSlot is an OpenedSlot of plugin mode.
type openedSlot struct {
	*slotExchanger
	pub     *ecdh.PublicKey
	release func() error
}

func (s *openedSlot) PublicKey() *ecdh.PublicKey { return s.pub }

func (s *openedSlot) Close() error { return s.release() }

// pluginPINs is the PINUI of plugin mode: everything goes through the age client.
type pluginPINs struct{ ui PluginUI }

func (p pluginPINs) PIN(serial uint32, prompt string) ([]byte, error) {
	return p.ui.PIN(serial, prompt)
}

func (p pluginPINs) ConfirmLastTry(serial uint32, prompt string) (bool, error) {
	return p.ui.Confirm(prompt, "Spend the last try", "Cancel")
}

func (p pluginPINs) Message(msg string) { p.ui.Message(msg) }
