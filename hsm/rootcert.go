package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Root certificate validity limits (BR 7.1.2.1.1).
const (
	MinRootValidity = 2922 * 24 * time.Hour
	MaxRootValidity = 9132 * 24 * time.Hour
)

// RootProfile is a profile file for the root certificate (--ca-profile).
type RootProfile struct {
	Subject      string `json:"subject"`       // RFC 4514
	ValidityDays int    `json:"validity_days"` // 2922 to 9132
}

// LoadRootProfile reads a profile file and checks it.
func LoadRootProfile(path string) (*RootProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: profile: %w", err)
	}
	var p RootProfile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("hsm: profile %s: %w", path, err)
	}
	if _, err := ParseDN(p.Subject); err != nil {
		return nil, fmt.Errorf("hsm: profile %s: %w", path, err)
	}
	if v := time.Duration(p.ValidityDays) * 24 * time.Hour; v < MinRootValidity || v > MaxRootValidity {
		return nil, fmt.Errorf("hsm: profile %s: validity_days %d is outside BR 7.1.2.1.1's 2922 to 9132", path, p.ValidityDays)
	}
	return &p, nil
}

// RootCertificate makes the self-signed root certificate for the key behind signer, signed by it
// (inside the HSM when signer is a CA key's Signer), and checks it against BR 7.1.2.1.
func RootCertificate(signer crypto.Signer, subject pkix.RDNSequence, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	if len(subject) == 0 {
		return nil, errors.New("hsm: root certificate: empty subject")
	}
	rawSubject, err := asn1.Marshal(subject)
	if err != nil {
		return nil, fmt.Errorf("hsm: root certificate subject: %w", err)
	}
	pub := signer.Public()
	ski, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	// A random serial of 127 bits: positive, below 2^159, at least 64 bits from the CSPRNG.
	sb := make([]byte, 16)
	if _, err := rand.Read(sb); err != nil {
		return nil, err
	}
	sb[0] = sb[0]&0x7f | 0x40
	notBefore := now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sb),
		RawSubject:            rawSubject,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
		SignatureAlgorithm:    sigAlg(pub),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("hsm: root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("hsm: root certificate: %w", err)
	}
	if err := CheckRoot(cert, now); err != nil {
		return nil, err
	}
	return cert, nil
}

func sigAlg(pub crypto.PublicKey) x509.SignatureAlgorithm {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		if k.Curve == elliptic.P384() {
			return x509.ECDSAWithSHA384
		}
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

// CheckRoot checks a root certificate against the BR 7.1.2.1 profile, as signed at signedAt.
func CheckRoot(c *x509.Certificate, signedAt time.Time) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Version != 3 {
		fail("version %d, want v3", c.Version)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 159 || c.SerialNumber.BitLen() < 64 {
		fail("serial number of %d bits is not a positive random number of 64 to 159 bits", c.SerialNumber.BitLen())
	}
	if string(c.RawIssuer) != string(c.RawSubject) {
		fail("issuer is not byte for byte the subject")
	}
	if len(c.Subject.Names) == 0 {
		fail("empty subject")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		fail("self-signature: %v", err)
	}
	if c.NotBefore.Before(signedAt.Add(-24*time.Hour)) || c.NotBefore.After(signedAt) {
		fail("notBefore %v is not within the day before signing (%v)", c.NotBefore, signedAt)
	}
	if v := c.NotAfter.Sub(c.NotBefore); v < MinRootValidity || v > MaxRootValidity {
		fail("validity of %.0f days is outside 2922 to 9132 days", v.Hours()/24)
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		fail("basicConstraints cA is not true")
	}
	if c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		fail("keyUsage lacks keyCertSign or cRLSign")
	}
	if c.KeyUsage&^(x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature) != 0 {
		fail("keyUsage has bits BR 7.1.2.10.7 does not permit (%#x)", c.KeyUsage)
	}
	if len(c.SubjectKeyId) == 0 {
		fail("no subjectKeyIdentifier")
	}
	if len(c.AuthorityKeyId) != 0 && string(c.AuthorityKeyId) != string(c.SubjectKeyId) {
		fail("authorityKeyIdentifier differs from subjectKeyIdentifier")
	}
	if len(c.ExtKeyUsage) != 0 || len(c.UnknownExtKeyUsage) != 0 {
		fail("extKeyUsage present")
	}
	crit := map[string]bool{}
	for _, e := range c.Extensions {
		crit[e.Id.String()] = e.Critical
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
			fail("extKeyUsage present")
		}
	}
	for oid, want := range map[string]bool{"2.5.29.19": true, "2.5.29.15": true, "2.5.29.14": false} {
		if got, ok := crit[oid]; !ok || got != want {
			fail("extension %s: present %v, critical %v; want present, critical %v", oid, ok, got, want)
		}
	}
	if got, ok := crit["2.5.29.35"]; ok && got {
		fail("authorityKeyIdentifier is critical")
	}
	if err := checkTBS(c.Raw); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hsm: root certificate fails BR 7.1.2.1: %w", err)
	}
	return nil
}

// checkTBS checks what x509.Certificate does not expose: the two signature algorithm fields are
// byte-identical, and there is no issuerUniqueID or subjectUniqueID.
func checkTBS(raw []byte) error {
	in := cryptobyte.String(raw)
	var cert, tbs, tbsAlg, outerAlg cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&outerAlg, cbasn1.SEQUENCE) {
		return errors.New("malformed certificate")
	}
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !tbs.SkipASN1(cbasn1.INTEGER) ||
		!tbs.ReadASN1Element(&tbsAlg, cbasn1.SEQUENCE) {
		return errors.New("malformed tbsCertificate")
	}
	if string(tbsAlg) != string(outerAlg) {
		return errors.New("signatureAlgorithm differs from tbsCertificate.signature")
	}
	for i := 0; i < 4; i++ { // issuer, validity, subject, subjectPublicKeyInfo
		if !tbs.SkipASN1(cbasn1.SEQUENCE) {
			return errors.New("malformed tbsCertificate")
		}
	}
	if tbs.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) || tbs.PeekASN1Tag(cbasn1.Tag(2).ContextSpecific()) ||
		tbs.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) || tbs.PeekASN1Tag(cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return errors.New("issuerUniqueID or subjectUniqueID present")
	}
	return nil
}
