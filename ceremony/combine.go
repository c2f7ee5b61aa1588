package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// CombineOptions are the inputs of combine.
type CombineOptions struct {
	Ceremony          string   // the split's directory
	ExpectManifestKey string   // the manifest key fingerprint from the minutes; required in production
	Rehearsal         bool     //
	Identities        []string // files of native age X25519 identities
	Out               string   // the file to write
	Components        int      // write the secret as this many XOR components OUT.1 … OUT.N instead
	Cards             CardOptions
}

// OutputFile is one file combine wrote, with the check value of what it holds.
type OutputFile struct {
	Path  string `json:"path"`
	Check string `json:"check"`
}

// CombineResult is what combine reports.
type CombineResult struct {
	Files       []OutputFile `json:"files"`
	Shares      int          `json:"shares"`
	Threshold   int          `json:"threshold"`
	SecretCheck string       `json:"secret_check"`
}

// Combine rebuilds the secret of a plain split from the shares the given identities open. Every share is
// checked against the signed manifest before combining (invariant 3), and the result must match the
// manifest's check value and derive its manifest key before anything is written.
func Combine(o CombineOptions) (*CombineResult, error) {
	outs := []string{o.Out}
	if o.Components != 0 {
		if o.Components < 2 || o.Components > 16 {
			return nil, fmt.Errorf("%w: --components %d: choose 2 to 16 components", ErrUsage, o.Components)
		}
		outs = outs[:0]
		for i := 1; i <= o.Components; i++ {
			outs = append(outs, fmt.Sprintf("%s.%d", o.Out, i))
		}
	}
	for _, p := range outs {
		if err := fsx.CheckNew(p); err != nil {
			return nil, err
		}
	}
	lm, err := loadManifest(o.Ceremony, o.ExpectManifestKey, o.Rehearsal)
	if err != nil {
		return nil, err
	}
	if lm.Kind == shares.KindCeremony && !o.Rehearsal {
		return nil, fmt.Errorf("%s holds a CA key backup; combine refuses it outside rehearsal (the KEK is rebuilt only inside 'custos ceremony import')", o.Ceremony)
	}
	secret, n, err := rebuild(lm, o.Identities, o.Cards)
	if err != nil {
		return nil, err
	}
	defer clear(secret)

	res := &CombineResult{Shares: n, Threshold: lm.Threshold, SecretCheck: lm.SecretCheck}
	parts := [][]byte{secret}
	if o.Components != 0 {
		if parts, err = xorComponents(secret, o.Components); err != nil {
			return nil, err
		}
		defer func() {
			for _, p := range parts {
				clear(p)
			}
		}()
	}
	for i, p := range parts {
		kcv, err := wrap.KCV(p)
		if err != nil {
			return nil, err
		}
		if err := fsx.WriteFile(outs[i], p); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, OutputFile{Path: outs[i], Check: kcv.String()})
	}
	return res, nil
}

// rebuild opens the shares of the custodians whose identity files are given and, while fewer than the
// threshold, of the record's cards present (each proving liveness first, one PIN entry each), validates
// each against the manifest, combines them and checks the result. It returns the secret and how many
// shares it used.
func rebuild(lm *loadedManifest, files []string, co CardOptions) ([]byte, int, error) {
	keys, err := softwareKeys(files, manifestRecipients(lm.Manifest), "ceremony "+lm.CeremonyID)
	if err != nil {
		return nil, 0, err
	}
	if len(keys) < lm.Threshold {
		cards, err := cardShares(co, lm, keys)
		defer func() {
			for _, k := range cards {
				k.identity.(*replayIdentity).wipe()
			}
		}()
		if err != nil && (len(keys) == 0 || !errors.Is(err, card.ErrCardNotFound)) {
			return nil, 0, err
		}
		keys = append(keys, cards...)
	}
	secret, mkey, err := rebuildKEK(lm.Manifest, lm.dir, keys)
	clear(mkey)
	return secret, len(keys), err
}

// openShare reads a custodian's share file (checking its SHA-256 against the manifest first), decrypts it
// and validates the envelope against the manifest. The caller wipes the envelope.
func openShare(lm *loadedManifest, e *shares.Entry, id age.Identity) (*shares.Envelope, error) {
	file, err := lm.readListed(e.Share.File, e.Share.FileSHA256)
	if err != nil {
		return nil, err
	}
	plain, err := decryptArmored(file, id)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, fmt.Errorf("%s: the identity of %q does not open it", lm.shown(e.Share.File), e.Name)
		}
		return nil, fmt.Errorf("%s: %v", lm.shown(e.Share.File), err)
	}
	env, err := shares.ParseEnvelope(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", lm.shown(e.Share.File), err)
	}
	if err := lm.CheckEnvelope(e.Name, env); err != nil {
		env.Wipe()
		return nil, fmt.Errorf("%s: %v", lm.shown(e.Share.File), err)
	}
	return env, nil
}

// checkSecret compares a rebuilt secret with the manifest's check value and manifest key.
func checkSecret(m *shares.Manifest, secret []byte) error {
	cv, err := wrap.ParseCheckValue(m.SecretCheck)
	if err != nil {
		return err
	}
	if !cv.Matches(secret) {
		return fmt.Errorf("the rebuilt secret does not match the manifest's check value %s; a share is wrong", m.SecretCheck)
	}
	key, err := shares.DeriveManifestKey(secret, m.CeremonyID)
	if err != nil {
		return err
	}
	defer clear(key)
	if !bytes.Equal(key.Public().(ed25519.PublicKey), m.ManifestKey) {
		return errors.New("the rebuilt secret does not derive the manifest key that signed the manifest")
	}
	return nil
}

// xorComponents splits secret into n random components whose XOR is secret.
func xorComponents(secret []byte, n int) ([][]byte, error) {
	parts := make([][]byte, n)
	last := bytes.Clone(secret)
	for i := 0; i < n-1; i++ {
		parts[i] = make([]byte, len(secret))
		if _, err := rand.Read(parts[i]); err != nil {
			return nil, err
		}
		for j := range last {
			last[j] ^= parts[i][j]
		}
	}
	parts[n-1] = last
	return parts, nil
}
