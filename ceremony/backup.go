package ceremony

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// backup is the CA key backup a record holds: the wrapped key, the CA public key and, when one was made,
// the root certificate, each read from the record and checked against the SHA-256 the manifest signs.
type backup struct {
	file *wrap.File
	pub  crypto.PublicKey
	cert *x509.Certificate // nil when the record holds none
}

// loadBackup reads the backup of the record in dir, whose manifest pins it with ca; the public key must
// be the one the manifest and the wrapped-key file name.
func loadBackup(dir string, ca *shares.CAInfo) (*backup, error) {
	read := func(rel, want string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err == nil && shares.FileSHA256(b) != want {
			err = fmt.Errorf("%s differs from the SHA-256 in the signed manifest", filepath.Join(dir, rel))
		}
		return b, err
	}
	pemBlock := func(rel, want, what string) ([]byte, error) {
		b, err := read(rel, want)
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s is not a PEM %s", filepath.Join(dir, rel), what)
		}
		return blk.Bytes, nil
	}
	var bk backup
	b, err := read("ca-key.wrapped", ca.WrappedSHA256)
	if err != nil {
		return nil, err
	}
	if bk.file, err = wrap.ParseFile(b); err != nil {
		return nil, err
	}
	if b, err = pemBlock("ca.pub.pem", ca.PublicKeySHA256, "public key"); err != nil {
		return nil, err
	}
	if bk.pub, err = x509.ParsePKIXPublicKey(b); err != nil {
		return nil, err
	}
	fp, err := wrap.Fingerprint(bk.pub)
	if err != nil {
		return nil, err
	}
	if fp != ca.Fingerprint || fp != bk.file.Fingerprint {
		return nil, fmt.Errorf("the CA public key %s is not the one the manifest (%s) and the wrapped key (%s) name", fp, ca.Fingerprint, bk.file.Fingerprint)
	}
	if ca.CertificateSHA256 != "" {
		if b, err = pemBlock("ca.crt.pem", ca.CertificateSHA256, "certificate"); err != nil {
			return nil, err
		}
		if bk.cert, err = x509.ParseCertificate(b); err != nil {
			return nil, err
		}
	}
	return &bk, nil
}
