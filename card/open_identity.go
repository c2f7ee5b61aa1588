package card

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"
)

// slotExchanger is the ECDH of a decryption key on an open card: it verifies the PIN when the slot's
// policy needs it (once per connection for PIN policy once, before every use for always) and asks for
// a touch when the touch policy needs one.
type slotExchanger struct {
	c      *Card
	slot   piv.Slot
	pub    *ecdsa.PublicKey
	pin    PINPolicy
	touch  TouchPolicy
	o      PINOptions
	prompt string
}

// Identity returns the card-backed age identity of the decryption key e pins. The PIN is asked, with
// prompt, at the first stanza that carries the key's tag, and only when the slot's PIN policy needs
// it. Call Liveness first: no PIN reaches a card that has not proven it is the pinned one.
func (c *Card) Identity(e Expected, o PINOptions, prompt string) (*Identity, error) {
	x, err := c.exchanger(e.DecryptionSlot, e.DecryptionKey, e.PINPolicy, e.TouchPolicy, o, prompt)
	if err != nil {
		return nil, err
	}
	pub, err := x.pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("card: %s's decryption key: %v", e.Name, err)
	}
	return NewIdentity(x, pub)
}

func (c *Card) exchanger(slot Slot, spki []byte, pin PINPolicy, touch TouchPolicy, o PINOptions, prompt string) (*slotExchanger, error) {
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	pub, err := parseP256SPKI(spki)
	if err != nil {
		return nil, fmt.Errorf("card: decryption key: %v", err)
	}
	return &slotExchanger{c: c, slot: ps, pub: pub, pin: pin, touch: touch, o: o, prompt: prompt}, nil
}

// ECDH implements KeyExchanger on the card.
func (x *slotExchanger) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	c := x.c
	switch {
	case x.pin == PINAlways && c.heldPIN != nil:
		// One PIN entry per card per command: the PIN entered for this command is sent again.
		if err := c.verifyPIN(c.heldPIN); err != nil {
			return nil, err
		}
	case x.pin == PINAlways || x.pin == PINOnce && !c.pinVerified:
		pin, err := c.askPIN(x.o, x.prompt)
		if err != nil {
			return nil, err
		}
		if err := c.verifyPIN(pin); err != nil {
			clear(pin)
			return nil, err
		}
		if x.pin == PINAlways {
			c.heldPIN = pin // wiped by Close
		} else {
			clear(pin)
		}
	}
	if x.touch != TouchNever && x.o.UI != nil {
		x.o.UI.Message(fmt.Sprintf("Touch YubiKey %d now (its key in slot %s needs a touch to decrypt).", c.serial, x.slot))
	}
	// The PIN is handled above, so piv-go is told the slot needs none: it would otherwise send an
	// empty VERIFY of its own before every use.
	k, err := c.yk.PrivateKey(x.slot, x.pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return nil, c.cardErr("opening the decryption key", err)
	}
	shared, err := k.(*piv.ECDSAPrivateKey).ECDH(peer)
	if err != nil {
		return nil, c.cardErr(fmt.Sprintf("decrypting with the key in slot %s (ECDH)", x.slot), err)
	}
	return shared, nil
}
