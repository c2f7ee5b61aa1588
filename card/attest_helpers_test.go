package card

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate and its key: a root, an intermediate or an F9 (device attestation) key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// caOpts shapes a CA certificate. maxPathLen < 0 means none; noBasicConstraints leaves the extension
// out, as some genuine F9 certificates do.
type caOpts struct {
	maxPathLen         int
	noBasicConstraints bool
	notCA              bool
	extra              []pkix.Extension
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serialNumber(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func caTemplate(t testing.TB, cn string, o caOpts) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:    serialNumber(t),
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageCertSign,
		ExtraExtensions: o.extra,
	}
	if !o.noBasicConstraints {
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = !o.notCA
		if o.notCA {
			tmpl.MaxPathLen = -1
		} else if o.maxPathLen >= 0 {
			tmpl.MaxPathLen, tmpl.MaxPathLenZero = o.maxPathLen, o.maxPathLen == 0
		} else {
			tmpl.MaxPathLen = -1
		}
	}
	return tmpl
}

func newRoot(t testing.TB, cn string, maxPathLen int) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := caTemplate(t, cn, caOpts{maxPathLen: maxPathLen})
	return &testCA{cert: createCert(t, tmpl, tmpl, &key.PublicKey, key), key: key}
}

func (ca *testCA) issueCA(t testing.TB, cn string, o caOpts) *testCA {
	t.Helper()
	key := newKey(t)
	return &testCA{cert: createCert(t, caTemplate(t, cn, o), ca.cert, &key.PublicKey, ca.key), key: key}
}

// issueF9 makes a card's F9 certificate, shaped like a genuine one: CN "Yubico PIV Attestation",
// the firmware extension, CA with path length 0.
func (ca *testCA) issueF9(t testing.TB, fw Firmware) *testCA {
	t.Helper()
	return ca.issueCA(t, f9SubjectCN, caOpts{extra: []pkix.Extension{{Id: oidFirmware, Value: fw[:]}}})
}

// attest issues a slot attestation certificate for pub, signed by the F9 key ca.
func (ca *testCA) attest(t testing.TB, slot Slot, pub crypto.PublicKey, exts []pkix.Extension) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:    serialNumber(t),
		Subject:         pkix.Name{CommonName: slotSubjectPrefix + slot.String()},
		NotBefore:       ca.cert.NotBefore,
		NotAfter:        ca.cert.NotAfter,
		ExtraExtensions: exts,
	}
	return createCert(t, tmpl, ca.cert, pub, ca.key)
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// yubicoExtensions returns the four Yubico extensions of a slot attestation.
func yubicoExtensions(t testing.TB, serial uint32, fw Firmware, pin PINPolicy, touch TouchPolicy) []pkix.Extension {
	t.Helper()
	s, err := asn1.Marshal(int64(serial))
	if err != nil {
		t.Fatal(err)
	}
	return []pkix.Extension{
		{Id: oidFirmware, Value: fw[:]},
		{Id: oidSerial, Value: s},
		{Id: oidPolicy, Value: []byte{byte(pin), byte(touch)}},
		{Id: oidFormFactor, Value: []byte{0x03}},
	}
}

func pemString(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// cardSpec describes a card to enroll in a test: which slots and policies its two keys get.
// attestSerial, when set, is the serial the attestations say instead of serial.
type cardSpec struct {
	name               string
	serial             uint32
	attestSerial       uint32
	rehearsal          bool
	decSlot, sigSlot   Slot
	decPIN, sigPIN     PINPolicy
	decTouch, sigTouch TouchPolicy
	firmware           Firmware
}

func spec(name string, serial uint32) cardSpec {
	return cardSpec{
		name: name, serial: serial, decSlot: 0x82, sigSlot: SlotCardAuthentication,
		decPIN: PINOnce, decTouch: TouchAlways, sigPIN: PINNever, sigTouch: TouchNever,
		firmware: Firmware{5, 7, 4},
	}
}

// enroll makes the custodian record of a card whose F9 key is ca: two fresh P-256 keys, attested.
func (ca *testCA) enroll(t testing.TB, s cardSpec) *Record {
	t.Helper()
	attested := s.serial
	if s.attestSerial != 0 {
		attested = s.attestSerial
	}
	dec, sig := newKey(t), newKey(t)
	decCert := ca.attest(t, s.decSlot, &dec.PublicKey, yubicoExtensions(t, attested, s.firmware, s.decPIN, s.decTouch))
	sigCert := ca.attest(t, s.sigSlot, &sig.PublicKey, yubicoExtensions(t, attested, s.firmware, s.sigPIN, s.sigTouch))
	decECDH, err := dec.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	return newTestRecord(t, s, decECDH, decCert, sigCert, ca.cert)
}

func newTestRecord(t testing.TB, s cardSpec, dec *ecdh.PublicKey, decCert, sigCert, f9 *x509.Certificate) *Record {
	t.Helper()
	rcp, err := NewRecipient(dec)
	if err != nil {
		t.Fatal(err)
	}
	stub, err := NewStub(s.serial, byte(s.decSlot), rcp)
	if err != nil {
		t.Fatal(err)
	}
	return &Record{
		Format: RecordFormat, Name: s.name, Rehearsal: s.rehearsal,
		Recipient: rcp.String(), Identity: stub.String(), Serial: s.serial, Firmware: s.firmware,
		Decryption: KeyRecord{Slot: s.decSlot, PINPolicy: s.decPIN, TouchPolicy: s.decTouch,
			PublicKey: decCert.RawSubjectPublicKeyInfo, Attestation: pemString(decCert)},
		Signing: KeyRecord{Slot: s.sigSlot, PINPolicy: s.sigPIN, TouchPolicy: s.sigTouch,
			PublicKey: sigCert.RawSubjectPublicKeyInfo, Attestation: pemString(sigCert)},
		F9Certificate: pemString(f9),
	}
}

// yubico2024Shape is a synthetic hierarchy shaped like Yubico's of 2024: root (path length 3) →
// "Attestation Intermediate" (2) → "PIV Attestation" (1) → F9 → slot. trust trusts its root and
// intermediates as production trusts Yubico's.
type yubico2024Shape struct {
	root, intermediate, piv *testCA
}

func newYubico2024Shape(t testing.TB) *yubico2024Shape {
	t.Helper()
	root := newRoot(t, "Test Attestation Root 1", 3)
	inter := root.issueCA(t, "Test Attestation Intermediate A 1", caOpts{maxPathLen: 2})
	piv := inter.issueCA(t, "Test PIV Attestation A 1", caOpts{maxPathLen: 1})
	return &yubico2024Shape{root: root, intermediate: inter, piv: piv}
}

func (y *yubico2024Shape) trust() *Trust {
	return newTrust([]*x509.Certificate{y.root.cert}, []*x509.Certificate{y.intermediate.cert, y.piv.cert}, false, "the test roots")
}

// newVirtualRoot is a root shaped like the sim's fleet root (custos-sim RootSubject).
func newVirtualRoot(t testing.TB) *testCA {
	return newRoot(t, "custos-sim virtual YubiKey attestation root (NOT FOR PRODUCTION)", -1)
}

func rehearsalTrust(t testing.TB, root *testCA) *Trust {
	t.Helper()
	tr, err := RehearsalTrust([]byte(pemString(root.cert)))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func readCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "attest", name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertificatePEM(string(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}
