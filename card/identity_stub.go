package card

import (
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age/plugin"
)

const (
	identityPrefix = "AGE-PLUGIN-YUBIKEY-1"
	stubSize       = 4 + 1 + 4

	// FirstRetiredSlot and LastRetiredSlot are the PIV key references of the retired key management
	// slots R1 and R20, the only slots age-plugin-yubikey (and custos) use for decryption keys.
	FirstRetiredSlot = 0x82
	LastRetiredSlot  = 0x95
)

// ErrStubKeyMismatch is wrapped by the refusal of a card slot whose key is not the one an identity
// stub names (its tag differs): the slot's key was replaced, or the stub names the wrong card or slot.
var ErrStubKeyMismatch = errors.New("the slot holds another key than the identity names")

// ErrMalformedIdentity is wrapped by every error about an AGE-PLUGIN-YUBIKEY-1… identity that does
// not parse.
var ErrMalformedIdentity = errors.New("malformed AGE-PLUGIN-YUBIKEY identity")

// Stub is what an AGE-PLUGIN-YUBIKEY-1… identity names: the card by serial, the retired slot, and the
// 4-byte tag of the slot's key (SHA-256 of its compressed point, first four bytes). It holds no
// secret; the key stays on the card.
type Stub struct {
	Serial uint32
	Slot   byte // PIV key reference, FirstRetiredSlot to LastRetiredSlot
	Tag    [4]byte
}

// NewStub returns the identity stub for the key of r in a slot of the card with this serial.
func NewStub(serial uint32, slot byte, r *Recipient) (Stub, error) {
	if slot < FirstRetiredSlot || slot > LastRetiredSlot {
		return Stub{}, fmt.Errorf("card: slot 0x%02x is not a retired key management slot (0x82 to 0x95)", slot)
	}
	return Stub{Serial: serial, Slot: slot, Tag: r.Tag()}, nil
}

// ParseStub parses an AGE-PLUGIN-YUBIKEY-1… identity. Its payload is serial (4 bytes, little-endian),
// slot (1 byte) and tag (4 bytes); like age-plugin-yubikey, ParseStub ignores bytes after those 9.
func ParseStub(s string) (Stub, error) {
	if !strings.HasPrefix(s, identityPrefix) {
		if strings.HasPrefix(strings.ToUpper(s), identityPrefix) {
			return Stub{}, fmt.Errorf("card: %w: must be upper case", ErrMalformedIdentity)
		}
		return Stub{}, fmt.Errorf("card: %w: does not start with %q", ErrMalformedIdentity, identityPrefix)
	}
	name, data, err := plugin.ParseIdentity(s)
	if err != nil {
		return Stub{}, fmt.Errorf("card: %w: %v", ErrMalformedIdentity, err)
	}
	if name != pluginName {
		return Stub{}, fmt.Errorf("card: %w: Bech32 prefix names plugin %q, want %q", ErrMalformedIdentity, name, pluginName)
	}
	return parseStubPayload(data)
}

// parseStubPayload parses the Bech32 payload of an AGE-PLUGIN-YUBIKEY-1… identity.
func parseStubPayload(data []byte) (Stub, error) {
	if len(data) < stubSize {
		return Stub{}, fmt.Errorf("card: %w: payload is %d bytes, want %d (serial, slot, tag)", ErrMalformedIdentity, len(data), stubSize)
	}
	st := Stub{Serial: binary.LittleEndian.Uint32(data[0:4]), Slot: data[4], Tag: [4]byte(data[5:9])}
	if st.Slot < FirstRetiredSlot || st.Slot > LastRetiredSlot {
		return Stub{}, fmt.Errorf("card: %w: slot 0x%02x is not a retired key management slot (0x82 to 0x95)", ErrMalformedIdentity, st.Slot)
	}
	return st, nil
}

// String returns the AGE-PLUGIN-YUBIKEY-1… encoding.
func (s Stub) String() string {
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, stubSize), s.Serial)
	b = append(append(b, s.Slot), s.Tag[:]...)
	return plugin.EncodeIdentity(pluginName, b)
}

// Identity returns the card-backed identity of the slot the stub names, given the slot's ECDH and its
// public key as the card reports it, provided that key has the stub's tag.
func (s Stub) Identity(card KeyExchanger, pub *ecdh.PublicKey) (*Identity, error) {
	id, err := NewIdentity(card, pub)
	if err != nil {
		return nil, fmt.Errorf("card: YubiKey %d slot 0x%02x: %w", s.Serial, s.Slot, err)
	}
	if id.r.tag != s.Tag {
		return nil, fmt.Errorf("card: YubiKey %d slot 0x%02x: %w (key tag %x, identity tag %x)",
			s.Serial, s.Slot, ErrStubKeyMismatch, id.r.tag, s.Tag)
	}
	return id, nil
}
