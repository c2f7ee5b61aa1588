package card

// Attestation chains, verified by custos itself: slot certificate ← F9 certificate ← [intermediates]
// ← root. piv-go's verifier takes no intermediates, and the 2024 Yubico hierarchy needs two.

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"time"
)

// RehearsalRootMarker must appear in the common name of a rehearsal root: the sim's virtual fleet root
// says it of itself, so no one takes it for a Yubico root.
const RehearsalRootMarker = "NOT FOR PRODUCTION"

// f9SubjectCN is the common name of every genuine YubiKey F9 certificate under the legacy roots.
const f9SubjectCN = "Yubico PIV Attestation"

// Trust is the set of attestation roots (and intermediates) a chain must end at: Yubico's in
// production ([YubicoTrust]), or only the sim's virtual root in rehearsal ([RehearsalTrust]).
type Trust struct {
	roots, intermediates *x509.CertPool
	// u2fRoot is Yubico's U2F root, which certified the F9 keys of YubiKeys made before mid-2017 and
	// in 2018; a chain ending there must have a PIV F9 certificate (its FIDO certificates are leaves).
	u2fRoot   *x509.Certificate
	rehearsal bool
	name      string
}

// Rehearsal reports whether t is a rehearsal trust (the sim's virtual root).
func (t *Trust) Rehearsal() bool { return t.rehearsal }

var yubicoTrust = sync.OnceValues(func() (*Trust, error) {
	parse := func(pems ...string) ([]*x509.Certificate, error) {
		var cs []*x509.Certificate
		for _, p := range pems {
			c, err := parseCertificatePEM(p)
			if err != nil {
				return nil, err
			}
			cs = append(cs, c)
		}
		return cs, nil
	}
	roots, err := parse(yubicoPIVRootCA, yubicoAttestationRoot1, yubicoU2FRootCA)
	if err != nil {
		return nil, fmt.Errorf("card: embedded Yubico root: %w", err)
	}
	intermediates, err := parse(yubicoAttestationIntermediateA1, yubicoAttestationIntermediateB1,
		yubicoPIVAttestationA1, yubicoPIVAttestationB1)
	if err != nil {
		return nil, fmt.Errorf("card: embedded Yubico intermediate: %w", err)
	}
	t := newTrust(roots, intermediates, false, "Yubico's PIV attestation roots")
	t.u2fRoot = roots[2]
	return t, nil
})

// YubicoTrust returns the production trust: Yubico's PIV attestation roots (the PIV root CA serial
// 263751, the 2024 Yubico Attestation Root 1 with its PIV intermediates, and the U2F root that
// certified early YubiKey 4s), embedded in custos.
func YubicoTrust() (*Trust, error) { return yubicoTrust() }

// RehearsalTrust returns the rehearsal trust: only the virtual root in rootPEM (the sim's
// attestation-root.pem), which must be a self-signed CA whose common name says RehearsalRootMarker.
func RehearsalTrust(rootPEM []byte) (*Trust, error) {
	b, rest := pem.Decode(rootPEM)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("card: rehearsal attestation root: want exactly one PEM CERTIFICATE")
	}
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("card: rehearsal attestation root: %w", err)
	}
	if !strings.Contains(root.Subject.CommonName, RehearsalRootMarker) {
		return nil, fmt.Errorf("card: rehearsal attestation root %q does not say %q; custos trusts only the sim's virtual root in rehearsal",
			root.Subject.CommonName, RehearsalRootMarker)
	}
	if !root.BasicConstraintsValid || !root.IsCA || !bytes.Equal(root.RawIssuer, root.RawSubject) {
		return nil, fmt.Errorf("card: rehearsal attestation root %q is not a self-signed CA certificate", root.Subject.CommonName)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("card: rehearsal attestation root %q: self-signature: %w", root.Subject.CommonName, err)
	}
	return newTrust([]*x509.Certificate{root}, nil, true, "the rehearsal (virtual) attestation root"), nil
}

func newTrust(roots, intermediates []*x509.Certificate, rehearsal bool, name string) *Trust {
	t := &Trust{roots: x509.NewCertPool(), intermediates: x509.NewCertPool(), rehearsal: rehearsal, name: name}
	for _, c := range roots {
		t.roots.AddCert(c)
	}
	for _, c := range intermediates {
		t.intermediates.AddCert(c)
	}
	return t
}

// VerifyChain verifies a slot attestation certificate: it is signed by the F9 (device attestation)
// certificate's key, and the F9 certificate chains to one of t's roots through t's intermediates. It
// returns what the slot certificate attests. The checks are the chain's only; whether the attested key,
// serial and policies are acceptable is [CheckPolicy]'s question.
//
// An F9 certificate without basic constraints is accepted, as genuine ones from YubiKey 4 and early
// YubiKey 5 firmware lack them; one that says it is not a CA is refused.
func VerifyChain(slotCert, f9Cert *x509.Certificate, t *Trust) (*Attestation, error) {
	a, err := verifyChain(slotCert, f9Cert, t)
	if err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	return a, nil
}

func verifyChain(slotCert, f9Cert *x509.Certificate, t *Trust) (*Attestation, error) {
	if slotCert == nil || f9Cert == nil || t == nil {
		return nil, fmt.Errorf("%w: missing certificate or trust", ErrAttestation)
	}
	if !bytes.Equal(slotCert.RawIssuer, f9Cert.RawSubject) {
		return nil, fmt.Errorf("%w: slot attestation %q names issuer %q, not this F9 certificate (%q)",
			ErrAttestation, slotCert.Subject.CommonName, slotCert.Issuer, f9Cert.Subject)
	}
	if f9Cert.BasicConstraintsValid && !f9Cert.IsCA {
		return nil, fmt.Errorf("%w: F9 certificate %q says it is not a CA", ErrAttestation, f9Cert.Subject)
	}
	if err := f9Cert.CheckSignature(slotCert.SignatureAlgorithm, slotCert.RawTBSCertificate, slotCert.Signature); err != nil {
		return nil, fmt.Errorf("%w: slot attestation %q: signature does not verify under the F9 key: %v",
			ErrAttestation, slotCert.Subject.CommonName, err)
	}
	if len(slotCert.UnhandledCriticalExtensions) != 0 {
		return nil, fmt.Errorf("%w: slot attestation %q has an unknown critical extension %v",
			ErrAttestation, slotCert.Subject.CommonName, slotCert.UnhandledCriticalExtensions[0])
	}
	now := time.Now()
	if now.Before(slotCert.NotBefore) || now.After(slotCert.NotAfter) {
		return nil, fmt.Errorf("%w: slot attestation %q is valid from %s to %s, not now",
			ErrAttestation, slotCert.Subject.CommonName, slotCert.NotBefore.Format(time.DateOnly), slotCert.NotAfter.Format(time.DateOnly))
	}
	// The F9 certificate is the leaf of this verification, so its own basic constraints and path
	// length do not matter to Go's path building; its signature on the slot certificate is checked
	// above.
	chains, err := f9Cert.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: t.intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	})
	if err != nil && !t.rehearsal && strings.Contains(f9Cert.Issuer.String(), RehearsalRootMarker) {
		return nil, fmt.Errorf("%w: F9 certificate %q is issued by a virtual card's root (%q); production trusts only Yubico's roots",
			ErrAttestation, f9Cert.Subject, f9Cert.Issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: F9 certificate %q (issued by %q) does not chain to %s: %v",
			ErrAttestation, f9Cert.Subject, f9Cert.Issuer, t.name, err)
	}
	if !t.acceptable(chains, f9Cert) {
		return nil, fmt.Errorf("%w: F9 certificate %q chains to Yubico's U2F root but is not a PIV attestation certificate",
			ErrAttestation, f9Cert.Subject)
	}
	a, err := parseAttestation(slotCert)
	if err != nil {
		return nil, fmt.Errorf("%w: slot attestation %q: %v", ErrAttestation, slotCert.Subject.CommonName, err)
	}
	a.Rehearsal = t.rehearsal
	return a, nil
}

// acceptable reports whether one of the verified chains is acceptable for a PIV F9 certificate: a
// chain ending at the U2F root needs the F9 subject every genuine PIV F9 certificate has.
func (t *Trust) acceptable(chains [][]*x509.Certificate, f9 *x509.Certificate) bool {
	for _, ch := range chains {
		root := ch[len(ch)-1]
		if t.u2fRoot == nil || !root.Equal(t.u2fRoot) || f9.Subject.CommonName == f9SubjectCN {
			return true
		}
	}
	return false
}

// parseCertificatePEM parses a PEM string holding exactly one certificate, in the form
// pem.EncodeToMemory writes, so that one certificate has exactly one text.
func parseCertificatePEM(s string) (*x509.Certificate, error) {
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" || len(b.Headers) != 0 || len(rest) != 0 {
		return nil, fmt.Errorf("want exactly one PEM CERTIFICATE block")
	}
	if string(pem.EncodeToMemory(b)) != s {
		return nil, fmt.Errorf("PEM certificate is not in canonical form (64-column base64, one final newline)")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	return c, nil
}
