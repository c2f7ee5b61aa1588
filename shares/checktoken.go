package shares

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/custos-pki/custos/internal/jcs"
)

// CheckTokenFormat is the version string of a check token.
const CheckTokenFormat = "custos-check-token-v1"

// CheckTokenSize is the size of a check token's random value.
const CheckTokenSize = 32

// CheckToken is the plaintext of a check file: a random value encrypted to the same recipient as the
// custodian's share. Opening it shows that the card, PIN and key work without opening the share. The
// manifest holds the SHA-256 of the value.
type CheckToken struct {
	Format     string `json:"format"`
	CeremonyID string `json:"ceremony_id"`
	Generation int    `json:"generation"`
	Custodian  string `json:"custodian"`
	Token      []byte `json:"token"`
}

// NewCheckToken returns a fresh check token for a custodian.
func NewCheckToken(ceremonyID string, generation int, custodian string) (*CheckToken, error) {
	t := &CheckToken{Format: CheckTokenFormat, CeremonyID: ceremonyID, Generation: generation, Custodian: custodian, Token: make([]byte, CheckTokenSize)}
	if _, err := rand.Read(t.Token); err != nil {
		return nil, fmt.Errorf("check token: %w", err)
	}
	return t, nil
}

// Wipe zeroes the token value.
func (t *CheckToken) Wipe() { clear(t.Token) }

// Marshal returns the canonical JSON encoding.
func (t *CheckToken) Marshal() ([]byte, error) { return jcs.Marshal(t) }

// ValueSHA256 returns the lowercase hex SHA-256 of the token value, as the manifest records it.
func (t *CheckToken) ValueSHA256() string {
	s := sha256.Sum256(t.Token)
	return hex.EncodeToString(s[:])
}

// ParseCheckToken parses a check token, refusing anything but the canonical encoding of a v1 token.
func ParseCheckToken(b []byte) (*CheckToken, error) {
	var t CheckToken
	if err := jcs.Unmarshal(b, &t); err != nil {
		clear(t.Token)
		return nil, fmt.Errorf("check token: %w", err)
	}
	if t.Format != CheckTokenFormat || len(t.Token) != CheckTokenSize {
		t.Wipe()
		return nil, fmt.Errorf("check token: not a %s token of %d bytes", CheckTokenFormat, CheckTokenSize)
	}
	return &t, nil
}
