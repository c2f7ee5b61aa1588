package sim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Files of a fleet directory.
const (
	rootCertFile = "attestation-root.pem"
	rootKeyFile  = "attestation-root.key"
)

// RootSubject is the common name of every fleet's attestation root: no one can take it for Yubico's.
const RootSubject = "custos-sim virtual YubiKey attestation root (NOT FOR PRODUCTION)"

// Fleet is the virtual attestation root of one sim directory: it issues the F9 attestation
// certificate of every card made in that directory.
type Fleet struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// OpenFleet loads the attestation root in dir (attestation-root.pem and attestation-root.key), or
// creates it when neither file exists. Concurrent callers on one directory get the same root.
func OpenFleet(dir string) (*Fleet, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: open fleet: %w", err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("sim: open fleet: lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN)

	certPath, keyPath := filepath.Join(dir, rootCertFile), filepath.Join(dir, rootKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	defer clear(keyPEM)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createFleet(certPath, keyPath)
	case certErr != nil:
		return nil, fmt.Errorf("sim: open fleet: %w", certErr)
	case keyErr != nil:
		return nil, fmt.Errorf("sim: open fleet: %w", keyErr)
	}
	return parseFleet(certPEM, keyPEM)
}

func parseFleet(certPEM, keyPEM []byte) (*Fleet, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, errors.New("sim: open fleet: attestation root files are not PEM certificate and key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim: open fleet: %w", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	clear(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim: open fleet: attestation root key: %w", err)
	}
	key, ok := priv.(crypto.Signer)
	if !ok {
		return nil, errors.New("sim: open fleet: attestation root key cannot sign")
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil || !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, errors.New("sim: open fleet: attestation root key does not match its certificate")
	}
	return &Fleet{cert: cert, certPEM: certPEM, key: key}, nil
}

func createFleet(certPath, keyPath string) (*Fleet, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	sn, err := randomSerial(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: RootSubject, Organization: []string{"custos-sim"}},
		NotBefore:             time.Now().Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              attestNotAfter.AddDate(1, 0, 0),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	defer clear(keyPEM)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a crash in between leaves a key without a certificate, which OpenFleet reports
	// instead of silently making a second root.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600, true); err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644, true); err != nil {
		return nil, fmt.Errorf("sim: create fleet: %w", err)
	}
	return &Fleet{cert: cert, certPEM: certPEM, key: priv}, nil
}

// RootPEM returns the PEM certificate of the fleet's attestation root.
func (f *Fleet) RootPEM() []byte { return bytes.Clone(f.certPEM) }

// Root returns the fleet's attestation root certificate.
func (f *Fleet) Root() *x509.Certificate { return f.cert }

// NewCard makes a new card in its factory state, its state in path (which must not exist): default
// PIN 123456, PUK 12345678 and management key 010203…08 ×3 (3DES before 5.7, AES-192 on 5.7), and
// an F9 attestation key whose certificate the fleet root issues directly.
func (f *Fleet) NewCard(path string, serial uint32, profile Profile) (*Card, error) {
	profile, err := ParseProfile(string(profile))
	if err != nil {
		return nil, fmt.Errorf("sim: new card: %w", err)
	}
	f9, f9Cert, err := newAttestationKey(f.cert, f.key, serial, profile)
	if err != nil {
		return nil, fmt.Errorf("sim: new card: attestation key: %w", err)
	}
	st := &cardState{Format: stateFormat, Serial: serial, Profile: profile, Counters: Counters{ByINS: map[byte]uint64{}}}
	st.resetPIV()
	st.Keys[slotAttestation] = f9
	st.Objects[objAttestation] = f9Cert
	// Claim the path first so that an existing card is never overwritten.
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sim: new card: %w", err)
	}
	fd.Close()
	c := newCard(path, st)
	if err := c.save(true); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("sim: new card: %w", err)
	}
	return c, nil
}
