package sim

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Yubico attestation extensions.
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// The validity of real YubiKey attestation certificates, which slot attestations copy.
var (
	attestNotBefore = time.Date(2016, 3, 14, 0, 0, 0, 0, time.UTC)
	attestNotAfter  = time.Date(2052, 4, 17, 0, 0, 0, 0, time.UTC)
)

const (
	tagCertificate = 0x70
	tagCertInfo    = 0x71
	tagErrorDetect = 0xFE
)

// certObject wraps a DER certificate as PIV stores it: 70 cert ‖ 71 00 (uncompressed) ‖ FE (LRC).
func certObject(der []byte) []byte {
	return appendTLV(appendTLV(appendTLV(nil, tagCertificate, der), tagCertInfo, []byte{0}), tagErrorDetect, nil)
}

func randomSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	b[0] = b[0]&0x7F | 0x40 // positive, 16 bytes
	return new(big.Int).SetBytes(b), nil
}

// newAttestationKey makes a card's slot F9 key and its certificate, issued by the fleet root.
func newAttestationKey(root *x509.Certificate, rootKey crypto.Signer, serial uint32, p Profile) (*slotKey, []byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := randomSerial(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	fw := p.firmware()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			CommonName:   "Yubico PIV Attestation",
			Organization: []string{"custos-sim virtual YubiKey (NOT FOR PRODUCTION)"},
			SerialNumber: fmt.Sprint(serial),
		},
		NotBefore:             attestNotBefore,
		NotAfter:              attestNotAfter,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		ExtraExtensions:       []pkix.Extension{{Id: oidFirmware, Value: fw[:]}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &priv.PublicKey, rootKey)
	if err != nil {
		return nil, nil, err
	}
	k, err := newSlotKey(algP256, pinNever, touchNever, originImported, priv)
	if err != nil {
		return nil, nil, err
	}
	return k, certObject(der), nil
}

var errNoAttestationKey = errors.New("no usable attestation key and certificate in slot F9")

// attest implements ATTEST: a certificate for the key in slot P1, issued by the F9 key, carrying the
// firmware, serial, policies and form factor. Only keys generated on the card can be attested.
func (c *Card) attest(cmd command) ([]byte, uint16) {
	slot := cmd.p1
	k, ok := c.st.Keys[slot]
	if !isKeySlot(slot) || !ok || k.Origin != originGenerated {
		return nil, swIncorrectData
	}
	der, err := c.attestCert(slot, k)
	if err != nil {
		return nil, swIncorrectData
	}
	return der, swOK
}

func (c *Card) attestCert(slot byte, k *slotKey) ([]byte, error) {
	f9, ok := c.st.Keys[slotAttestation]
	if !ok {
		return nil, errNoAttestationKey
	}
	signer, ok := f9.priv.(crypto.Signer)
	if !ok {
		return nil, errNoAttestationKey
	}
	ts, err := parseTLVs(c.st.Objects[objAttestation])
	if err != nil {
		return nil, err
	}
	certDER, ok := find(ts, tagCertificate)
	if !ok {
		return nil, errNoAttestationKey
	}
	parent, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, err
	}
	pub, ok := k.priv.(interface{ Public() crypto.PublicKey })
	if !ok {
		return nil, errKey
	}
	sn, err := randomSerial(c.rand)
	if err != nil {
		return nil, err
	}
	serial, err := asn1.Marshal(int64(c.st.Serial))
	if err != nil {
		return nil, err
	}
	fw := c.st.Profile.firmware()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: fmt.Sprintf("YubiKey PIV Attestation %02x", slot)},
		NotBefore:    parent.NotBefore,
		NotAfter:     parent.NotAfter,
		ExtraExtensions: []pkix.Extension{
			{Id: oidFirmware, Value: fw[:]},
			{Id: oidSerial, Value: serial},
			{Id: oidPolicy, Value: []byte{k.PIN, k.Touch}},
			{Id: oidFormFactor, Value: []byte{formFactor}},
		},
	}
	if xpub, ok := pub.Public().(*ecdh.PublicKey); ok {
		return createWithSPKI(c.rand, tmpl, parent, xpub, signer)
	}
	return x509.CreateCertificate(c.rand, tmpl, parent, pub.Public(), signer)
}

// createWithSPKI issues a certificate for a key that crypto/x509 can encode but not certify (X25519):
// it issues one for a stand-in key, swaps in the real subject public key info and signs again.
func createWithSPKI(rand io.Reader, tmpl, parent *x509.Certificate, pub *ecdh.PublicKey, signer crypto.Signer) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	standIn, _, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand, tmpl, parent, standIn, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	var outer struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, err
	}
	var tbs struct {
		Version    asn1.RawValue `asn1:"optional,explicit,tag:0"`
		Serial     asn1.RawValue
		SigAlg     asn1.RawValue
		Issuer     asn1.RawValue
		Validity   asn1.RawValue
		Subject    asn1.RawValue
		SPKI       asn1.RawValue
		Extensions asn1.RawValue `asn1:"optional,explicit,tag:3"`
	}
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		return nil, err
	}
	tbs.SPKI = asn1.RawValue{FullBytes: spki}
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		return nil, err
	}
	h, ok := signatureHash[cert.SignatureAlgorithm]
	if !ok {
		return nil, fmt.Errorf("attestation key signature algorithm %v", cert.SignatureAlgorithm)
	}
	digest := tbsDER
	if h != 0 {
		hh := h.New()
		hh.Write(tbsDER)
		digest = hh.Sum(nil)
	}
	sig, err := signer.Sign(rand, digest, h)
	if err != nil {
		return nil, err
	}
	outer.TBS = asn1.RawValue{FullBytes: tbsDER}
	outer.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return asn1.Marshal(outer)
}

// signatureHash maps the signature algorithms crypto/x509 picks for an attestation key to the hash
// that key signs.
var signatureHash = map[x509.SignatureAlgorithm]crypto.Hash{
	x509.SHA256WithRSA: crypto.SHA256, x509.SHA384WithRSA: crypto.SHA384, x509.SHA512WithRSA: crypto.SHA512,
	x509.ECDSAWithSHA256: crypto.SHA256, x509.ECDSAWithSHA384: crypto.SHA384, x509.ECDSAWithSHA512: crypto.SHA512,
	x509.PureEd25519: 0,
}
