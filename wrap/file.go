package wrap

import (
	"errors"
	"fmt"
	"strings"

	"github.com/custos-pki/custos/internal/jcs"
)

// FileFormat is the version string of the wrapped-key file.
const FileFormat = "custos-wrapped-key-v1"

// CA key algorithms, as written in files and accepted by --ca-key.
var KeyAlgs = []string{"rsa4096", "rsa3072", "p384", "p256"}

// File is the wrapped-key file, ca-key.wrapped: the CA private key as RFC 5649-wrapped PKCS#8, with a
// header naming the KEK check value, the CA public key fingerprint, the key algorithm and the mechanism
// that produced the blob. Its integrity is the SHA-256 of the whole file, which the manifest covers.
type File struct {
	KEKCheck    CheckValue
	Fingerprint string
	KeyAlg      string
	Mechanism   string
	Blob        []byte
}

type fileJSON struct {
	Format      string `json:"format"`
	KEKCheck    string `json:"kek_check"`
	Fingerprint string `json:"ca_fingerprint"`
	KeyAlg      string `json:"ca_key_alg"`
	Mechanism   string `json:"mechanism"`
	Blob        []byte `json:"blob"`
}

// Marshal returns the file's canonical encoding, ending in a newline.
func (f *File) Marshal() ([]byte, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	b, err := jcs.Marshal(fileJSON{FileFormat, f.KEKCheck.String(), f.Fingerprint, f.KeyAlg, f.Mechanism, f.Blob})
	if err != nil {
		return nil, fmt.Errorf("wrapped-key file: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseFile parses a wrapped-key file, refusing anything but the canonical encoding of a valid file.
func ParseFile(b []byte) (*File, error) {
	var j fileJSON
	if err := jcs.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("wrapped-key file: %w", err)
	}
	if j.Format != FileFormat {
		return nil, fmt.Errorf("wrapped-key file: format %q, want %q", j.Format, FileFormat)
	}
	cv, err := ParseCheckValue(j.KEKCheck)
	if err != nil {
		return nil, fmt.Errorf("wrapped-key file: kek_check: %w", err)
	}
	f := &File{KEKCheck: cv, Fingerprint: j.Fingerprint, KeyAlg: j.KeyAlg, Mechanism: j.Mechanism, Blob: j.Blob}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) validate() error {
	switch {
	case f.KEKCheck.Alg != KCVCMAC || len(f.KEKCheck.Value) != 5:
		return errors.New("wrapped-key file: the KEK check value must be a cmac: value")
	case !strings.HasPrefix(f.Fingerprint, "SHA256:") || len(f.Fingerprint) != len("SHA256:")+43:
		return fmt.Errorf("wrapped-key file: ca_fingerprint %q is not a SHA256: fingerprint", f.Fingerprint)
	case !validKeyAlg(f.KeyAlg):
		return fmt.Errorf("wrapped-key file: ca_key_alg %q is not one of %s", f.KeyAlg, strings.Join(KeyAlgs, ", "))
	case f.Mechanism == "":
		return errors.New("wrapped-key file: mechanism is empty")
	case len(f.Blob) < 24 || len(f.Blob)%8 != 0:
		return fmt.Errorf("wrapped-key file: blob of %d bytes is not an RFC 5649 output", len(f.Blob))
	}
	return nil
}

func validKeyAlg(s string) bool {
	for _, a := range KeyAlgs {
		if a == s {
			return true
		}
	}
	return false
}
