package pcsctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// Four 5.4 cards: two vpcd entries, both slots used.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithSim(m, testenv.SimOptions{Cards: 4, FirstSerial: 8000001}))
}

// open opens the card with this serial through PC/SC; it is closed at the end of the test at the
// latest.
func open(t testing.TB, e *testenv.SimEnv, serial uint32) *piv.YubiKey {
	t.Helper()
	yk, err := piv.Open(e.Reader(t, serial))
	if err != nil {
		t.Fatalf("open card %d: %v", serial, err)
	}
	t.Cleanup(func() { yk.Close() })
	return yk
}

// generate makes a P-256 key in slot on the card (PIN once, touch never) and returns its public key.
func generate(t testing.TB, yk *piv.YubiKey, slot piv.Slot) *ecdsa.PublicKey {
	t.Helper()
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, slot, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatalf("generate key in %v: %v", slot, err)
	}
	return pub.(*ecdsa.PublicKey)
}

// signVerify signs a digest with the card's key in slot and verifies the signature with pub.
func signVerify(t testing.TB, yk *piv.YubiKey, slot piv.Slot, pub *ecdsa.PublicKey) {
	t.Helper()
	priv, err := yk.PrivateKey(slot, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("custos pcsctest"))
	sig, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sign with %v: %v", slot, err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("signature from %v does not verify", slot)
	}
}

// certFor returns a certificate for pub, issued by a throwaway software key.
func certFor(t testing.TB, pub crypto.PublicKey, cn string) *x509.Certificate {
	t.Helper()
	issuer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, issuer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
