package shares

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/custos-pki/custos/wrap"
)

// manifestKeyInfo separates the manifest key from every other use of the KEK.
const manifestKeyInfo = "custos-manifest-key-v1"

// DeriveManifestKey derives the Ed25519 manifest key from the secret (the KEK of a ceremony, the secret of
// a plain split): HKDF-SHA256 with the secret as input key material, the ceremony id as salt and
// "custos-manifest-key-v1" as info, 32 bytes of output as the Ed25519 seed. The key exists only while a
// quorum has rebuilt the secret; the caller wipes it.
func DeriveManifestKey(secret []byte, ceremonyID string) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, secret, []byte(ceremonyID), manifestKeyInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("derive manifest key: %w", err)
	}
	defer clear(seed)
	return ed25519.NewKeyFromSeed(seed), nil
}

// ManifestKeyFingerprint returns the fingerprint the minutes record for a manifest key.
func ManifestKeyFingerprint(pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("manifest key of %d bytes is not an Ed25519 public key", len(pub))
	}
	return wrap.Fingerprint(pub)
}
