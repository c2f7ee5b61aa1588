package sim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Profile names the firmware a card emulates.
type Profile string

// The supported firmware profiles. Profile52 has a 3DES management key only and no GET METADATA;
// Profile54 (the default) adds AES management keys and metadata; Profile57 has an AES-192 default
// management key and adds RSA-3072/4096, Ed25519 and X25519.
const (
	Profile52 Profile = "5.2"
	Profile54 Profile = "5.4"
	Profile57 Profile = "5.7"
)

// ErrProfile is returned for a profile name other than 5.2, 5.4 or 5.7.
var ErrProfile = errors.New("sim: unknown firmware profile (want 5.2, 5.4 or 5.7)")

// ParseProfile parses "5.2", "5.4" or "5.7"; the empty string is the default, 5.4.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case "":
		return Profile54, nil
	case Profile52, Profile54, Profile57:
		return p, nil
	}
	return "", fmt.Errorf("%w: %q", ErrProfile, s)
}

// firmware returns the version bytes the profile reports in GET VERSION and attestations.
func (p Profile) firmware() [3]byte {
	switch p {
	case Profile52:
		return [3]byte{5, 2, 7}
	case Profile57:
		return [3]byte{5, 7, 1}
	}
	return [3]byte{5, 4, 3}
}

func (p Profile) aesManagementKeys() bool { return p != Profile52 }
func (p Profile) metadata() bool          { return p != Profile52 }
func (p Profile) fw57() bool              { return p == Profile57 }

// defaultManagementAlg is 3DES before firmware 5.7 and AES-192 from 5.7 on.
func (p Profile) defaultManagementAlg() byte {
	if p.fw57() {
		return algAES192
	}
	return alg3DES
}

// formFactor is what READ CONFIG and attestations report: a USB-A keychain.
const formFactor = 0x01

// atr is the YubiKey 5 (USB) answer to reset: T=1, historical bytes ending in "YubiKey".
var atr = []byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0,
	0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40}

// Counters count a card's commands, for tests. They persist with the card.
type Counters struct {
	// ByINS counts command APDUs by instruction byte, every chained part and GET RESPONSE included.
	ByINS map[byte]uint64 `json:"by_ins"`
	// PINVerifies counts VERIFY APDUs that carry a PIN.
	PINVerifies uint64 `json:"pin_verifies"`
}

// Card is one virtual YubiKey. It is safe for concurrent use; commands are executed one at a time.
type Card struct {
	mu   sync.Mutex
	path string
	st   *cardState
	s    session
	rand io.Reader
	now  func() time.Time

	// changed is set by a command that modified persistent state other than the counters.
	changed bool
	// panics counts commands that panicked and were answered 6F 00; the fuzz test wants none.
	panics int
}

func newCard(path string, st *cardState) *Card {
	return &Card{path: path, st: st, s: session{applet: appletPIV}, rand: rand.Reader, now: time.Now}
}

// Serial returns the card's serial number.
func (c *Card) Serial() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Serial
}

// Profile returns the firmware profile the card emulates.
func (c *Card) Profile() Profile {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Profile
}

// ATR returns the answer to reset of a YubiKey 5.
func (c *Card) ATR() []byte { return append([]byte(nil), atr...) }

// Reset models power off, power on or a reset: it drops every volatile security state (PIN verified,
// management key authenticated, pending challenges, chained commands, pending response data) and
// leaves PIV selected. Persistent state, retry counters included, is kept.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.clear()
}

// SetTouchApproval sets whether the card's user touches it when an operation asks for a touch. A
// denied touch fails the operation with 69 82, as a real card does when the touch times out, except
// that a key with the cached touch policy still works for 15 seconds after the last touch. The
// setting is saved with the card.
func (c *Card) SetTouchApproval(approve bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.DenyTouch = !approve
	if err := c.save(true); err != nil {
		return fmt.Errorf("sim: set touch approval: %w", err)
	}
	return nil
}

// Counters returns a copy of the card's command counters.
func (c *Card) Counters() Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counters{ByINS: make(map[byte]uint64, len(c.st.Counters.ByINS)), PINVerifies: c.st.Counters.PINVerifies}
	for k, v := range c.st.Counters.ByINS {
		out.ByINS[k] = v
	}
	return out
}
