package wrap

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
)

// Fingerprint returns a public key's fingerprint: "SHA256:" and the unpadded standard base64 of the
// SHA-256 of its SubjectPublicKeyInfo DER. Seals are printed the same way (see FingerprintBytes).
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	return FingerprintBytes(der), nil
}

// FingerprintBytes returns "SHA256:" and the unpadded standard base64 of the SHA-256 of b.
func FingerprintBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
