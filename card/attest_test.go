package card

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestYubicoCertificates checks the embedded Yubico certificates against the SHA-256 fingerprints
// documented in attest_yubico.go, and that the 2024 PIV intermediates chain to Yubico Attestation
// Root 1.
func TestYubicoCertificates(t *testing.T) {
	want := []struct {
		pem, cn, issuer, sha256 string
	}{
		{yubicoPIVRootCA, "Yubico PIV Root CA Serial 263751", "Yubico PIV Root CA Serial 263751", "63ECE914E54DD87915F34033C85AF4C0696BA1512F8ADD66CED738331207B546"},
		{yubicoU2FRootCA, "Yubico U2F Root CA Serial 457200631", "Yubico U2F Root CA Serial 457200631", "0FA1386F80EB8713263AE5C1D84DEB455BDF08AEA50AB05503CEFEE82B092D42"},
		{yubicoAttestationRoot1, "Yubico Attestation Root 1", "Yubico Attestation Root 1", "62760C6A6EF91679F454C8902B80FD009825B3F25DA90F1FBACE2EC6586CD5A8"},
		{yubicoAttestationIntermediateA1, "Yubico Attestation Intermediate A 1", "Yubico Attestation Root 1", "4698A1D3389C3EC60016C216250F1D0439922832D65142327436376DC2942B55"},
		{yubicoAttestationIntermediateB1, "Yubico Attestation Intermediate B 1", "Yubico Attestation Root 1", "D4CC3F456FDAF4E7812A21AAB1DFE9D8E27D24E2FD2D6F21C9940109F0DAA754"},
		{yubicoPIVAttestationA1, "Yubico PIV Attestation A 1", "Yubico Attestation Intermediate A 1", "6DE693F05376F5D8CA29069261E1C8626C75D503BD2EDBFD75354CAD1F722870"},
		{yubicoPIVAttestationB1, "Yubico PIV Attestation B 1", "Yubico Attestation Intermediate B 1", "2D55B7998F4E42569D6D8FA382B6DC77D1DACF07358B19701163892922B17052"},
	}
	tr, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		c, err := parseCertificatePEM(w.pem)
		if err != nil {
			t.Fatalf("%s: %v", w.cn, err)
		}
		sum := sha256.Sum256(c.Raw)
		if got := strings.ToUpper(hex.EncodeToString(sum[:])); got != w.sha256 {
			t.Errorf("%s: SHA-256 %s, documented %s", w.cn, got, w.sha256)
		}
		if c.Subject.CommonName != w.cn || c.Issuer.CommonName != w.issuer {
			t.Errorf("certificate %q issued by %q, want %q issued by %q", c.Subject.CommonName, c.Issuer.CommonName, w.cn, w.issuer)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA", w.cn)
		}
		if strings.HasPrefix(w.cn, "Yubico PIV Attestation") {
			chains, err := c.Verify(x509.VerifyOptions{Roots: tr.roots, Intermediates: tr.intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil {
				t.Errorf("%s does not chain to Yubico Attestation Root 1: %v", w.cn, err)
			} else if n := len(chains[0]); n != 3 || chains[0][2].Subject.CommonName != "Yubico Attestation Root 1" {
				t.Errorf("%s: chain of %d ending at %q", w.cn, n, chains[0][n-1].Subject.CommonName)
			}
		}
	}
}

// TestVerifyChainGenuineYubiKey verifies piv-go v2.6.0's genuine YubiKey attestations (TestVerify's
// fixtures, in testdata/attest) under the embedded Yubico roots, and refuses their crossed pairs.
func TestVerifyChainGenuineYubiKey(t *testing.T) {
	tr, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("5.4.3 under the PIV root CA", func(t *testing.T) {
		slot := readCert(t, "yubikey-5.4.3-9a.pem")
		a, err := VerifyChain(slot, readCert(t, "yubikey-5.4.3-f9.pem"), tr)
		if err != nil {
			t.Fatal(err)
		}
		want := Attestation{Serial: 15732500, Firmware: Firmware{5, 4, 3}, Slot: 0x9a, PINPolicy: PINOnce,
			TouchPolicy: TouchNever, FormFactor: 4, PublicKey: slot.RawSubjectPublicKeyInfo}
		if !attestationEqual(a, &want) {
			t.Errorf("got %+v, want %+v", a, want)
		}
	})
	t.Run("4.3.7 under the U2F root, F9 without basic constraints", func(t *testing.T) {
		f9 := readCert(t, "yubikey-4.3.7-f9.pem")
		if f9.BasicConstraintsValid {
			t.Fatal("fixture changed: the 4.3.7 F9 certificate was expected to lack basic constraints")
		}
		slot := readCert(t, "yubikey-4.3.7-9a.pem")
		a, err := VerifyChain(slot, f9, tr)
		if err != nil {
			t.Fatal(err)
		}
		want := Attestation{Serial: 0, Firmware: Firmware{4, 3, 7}, Slot: 0x9a, PINPolicy: PINOnce,
			TouchPolicy: TouchNever, PublicKey: slot.RawSubjectPublicKeyInfo}
		if !attestationEqual(a, &want) {
			t.Errorf("got %+v, want %+v", a, want)
		}
	})
	for _, pair := range [][2]string{{"yubikey-5.4.3-f9.pem", "yubikey-4.3.7-9a.pem"}, {"yubikey-4.3.7-f9.pem", "yubikey-5.4.3-9a.pem"}} {
		t.Run("crossed "+pair[0]+" "+pair[1], func(t *testing.T) {
			_, err := VerifyChain(readCert(t, pair[1]), readCert(t, pair[0]), tr)
			if !errors.Is(err, ErrAttestation) {
				t.Fatalf("crossed pair: got %v, want ErrAttestation", err)
			}
		})
	}
}

func attestationEqual(a, b *Attestation) bool {
	return a.Serial == b.Serial && a.Firmware == b.Firmware && a.Slot == b.Slot && a.PINPolicy == b.PINPolicy &&
		a.TouchPolicy == b.TouchPolicy && a.FormFactor == b.FormFactor && bytes.Equal(a.PublicKey, b.PublicKey) &&
		a.Rehearsal == b.Rehearsal
}

// changeByte returns c with the byte after the first occurrence of find changed, reparsed.
func changeByte(t *testing.T, c *x509.Certificate, find string, delta byte) *x509.Certificate {
	t.Helper()
	f, err := hex.DecodeString(find)
	if err != nil {
		t.Fatal(err)
	}
	der := bytes.Clone(c.Raw)
	i := bytes.Index(der, f)
	if i < 0 {
		t.Fatalf("%x not in %q", f, c.Subject.CommonName)
	}
	der[i+len(f)-1] += delta
	changed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

// TestVerifyChainChangedByte refuses genuine chains with one byte changed: in the slot certificate's
// serial, in its signature, and in the F9 certificate's firmware extension.
func TestVerifyChainChangedByte(t *testing.T) {
	tr, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	slot, f9 := readCert(t, "yubikey-5.4.3-9a.pem"), readCert(t, "yubikey-5.4.3-f9.pem")
	sigTail := hex.EncodeToString(slot.Raw[len(slot.Raw)-4:])
	for name, c := range map[string][2]*x509.Certificate{
		"slot serial":    {changeByte(t, slot, "020400F00F14", 1), f9},
		"slot signature": {changeByte(t, slot, sigTail, 1), f9},
		"F9 firmware":    {slot, changeByte(t, f9, "04030504"+"03", 1)},
	} {
		if _, err := VerifyChain(c[0], c[1], tr); !errors.Is(err, ErrAttestation) {
			t.Errorf("%s changed: got %v, want ErrAttestation", name, err)
		}
	}
}

// TestVerifyChain2024Shape verifies a synthetic chain shaped like Yubico's 2024 hierarchy (root →
// intermediate → PIV intermediate → F9 → slot) through the intermediates, and refuses it without them.
func TestVerifyChain2024Shape(t *testing.T) {
	y := newYubico2024Shape(t)
	fw := Firmware{5, 7, 4}
	key := newKey(t)
	t.Run("F9 with basic constraints", func(t *testing.T) {
		f9 := y.piv.issueF9(t, fw)
		slot := f9.attest(t, 0x85, &key.PublicKey, yubicoExtensions(t, 31000001, fw, PINAlways, TouchCached))
		a, err := VerifyChain(slot, f9.cert, y.trust())
		if err != nil {
			t.Fatal(err)
		}
		want := Attestation{Serial: 31000001, Firmware: fw, Slot: 0x85, PINPolicy: PINAlways, TouchPolicy: TouchCached,
			FormFactor: 3, PublicKey: slot.RawSubjectPublicKeyInfo}
		if !attestationEqual(a, &want) {
			t.Errorf("got %+v, want %+v", a, want)
		}
		rootsOnly := newTrust([]*x509.Certificate{y.root.cert}, nil, false, "the test root alone")
		if _, err := VerifyChain(slot, f9.cert, rootsOnly); !errors.Is(err, ErrAttestation) {
			t.Errorf("without intermediates: got %v, want ErrAttestation", err)
		}
		prod, err := YubicoTrust()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyChain(slot, f9.cert, prod); !errors.Is(err, ErrAttestation) {
			t.Errorf("under Yubico's roots: got %v, want ErrAttestation", err)
		}
	})
	t.Run("F9 without basic constraints", func(t *testing.T) {
		f9 := y.piv.issueCA(t, f9SubjectCN, caOpts{noBasicConstraints: true})
		slot := f9.attest(t, 0x9e, &key.PublicKey, yubicoExtensions(t, 31000001, fw, PINNever, TouchNever))
		if _, err := VerifyChain(slot, f9.cert, y.trust()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("F9 saying it is not a CA", func(t *testing.T) {
		f9 := y.piv.issueCA(t, f9SubjectCN, caOpts{notCA: true})
		slot := f9.attest(t, 0x9e, &key.PublicKey, yubicoExtensions(t, 31000001, fw, PINNever, TouchNever))
		if _, err := VerifyChain(slot, f9.cert, y.trust()); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "not a CA") {
			t.Fatalf("got %v, want the not-a-CA refusal", err)
		}
	})
	t.Run("slot certificate of another F9 with the same subject", func(t *testing.T) {
		f9, other := y.piv.issueF9(t, fw), y.piv.issueF9(t, fw)
		slot := other.attest(t, 0x82, &key.PublicKey, yubicoExtensions(t, 31000001, fw, PINOnce, TouchAlways))
		if _, err := VerifyChain(slot, f9.cert, y.trust()); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("got %v, want the signature refusal", err)
		}
	})
}

// TestVerifyChainVirtual: a chain shaped like the sim's (virtual root → F9 → slot) is refused under
// Yubico's roots, with the refusal naming the virtual issuer, and passes only under the rehearsal
// trust of its own root, which in turn refuses genuine Yubico chains.
func TestVerifyChainVirtual(t *testing.T) {
	root := newVirtualRoot(t)
	f9 := root.issueF9(t, Firmware{5, 7, 1})
	key := newKey(t)
	slot := f9.attest(t, 0x82, &key.PublicKey, yubicoExtensions(t, 10000001, Firmware{5, 7, 1}, PINOnce, TouchAlways))

	prod, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyChain(slot, f9.cert, prod)
	if !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), RehearsalRootMarker) {
		t.Fatalf("production: got %v, want a refusal naming the virtual root", err)
	}

	a, err := VerifyChain(slot, f9.cert, rehearsalTrust(t, root))
	if err != nil {
		t.Fatalf("rehearsal: %v", err)
	}
	if !a.Rehearsal || a.Serial != 10000001 {
		t.Errorf("rehearsal attestation %+v, want serial 10000001 marked rehearsal", a)
	}

	otherFleet := newVirtualRoot(t)
	if _, err := VerifyChain(slot, f9.cert, rehearsalTrust(t, otherFleet)); !errors.Is(err, ErrAttestation) {
		t.Errorf("another fleet's root: got %v, want ErrAttestation", err)
	}
	if _, err := VerifyChain(readCert(t, "yubikey-5.4.3-9a.pem"), readCert(t, "yubikey-5.4.3-f9.pem"), rehearsalTrust(t, root)); !errors.Is(err, ErrAttestation) {
		t.Errorf("genuine chain in rehearsal: got %v, want ErrAttestation (rehearsal trusts only the virtual root)", err)
	}
}

func TestRehearsalTrustRefuses(t *testing.T) {
	root := newVirtualRoot(t)
	intermediate := root.issueCA(t, "custos-sim intermediate (NOT FOR PRODUCTION)", caOpts{maxPathLen: -1})
	for name, in := range map[string]string{
		"a root that does not say it is virtual": pemString(newRoot(t, "Yubico Attestation Root 1", -1).cert),
		"Yubico's genuine root":                  yubicoAttestationRoot1,
		"a certificate that is not self-signed":  pemString(intermediate.cert),
		"two certificates":                       pemString(root.cert) + pemString(root.cert),
		"no certificate":                         "",
	} {
		if _, err := RehearsalTrust([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestU2FRootNeedsPIVF9: a chain ending at Yubico's U2F root is accepted only for an F9 certificate
// with the PIV attestation subject (the U2F root also certifies FIDO attestation keys).
func TestU2FRootNeedsPIVF9(t *testing.T) {
	tr, err := YubicoTrust()
	if err != nil {
		t.Fatal(err)
	}
	f9 := readCert(t, "yubikey-4.3.7-f9.pem")
	chain := [][]*x509.Certificate{{f9, tr.u2fRoot}}
	if !tr.acceptable(chain, f9) {
		t.Fatal("genuine PIV F9 under the U2F root refused")
	}
	fido := *f9
	fido.Subject = pkix.Name{CommonName: "Yubico U2F EE Serial 23925734811456"}
	if tr.acceptable(chain, &fido) {
		t.Error("non-PIV certificate under the U2F root accepted as an F9 certificate")
	}
}

// TestParseAttestation refuses slot attestation certificates whose subject or Yubico extensions are
// malformed.
func TestParseAttestation(t *testing.T) {
	fw := Firmware{5, 4, 3}
	good := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:                 pkix.Name{CommonName: "YubiKey PIV Attestation 9a"},
			Extensions:              yubicoExtensions(t, 123456, fw, PINOnce, TouchAlways),
			RawSubjectPublicKeyInfo: []byte{0x30, 0x00},
		}
	}
	if a, err := parseAttestation(good()); err != nil || a.Serial != 123456 || a.Slot != 0x9a {
		t.Fatalf("well-formed: %+v, %v", a, err)
	}
	ext := func(oid asn1.ObjectIdentifier, v string) func(c *x509.Certificate) {
		return func(c *x509.Certificate) {
			b, _ := hex.DecodeString(v)
			for i := range c.Extensions {
				if c.Extensions[i].Id.Equal(oid) {
					c.Extensions[i].Value = b
				}
			}
		}
	}
	drop := func(oid asn1.ObjectIdentifier) func(c *x509.Certificate) {
		return func(c *x509.Certificate) {
			var keep []pkix.Extension
			for _, e := range c.Extensions {
				if !e.Id.Equal(oid) {
					keep = append(keep, e)
				}
			}
			c.Extensions = keep
		}
	}
	cn := func(s string) func(c *x509.Certificate) {
		return func(c *x509.Certificate) { c.Subject.CommonName = s }
	}
	for name, mutate := range map[string]func(*x509.Certificate){
		"subject without prefix":     cn("Some Certificate 9a"),
		"slot in upper case":         cn("YubiKey PIV Attestation 9A"),
		"slot not hex":               cn("YubiKey PIV Attestation zz"),
		"slot three digits":          cn("YubiKey PIV Attestation 09a"),
		"firmware two bytes":         ext(oidFirmware, "0504"),
		"no firmware":                drop(oidFirmware),
		"no policy":                  drop(oidPolicy),
		"PIN policy 0":               ext(oidPolicy, "0002"),
		"PIN policy 6":               ext(oidPolicy, "0602"),
		"touch policy 0":             ext(oidPolicy, "0200"),
		"touch policy 4":             ext(oidPolicy, "0204"),
		"policy three bytes":         ext(oidPolicy, "020201"),
		"serial negative":            ext(oidSerial, "0201ff"),
		"serial zero":                ext(oidSerial, "020100"),
		"serial above 2^32-1":        ext(oidSerial, "02050100000000"),
		"serial not minimal":         ext(oidSerial, "0202007f"),
		"serial with trailing bytes": ext(oidSerial, "02010500"),
		"serial not an INTEGER":      ext(oidSerial, "040105"),
		"form factor two bytes":      ext(oidFormFactor, "0101"),
		"policy twice": func(c *x509.Certificate) {
			c.Extensions = append(c.Extensions, pkix.Extension{Id: oidPolicy, Value: []byte{2, 2}})
		},
	} {
		c := good()
		mutate(c)
		if a, err := parseAttestation(c); err == nil {
			t.Errorf("%s: accepted as %+v", name, a)
		}
	}
}
