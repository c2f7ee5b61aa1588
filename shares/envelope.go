package shares

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/custos-pki/custos/internal/jcs"
)

// EnvelopeFormat is the version string of a share envelope.
const EnvelopeFormat = "custos-share-v1"

// Envelope is the plaintext of a share file: one share and what it belongs to. It is a secret: it exists
// only in memory and inside an age file.
type Envelope struct {
	Format     string `json:"format"`
	CeremonyID string `json:"ceremony_id"`
	Generation int    `json:"generation"`
	Custodian  string `json:"custodian"`
	Threshold  int    `json:"threshold"`
	X          int    `json:"x"`
	Share      []byte `json:"share"`
}

// Wipe zeroes the share bytes.
func (e *Envelope) Wipe() { clear(e.Share) }

// Marshal returns the canonical JSON encoding.
func (e *Envelope) Marshal() ([]byte, error) { return jcs.Marshal(e) }

// ParseEnvelope parses a share envelope, refusing anything but the canonical encoding of a v1 envelope
// with a valid x and share size. The caller wipes the result.
func ParseEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := jcs.Unmarshal(b, &e); err != nil {
		clear(e.Share)
		return nil, fmt.Errorf("share envelope: %w", err)
	}
	switch {
	case e.Format != EnvelopeFormat:
		e.Wipe()
		return nil, fmt.Errorf("share envelope: format %q, want %q", e.Format, EnvelopeFormat)
	case e.X < 0 || e.X > 255:
		e.Wipe()
		return nil, fmt.Errorf("share envelope: x = %d is not in GF(2^8)", e.X)
	case !ValidSecretSize(len(e.Share)):
		e.Wipe()
		return nil, fmt.Errorf("share envelope: share of %d bytes; want 16, 24 or 32", len(e.Share))
	}
	return &e, nil
}

// Share returns the envelope's share.
func (e *Envelope) ShareValue() Share { return Share{X: byte(e.X), Y: e.Share} }

// Commitment returns the share commitment the manifest records: lowercase hex of SHA-256 over
// "custos-share-commitment-v1\x00" ‖ u16 len(ceremony id) ‖ ceremony id ‖ u32 generation ‖ u8 x ‖
// u16 len(share) ‖ share, integers big-endian.
func Commitment(ceremonyID string, generation int, x byte, share []byte) string {
	h := sha256.New()
	h.Write([]byte("custos-share-commitment-v1\x00"))
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], uint16(len(ceremonyID)))
	h.Write(b[:2])
	h.Write([]byte(ceremonyID))
	binary.BigEndian.PutUint32(b[:], uint32(generation))
	h.Write(b[:])
	h.Write([]byte{x})
	binary.BigEndian.PutUint16(b[:2], uint16(len(share)))
	h.Write(b[:2])
	h.Write(share)
	return hex.EncodeToString(h.Sum(nil))
}
