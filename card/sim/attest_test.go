package sim

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"
)

// attestationCert reads object 5FFF01 as piv-go's AttestationCertificate does.
func attestationCert(t *testing.T, c *Card) *x509.Certificate {
	t.Helper()
	resp := mustOK(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FFF01"))
	outer, err := parseTLVs(resp)
	if err != nil || len(outer) != 1 || outer[0].tag != tagObjectData {
		t.Fatalf("5FFF01 %x", resp)
	}
	inner, err := parseTLVs(outer[0].value)
	if err != nil {
		t.Fatal(err)
	}
	der, ok := find(inner, tagCertificate)
	if !ok {
		t.Fatal("5FFF01 has no certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestAttestation(t *testing.T) {
	for _, tc := range []struct {
		p          Profile
		slot, alg  byte
		pin, touch byte
		pinPolicy  piv.PINPolicy
		touchPol   piv.TouchPolicy
		slotWanted piv.Slot
	}{
		{Profile54, 0x9A, algP256, pinOnce, touchAlways, piv.PINPolicyOnce, piv.TouchPolicyAlways, piv.SlotAuthentication},
		{Profile54, 0x9C, algP384, pinAlways, touchCached, piv.PINPolicyAlways, piv.TouchPolicyCached, piv.SlotSignature},
		{Profile52, 0x9D, algP256, pinNever, touchNever, piv.PINPolicyNever, piv.TouchPolicyNever, piv.SlotKeyManagement},
		{Profile57, 0x9E, algX25519, pinNever, touchAlways, piv.PINPolicyNever, piv.TouchPolicyAlways, piv.SlotCardAuthentication},
		{Profile57, 0x9A, algEd25519, pinOnce, touchNever, piv.PINPolicyOnce, piv.TouchPolicyNever, piv.SlotAuthentication},
	} {
		c := newTestCard(t, tc.p)
		root := fleetOf(t, c).Root()
		roots := x509.NewCertPool()
		roots.AddCert(root)
		selectPIV(t, c)
		wantSW(t, c, insAttest, tc.slot, 0, nil, swIncorrectData) // empty slot: piv-go's ErrNotFound
		if tc.p == Profile57 {
			authMgmtAES(t, c, algAES192, defaultMgmtKey)
		} else {
			authMgmt3DES(t, c, defaultMgmtKey)
		}
		pub := generate(t, c, tc.slot, tc.alg, tc.pin, tc.touch)
		selectPIV(t, c) // ATTEST needs no authentication
		der := mustOK(t, c, insAttest, tc.slot, 0, nil)
		if der[0] != 0x30 {
			t.Fatalf("attestation is not a raw DER certificate: %x", der[:4])
		}
		slotCert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		f9 := attestationCert(t, c)
		if err := f9.CheckSignatureFrom(root); err != nil {
			t.Fatalf("F9 certificate not issued by the fleet root: %v", err)
		}
		a, err := (&piv.Verifier{Roots: roots}).Verify(f9, slotCert)
		if err != nil {
			t.Fatalf("%s slot %02x: %v", tc.p, tc.slot, err)
		}
		fw := tc.p.firmware()
		if a.Serial != c.Serial() || a.Version != (piv.Version{Major: int(fw[0]), Minor: int(fw[1]), Patch: int(fw[2])}) ||
			a.PINPolicy != tc.pinPolicy || a.TouchPolicy != tc.touchPol || a.Formfactor != piv.FormfactorUSBAKeychain ||
			a.Slot != tc.slotWanted {
			t.Errorf("%s slot %02x: attestation %+v", tc.p, tc.slot, a)
		}
		// crypto/x509 parses no X25519 key from a certificate (PublicKey is nil): compare the encodings.
		if spki, err := x509.MarshalPKIXPublicKey(pub); err != nil || !bytes.Equal(spki, slotCert.RawSubjectPublicKeyInfo) {
			t.Errorf("%s slot %02x: attested key is not the generated key", tc.p, tc.slot)
		}
		// Yubico's own roots do not accept a virtual card.
		if _, err := piv.Verify(f9, slotCert); err == nil {
			t.Error("the attestation verifies against Yubico's roots")
		}
	}
	wantSW(t, newTestCard(t, Profile54), insAttest, slotAttestation, 0, nil, swIncorrectData)
}

func TestFleet(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFleet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Root().Subject.CommonName != RootSubject || !bytes.Contains([]byte(RootSubject), []byte("NOT FOR PRODUCTION")) {
		t.Fatalf("root subject %s", f.Root().Subject)
	}
	if !f.Root().IsCA || f.Root().MaxPathLen == 0 && f.Root().MaxPathLenZero {
		t.Fatal("root is not a CA that may issue an intermediate")
	}
	again, err := OpenFleet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Root().Equal(f.Root()) || !bytes.Equal(again.RootPEM(), f.RootPEM()) {
		t.Fatal("reopened fleet has another root")
	}
	b, _ := pem.Decode(f.RootPEM())
	if b == nil || !bytes.Equal(b.Bytes, f.Root().Raw) {
		t.Fatal("RootPEM is not the root certificate")
	}
	assertMode(t, dir+"/"+rootKeyFile, 0o600)

	// A root certificate without its key is an error, not a new root.
	other := t.TempDir()
	if err := writeFileAtomic(other+"/"+rootCertFile, f.RootPEM(), 0o644, true); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFleet(other); err == nil {
		t.Fatal("OpenFleet accepted a root certificate without its key")
	}
}
