package shares

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/wrap"
)

// ManifestFormat is the version string of a manifest.
const ManifestFormat = "custos-manifest-v1"

// MaxGeneration bounds a generation number; the commitment encodes it in 32 bits.
const MaxGeneration = 1<<31 - 1

// Manifest kinds.
const (
	KindSplit    = "split"    // a plain split of a secret: no CA key
	KindCeremony = "ceremony" // a CA key generation record: the secret is the KEK of ca-key.wrapped
)

// Errors callers branch on.
var (
	ErrManifestSignature = errors.New("manifest signature does not verify under its manifest key")
	ErrManifestKeyPin    = errors.New("manifest key differs from the pinned one")
)

// Manifest is the signed description of one generation of shares. It is public: it holds hashes,
// commitments and public keys, never a secret. Fields for later capabilities (card custodians, the CA
// key, previous generations) are part of v1 and are null where unused.
type Manifest struct {
	Format      string   `json:"format"`
	Kind        string   `json:"kind"`
	CeremonyID  string   `json:"ceremony_id"`
	Generation  int      `json:"generation"`
	Created     string   `json:"created"`
	Rehearsal   bool     `json:"rehearsal"`
	Threshold   int      `json:"threshold"`
	SecretSize  int      `json:"secret_size"`
	SecretCheck string   `json:"secret_check"`
	ManifestKey []byte   `json:"manifest_key"`
	RosterSHA   string   `json:"roster_sha256"`
	Custodians  []Entry  `json:"custodians"`
	CA          *CAInfo  `json:"ca"`
	Previous    *PrevRef `json:"previous"`
	Deviations  []string `json:"deviations"`
}

// Entry is one custodian's line in the manifest.
type Entry struct {
	Name      string    `json:"name"`
	Recipient string    `json:"recipient"`
	Kind      string    `json:"kind"`
	Card      *CardInfo `json:"card"`
	Share     ShareRef  `json:"share"`
	Check     CheckRef  `json:"check"`
}

// ShareRef names a share file and commits to the share inside it.
type ShareRef struct {
	File       string `json:"file"`
	X          int    `json:"x"`
	Commitment string `json:"commitment"`
	FileSHA256 string `json:"file_sha256"`
}

// CheckRef names a check-token file and commits to its value.
type CheckRef struct {
	File        string `json:"file"`
	FileSHA256  string `json:"file_sha256"`
	ValueSHA256 string `json:"value_sha256"`
}

// CardInfo is what the manifest pins about a card custodian (filled by card enrollment records).
type CardInfo struct {
	Serial        uint32 `json:"serial"`
	Slot          string `json:"slot"`
	SigningSlot   string `json:"signing_slot"`
	DecryptionKey []byte `json:"decryption_key"`
	SigningKey    []byte `json:"signing_key"`
	PINPolicy     string `json:"pin_policy"`
	TouchPolicy   string `json:"touch_policy"`
	Firmware      string `json:"firmware"`
}

// CAInfo pins the CA key a ceremony manifest protects.
type CAInfo struct {
	KeyAlg            string `json:"key_alg"`
	Fingerprint       string `json:"fingerprint"`
	WrappedSHA256     string `json:"wrapped_sha256"`
	PublicKeySHA256   string `json:"public_key_sha256"`
	CertificateSHA256 string `json:"certificate_sha256"`
}

// PrevRef links the manifest a later generation supersedes.
type PrevRef struct {
	ManifestSHA256 string `json:"manifest_sha256"`
	Generation     int    `json:"generation"`
}

// signedManifest is the manifest file: the manifest and an Ed25519 signature over ManifestSigningInput.
type signedManifest struct {
	Manifest  *Manifest `json:"manifest"`
	Signature []byte    `json:"signature"`
}

// manifestContext separates manifest signatures from every other use of the manifest key.
const manifestContext = "custos-manifest-v1\n"

// ManifestSigningInput returns the bytes a manifest signature covers: "custos-manifest-v1\n" followed by
// the canonical JSON of the manifest.
func ManifestSigningInput(m *Manifest) ([]byte, error) {
	b, err := jcs.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return append([]byte(manifestContext), b...), nil
}

// Sign validates m, checks that key is m's manifest key, and returns the manifest file.
func (m *Manifest) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(key.Public().(ed25519.PublicKey), m.ManifestKey) {
		return nil, errors.New("manifest: signing key is not the manifest's key")
	}
	in, err := ManifestSigningInput(m)
	if err != nil {
		return nil, err
	}
	b, err := jcs.Marshal(signedManifest{m, ed25519.Sign(key, in)})
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseManifest parses a manifest file and verifies its signature under the manifest key it names. The
// caller must still compare that key with the pin from the minutes (Manifest.CheckPin); a manifest signs
// itself, so its signature alone proves only that it was not changed after signing.
func ParseManifest(b []byte) (*Manifest, error) {
	var s signedManifest
	if err := jcs.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if s.Manifest == nil {
		return nil, errors.New("manifest: no manifest object")
	}
	m := s.Manifest
	if err := m.Validate(); err != nil {
		return nil, err
	}
	in, err := ManifestSigningInput(m)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(m.ManifestKey, in, s.Signature) {
		return nil, fmt.Errorf("manifest: %w", ErrManifestSignature)
	}
	return m, nil
}

// ManifestKeyFingerprint returns the fingerprint of the manifest's key.
func (m *Manifest) ManifestKeyFingerprint() (string, error) {
	return ManifestKeyFingerprint(m.ManifestKey)
}

// CheckPin compares the manifest key with the fingerprint from the minutes. On a mismatch the error does
// not show the manifest's own fingerprint, so that an operator cannot copy it from the screen.
func (m *Manifest) CheckPin(expected string) error {
	fp, err := m.ManifestKeyFingerprint()
	if err != nil {
		return err
	}
	if fp != expected {
		return fmt.Errorf("manifest: %w in the minutes", ErrManifestKeyPin)
	}
	return nil
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	idRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// ValidName reports whether s can name a custodian: 1 to 64 of A–Z a–z 0–9 . _ -, not starting with a
// dot, dash or underscore (a name is also a file name).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks a manifest's internal consistency.
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error { return fmt.Errorf("manifest: "+format, a...) }
	switch {
	case m.Format != ManifestFormat:
		return bad("format %q, want %q", m.Format, ManifestFormat)
	case m.Kind != KindSplit && m.Kind != KindCeremony:
		return bad("kind %q is neither %q nor %q", m.Kind, KindSplit, KindCeremony)
	case !idRE.MatchString(m.CeremonyID):
		return bad("ceremony id %q is not 32 lowercase hex digits", m.CeremonyID)
	case m.Generation < 1 || m.Generation > MaxGeneration:
		return bad("generation %d is outside 1 to %d", m.Generation, MaxGeneration)
	case !ValidSecretSize(m.SecretSize):
		return bad("secret size %d is not 16, 24 or 32", m.SecretSize)
	case len(m.ManifestKey) != ed25519.PublicKeySize:
		return bad("manifest key is not an Ed25519 public key")
	case !hexRE.MatchString(m.RosterSHA):
		return bad("roster_sha256 is not a SHA-256")
	case (m.Kind == KindCeremony) != (m.CA != nil):
		return bad("a %s manifest must carry a CA key exactly when it is a ceremony record", m.Kind)
	case (m.Generation == 1) != (m.Previous == nil):
		return bad("generation %d and its link to a previous manifest disagree", m.Generation)
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		return bad("created %q is not an RFC 3339 time", m.Created)
	}
	if cv, err := wrap.ParseCheckValue(m.SecretCheck); err != nil || cv.Alg != wrap.KCVCMAC {
		return bad("secret_check %q is not a cmac: check value", m.SecretCheck)
	}
	if err := CheckThreshold(len(m.Custodians), m.Threshold); err != nil {
		return bad("%v", err)
	}
	names, xs := map[string]bool{}, map[int]bool{}
	for _, e := range m.Custodians {
		switch {
		case !ValidName(e.Name):
			return bad("custodian name %q is not valid", e.Name)
		case e.Kind != KindX25519 && e.Kind != KindPIVP256:
			return bad("custodian %q: unknown recipient kind %q", e.Name, e.Kind)
		case (e.Kind == KindPIVP256) != (e.Card != nil):
			return bad("custodian %q: a card entry exactly for a %s recipient", e.Name, KindPIVP256)
		case e.Recipient == "":
			return bad("custodian %q has no recipient", e.Name)
		case names[e.Name]:
			return bad("custodian %q is listed twice", e.Name)
		case e.Share.X < 1 || e.Share.X > 255 || xs[e.Share.X]:
			return bad("custodian %q: x = %d is zero, out of range or repeated", e.Name, e.Share.X)
		case e.Share.File != "shares/"+e.Name+".age" || e.Check.File != "checks/"+e.Name+".age":
			return bad("custodian %q: files must be shares/%[1]s.age and checks/%[1]s.age", e.Name)
		case !hexRE.MatchString(e.Share.Commitment) || !hexRE.MatchString(e.Share.FileSHA256) ||
			!hexRE.MatchString(e.Check.FileSHA256) || !hexRE.MatchString(e.Check.ValueSHA256):
			return bad("custodian %q: a hash is not a SHA-256", e.Name)
		}
		names[e.Name], xs[e.Share.X] = true, true
	}
	return nil
}

// Custodian returns the manifest entry with the given name.
func (m *Manifest) Custodian(name string) (*Entry, bool) {
	for i := range m.Custodians {
		if m.Custodians[i].Name == name {
			return &m.Custodians[i], true
		}
	}
	return nil, false
}

// CheckEnvelope validates a decrypted envelope that was read from custodian's share file against the
// signed manifest: same ceremony, generation, custodian, threshold and x, and the commitment matches.
func (m *Manifest) CheckEnvelope(custodian string, e *Envelope) error {
	entry, ok := m.Custodian(custodian)
	if !ok {
		return fmt.Errorf("custodian %q is not in the manifest", custodian)
	}
	switch {
	case e.CeremonyID != m.CeremonyID:
		return fmt.Errorf("share of %q belongs to ceremony %s, not %s", custodian, e.CeremonyID, m.CeremonyID)
	case e.Generation != m.Generation:
		return fmt.Errorf("share of %q is from generation %d; this manifest is generation %d", custodian, e.Generation, m.Generation)
	case e.Custodian != custodian:
		return fmt.Errorf("share file of %q holds the share of %q", custodian, e.Custodian)
	case e.Threshold != m.Threshold:
		return fmt.Errorf("share of %q says threshold %d; the manifest says %d", custodian, e.Threshold, m.Threshold)
	case e.X == 0:
		return fmt.Errorf("share of %q has x = 0, which would be the secret itself", custodian)
	case e.X != entry.Share.X || len(e.Share) != m.SecretSize ||
		Commitment(e.CeremonyID, e.Generation, byte(e.X), e.Share) != entry.Share.Commitment:
		return fmt.Errorf("share of %q does not match its commitment in the signed manifest", custodian)
	}
	return nil
}

// FileSHA256 returns the lowercase hex SHA-256 of b, as `sha256sum` prints it.
func FileSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
