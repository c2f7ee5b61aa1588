package card

import (
	"crypto/ecdh"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"filippo.io/age"
	"filippo.io/age/plugin"
)

// PluginBinary is the name under which the custos binary speaks the age plugin protocol: age runs
// age-plugin-yubikey from PATH for age1yubikey1… recipients and AGE-PLUGIN-YUBIKEY-1… identities.
const PluginBinary = "age-plugin-" + pluginName

// PluginUI is how a CardOpener reaches the user in plugin mode: through the age client that started
// the plugin.
type PluginUI interface {
	// Message shows a message, such as a request to touch the YubiKey.
	Message(msg string) error
	// Confirm asks a question with a yes and an optional no answer, such as "insert YubiKey 123".
	Confirm(prompt, yes, no string) (bool, error)
	// PIN returns the PIN for the card with this serial, for the caller to wipe: in a rehearsal from
	// CUSTOS_PIN or --pin-file when they name the card, otherwise asked through age with prompt.
	// Either way it is 6 to 8 characters.
	PIN(serial uint32, prompt string) ([]byte, error)
}

// OpenedSlot is a card slot opened by a CardOpener.
type OpenedSlot interface {
	// ECDH runs on the card. It is called only for a stanza carrying the key's tag, so the PIN (when
	// the slot's PIN policy needs it) is best verified here, at the first call, through the PluginUI
	// the opener was given, and the user told to touch the card when its touch policy needs it.
	KeyExchanger
	// PublicKey returns the slot's P-256 public key as the card reports it.
	PublicKey() *ecdh.PublicKey
	// Close releases the card, leaving its PIN state (no reset).
	Close() error
}

// CardOpener opens the slot a stub names on the card with the stub's serial and reads the slot's
// public key; the plugin checks that key against the stub's tag. It is called at most once per
// identity in a plugin run: in identity-v1 only when a file has a stanza carrying the identity's tag,
// in recipient-v1 when the identity is used as a recipient (age -e -i), where no ECDH follows. Several
// identities may name slots of one card, so an opener shares one connection per card.
type CardOpener func(stub Stub, ui PluginUI) (OpenedSlot, error)

// RunPlugin is custos invoked as age-plugin-yubikey: it serves the age plugin protocol's recipient-v1
// state machine (piv-p256 stanzas for age1yubikey1… recipients, and for AGE-PLUGIN-YUBIKEY-1…
// identities used as recipients) and its identity-v1 state machine (piv-p256 and p256tag stanzas
// opened on the cards that AGE-PLUGIN-YUBIKEY-1… identities name). Cards are reached only through
// open. args are the arguments after the program name; getenv reads the environment (CUSTOS_SIM_DIR,
// CUSTOS_PIN). It returns the process exit code.
func RunPlugin(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, open CardOpener) int {
	p, err := plugin.New(pluginName)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", PluginBinary, err)
		return 1
	}
	fs := flag.NewFlagSet(PluginBinary, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p.RegisterFlags(fs)
	pinFile := fs.String("pin-file", "", "rehearsal only (CUSTOS_SIM_DIR set): file of \"SERIAL PIN\" lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || fs.Lookup("age-plugin").Value.String() == "" {
		fmt.Fprintf(stderr, "%s: this is custos's age plugin mode, which age starts by itself "+
			"(age -r age1yubikey1… or age -d -i FILE); use custos for everything else\n", PluginBinary)
		return 2
	}
	p.SetIO(stdin, stdout, stderr)

	// age sends SIGINT when it closes the connection. Catching it lets the run end by its own path,
	// at the end of its input, and the deferred Close release the cards (without a reset).
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	defer signal.Stop(interrupts)

	ui := &pluginUI{p: p, getenv: getenv, pinFile: *pinFile}
	defer ui.wipe()
	cards := &pluginCards{open: open, ui: ui}
	defer cards.close(stderr)

	p.HandleRecipient(func(data []byte) (age.Recipient, error) {
		r, err := newRecipientFromPoint(data)
		if err != nil {
			return nil, fmt.Errorf("card: %w: %v", ErrMalformedRecipient, err)
		}
		return r, nil
	})
	p.HandleIdentityAsRecipient(func(data []byte) (age.Recipient, error) {
		stub, err := parseStubPayload(data)
		if err != nil {
			return nil, err
		}
		id, err := cards.identity(stub)
		if err != nil {
			return nil, err
		}
		return id.Recipient(), nil
	})
	p.HandleIdentity(func(data []byte) (age.Identity, error) {
		stub, err := parseStubPayload(data)
		if err != nil {
			return nil, err
		}
		return &stubIdentity{stub: stub, cards: cards}, nil
	})
	return p.Main()
}

// pluginCards are the card slots a plugin run opened: each stub's slot once, whether it opened or not,
// so that a card is asked for at most once per run.
type pluginCards struct {
	open   CardOpener
	ui     PluginUI
	opened []OpenedSlot
	tried  map[Stub]openResult
}

type openResult struct {
	id  *Identity
	err error
}

// identity returns the identity of the slot a stub names, provided the slot holds the key the stub's
// tag names.
func (c *pluginCards) identity(stub Stub) (*Identity, error) {
	res, ok := c.tried[stub]
	if !ok {
		res.id, res.err = c.openStub(stub)
		if c.tried == nil {
			c.tried = map[Stub]openResult{}
		}
		c.tried[stub] = res
	}
	return res.id, res.err
}

func (c *pluginCards) openStub(stub Stub) (*Identity, error) {
	slot, err := c.open(stub, c.ui)
	if err != nil {
		// Not prefixed "card:": what the opener and ui.PIN return says where it comes from.
		return nil, fmt.Errorf("YubiKey %d slot 0x%02x: %w", stub.Serial, stub.Slot, err)
	}
	c.opened = append(c.opened, slot)
	return stub.Identity(slot, slot.PublicKey())
}

func (c *pluginCards) close(stderr io.Writer) {
	for _, s := range c.opened {
		if err := s.Close(); err != nil {
			fmt.Fprintf(stderr, "%s: closing the card: %v\n", PluginBinary, err)
		}
	}
}

// stubIdentity is an AGE-PLUGIN-YUBIKEY-1… identity in plugin mode. It tells its stanzas by the stub's
// tag alone and opens the card only for a file that has one.
type stubIdentity struct {
	stub  Stub
	cards *pluginCards
}

func (s *stubIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	matches, err := matchingStanzas(stanzas, s.stub.Tag)
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, age.ErrIncorrectIdentity
	}
	id, err := s.cards.identity(s.stub)
	if err != nil {
		return nil, err
	}
	return id.unwrap(matches)
}

// pluginUI is the PluginUI of a plugin run.
type pluginUI struct {
	p       *plugin.Plugin
	getenv  func(string) string
	pinFile string

	pins *RehearsalPINs // loaded at the first PIN request, so that errors reach age's user
}

func (u *pluginUI) Message(msg string) error { return u.p.DisplayMessage(msg) }

func (u *pluginUI) Confirm(prompt, yes, no string) (bool, error) { return u.p.Confirm(prompt, yes, no) }

func (u *pluginUI) PIN(serial uint32, prompt string) ([]byte, error) {
	if u.pins == nil {
		pins, err := loadRehearsalPINs(PluginRehearsal(u.getenv), u.getenv("CUSTOS_PIN"), u.pinFile)
		if err != nil {
			return nil, err
		}
		u.pins = pins
	}
	if pin, source, ok := u.pins.PIN(serial); ok {
		if err := u.p.DisplayMessage(fmt.Sprintf("custos rehearsal: PIN for YubiKey %d taken from %s", serial, source)); err != nil {
			clear(pin)
			return nil, err
		}
		return pin, nil
	}
	v, err := u.p.RequestValue(prompt, true)
	if err != nil {
		return nil, fmt.Errorf("PIN for YubiKey %d: %w", serial, err)
	}
	pin := []byte(v)
	if err := checkPIN(pin); err != nil {
		clear(pin)
		return nil, fmt.Errorf("PIN for YubiKey %d: %w", serial, err)
	}
	return pin, nil
}

func (u *pluginUI) wipe() {
	if u.pins != nil {
		u.pins.Wipe()
	}
}
