package sim_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/card/sim"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// profileEnv selects the firmware of the test process's virtual cards. The tests run against 5.4
// cards; TestProfiles runs them again, in child processes, against 5.2 and 5.7 cards.
const profileEnv = "CUSTOS_SIM_TEST_PROFILE"

func TestMain(m *testing.M) {
	// Fuzzing (the coordinator and each worker run TestMain) needs no PC/SC.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(testenv.RunWithSim(m, testenv.SimOptions{Cards: 1, FirstSerial: 7000001, Profile: testProfile()}))
}

func testProfile() sim.Profile {
	p, err := sim.ParseProfile(os.Getenv(profileEnv))
	if err != nil {
		panic(err)
	}
	return p
}

// TestProfiles runs the PC/SC tests in a child process whose cards have firmware 5.2, then 5.7.
func TestProfiles(t *testing.T) {
	testenv.Sim(t) // skips (or fails under CI) without pcscd and vpcd
	if os.Getenv(profileEnv) != "" {
		t.Skip("already in a child process")
	}
	for _, p := range []sim.Profile{sim.Profile52, sim.Profile57} {
		t.Run(string(p), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestPIVGo", "-test.v")
			// The child starts its own sim: it must not inherit this one's socket.
			cmd.Env = []string{profileEnv + "=" + string(p)}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "PCSCLITE_CSOCK_NAME=") && !strings.HasPrefix(kv, "CUSTOS_SIM_DIR=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("--- PASS: TestPIVGoIdentity")) || bytes.Contains(out, []byte("--- SKIP")) {
				t.Fatalf("tests against %s cards: %v\n%s", p, err, out)
			}
		})
	}
}

// card gives the test a fresh virtual card and opens it with piv-go.
func card(t *testing.T) (*testenv.SimEnv, uint32, *piv.YubiKey) {
	t.Helper()
	env := testenv.Sim(t)
	serial := env.Serials()[0]
	env.Fresh(t, serial)
	return env, serial, open(t, env, serial)
}

func open(t *testing.T, env *testenv.SimEnv, serial uint32) *piv.YubiKey {
	t.Helper()
	yk, err := piv.Open(env.Reader(t, serial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { yk.Close() })
	return yk
}

func firmware(p sim.Profile) piv.Version {
	switch p {
	case sim.Profile52:
		return piv.Version{Major: 5, Minor: 2, Patch: 7}
	case sim.Profile57:
		return piv.Version{Major: 5, Minor: 7, Patch: 1}
	}
	return piv.Version{Major: 5, Minor: 4, Patch: 3}
}

func TestPIVGoIdentity(t *testing.T) {
	_, serial, yk := card(t)
	if got, err := yk.Serial(); err != nil || got != serial {
		t.Fatalf("Serial() = %d, %v; want %d", got, err, serial)
	}
	if v := yk.Version(); v != firmware(testProfile()) {
		t.Fatalf("Version() = %v", v)
	}
	if n, err := yk.Retries(); err != nil || n != 3 {
		t.Fatalf("Retries() = %d, %v", n, err)
	}
	if ff, err := yk.FormFactor(); err != nil || ff != piv.FormfactorUSBAKeychain {
		t.Fatalf("FormFactor() = %v, %v", ff, err)
	}
}

func wantRetries(t *testing.T, err error, n int) {
	t.Helper()
	var ae piv.AuthErr
	if !errors.As(err, &ae) || ae.Retries != n {
		t.Fatalf("error %v, want an AuthErr with %d retries", err, n)
	}
}

func TestPIVGoPINAndPUK(t *testing.T) {
	env, serial, yk := card(t)
	before := env.Counters(t, serial).PINVerifies
	wantRetries(t, yk.VerifyPIN("000000"), 2)
	wantRetries(t, yk.VerifyPIN("000000"), 1)
	wantRetries(t, yk.VerifyPIN("000000"), 0)
	wantRetries(t, yk.VerifyPIN(piv.DefaultPIN), 0) // blocked: even the right PIN fails
	if n, err := yk.Retries(); err != nil || n != 0 {
		t.Fatalf("Retries() = %d, %v", n, err)
	}
	if got := env.Counters(t, serial).PINVerifies - before; got != 4 {
		t.Fatalf("the card counted %d PIN verifications, want 4", got)
	}
	wantRetries(t, yk.Unblock("00000000", "246810"), 2)
	if err := yk.Unblock(piv.DefaultPUK, "246810"); err != nil {
		t.Fatal(err)
	}
	if err := yk.VerifyPIN("246810"); err != nil {
		t.Fatal(err)
	}
	wantRetries(t, yk.SetPIN("111111", "135791"), 2)
	if err := yk.SetPIN("246810", "135791"); err != nil {
		t.Fatal(err)
	}
	if err := yk.VerifyPIN("135791"); err != nil {
		t.Fatal(err)
	}
	if err := yk.SetPUK(piv.DefaultPUK, "97531864"); err != nil {
		t.Fatal(err)
	}
	wantRetries(t, yk.Unblock(piv.DefaultPUK, "123456"), 2)

	// Reset blocks PIN and PUK, then resets: the defaults are back and the keys gone.
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, ecKey(piv.AlgorithmEC256, piv.PINPolicyNever, piv.TouchPolicyNever)); err != nil {
		t.Fatal(err)
	}
	if err := yk.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatal(err)
	}
	if _, err := yk.Attest(piv.SlotAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Fatalf("Attest after Reset: %v, want ErrNotFound", err)
	}
	if err := yk.Unblock(piv.DefaultPUK, piv.DefaultPIN); err != nil {
		t.Fatal(err)
	}
}

func TestPIVGoSetRetries(t *testing.T) {
	_, _, yk := card(t)
	if err := yk.SetRetries(piv.DefaultManagementKey, piv.DefaultPIN, 5, 4); err != nil {
		t.Fatal(err)
	}
	if n, err := yk.Retries(); err != nil || n != 5 {
		t.Fatalf("Retries() = %d, %v", n, err)
	}
}

func TestPIVGoManagementKey(t *testing.T) {
	_, _, yk := card(t)
	// 24 bytes: 3DES below firmware 5.4, AES-192 from 5.4 on (piv-go's choice).
	newKey := bytes.Repeat([]byte{0x5C}, 24)
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err != nil {
		t.Fatal(err)
	}
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err == nil {
		t.Fatal("the old management key still authenticates")
	}
	// The PIN-protected management key, as custodian cards keep it.
	if err := yk.SetMetadata(newKey, &piv.Metadata{ManagementKey: &newKey}); err != nil {
		t.Fatal(err)
	}
	m, err := yk.Metadata(piv.DefaultPIN)
	if err != nil || m.ManagementKey == nil || !bytes.Equal(*m.ManagementKey, newKey) {
		t.Fatalf("Metadata() = %+v, %v", m, err)
	}
	aes128 := bytes.Repeat([]byte{0x3A}, 16)
	err = yk.SetManagementKey(newKey, aes128)
	if testProfile() == sim.Profile52 {
		if err == nil {
			t.Fatal("firmware 5.2 took an AES management key")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yk.GenerateKey(aes128, piv.SlotAuthentication, ecKey(piv.AlgorithmEC256, piv.PINPolicyNever, piv.TouchPolicyNever)); err != nil {
		t.Fatal(err)
	}
}

func ecKey(alg piv.Algorithm, pp piv.PINPolicy, tp piv.TouchPolicy) piv.Key {
	return piv.Key{Algorithm: alg, PINPolicy: pp, TouchPolicy: tp}
}

// checkKey signs (and for EC keys agrees on a secret) with the card's key and checks the results
// with Go's crypto; it returns how often piv-go asked for the PIN. piv-go learns the key's PIN
// policy from the card (KeyInfo, or on firmware before 5.3 an attestation).
func checkKey(t *testing.T, yk *piv.YubiKey, slot piv.Slot, pub crypto.PublicKey, ops int) int {
	t.Helper()
	return checkKeyAuth(t, yk, slot, pub, ops, 0)
}

// checkKeyAuth is checkKey with the PIN policy given to piv-go (0: piv-go asks the card).
func checkKeyAuth(t *testing.T, yk *piv.YubiKey, slot piv.Slot, pub crypto.PublicKey, ops int, pp piv.PINPolicy) int {
	t.Helper()
	prompts := 0
	auth := piv.KeyAuth{PINPrompt: func() (string, error) { prompts++; return piv.DefaultPIN, nil }, PINPolicy: pp}
	priv, err := yk.PrivateKey(slot, pub, auth)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("custos"))
	for range ops {
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil || !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Fatalf("ECDSA signature: %v", err)
			}
			eph, err := ecdsa.GenerateKey(pub.Curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			got, err := priv.(*piv.ECDSAPrivateKey).SharedKey(&eph.PublicKey)
			if err != nil {
				t.Fatalf("SharedKey: %v", err)
			}
			ephECDH, _ := eph.ECDH()
			cardPub, _ := pub.ECDH()
			if want, _ := ephECDH.ECDH(cardPub); !bytes.Equal(got, want) {
				t.Fatal("SharedKey differs from software ECDH")
			}
		case *rsa.PublicKey:
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
				t.Fatalf("RSA signature: %v", err)
			}
		case ed25519.PublicKey:
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, []byte("custos"), crypto.Hash(0))
			if err != nil || !ed25519.Verify(pub, []byte("custos"), sig) {
				t.Fatalf("Ed25519 signature: %v", err)
			}
		case *ecdh.PublicKey:
			eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
			got, err := priv.(*piv.X25519PrivateKey).ECDH(eph.PublicKey())
			want, _ := eph.ECDH(pub)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("X25519 secret differs from software ECDH: %v", err)
			}
		}
	}
	return prompts
}

// checkAttestation verifies the slot's attestation with the fleet root and compares what it says.
func checkAttestation(t *testing.T, env *testenv.SimEnv, serial uint32, yk *piv.YubiKey, slot piv.Slot, key piv.Key) {
	t.Helper()
	slotCert, err := yk.Attest(slot)
	if err != nil {
		t.Fatal(err)
	}
	f9, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := (&piv.Verifier{Roots: env.Roots(t)}).Verify(f9, slotCert)
	if err != nil {
		t.Fatal(err)
	}
	if a.Serial != serial || a.Version != firmware(testProfile()) || a.PINPolicy != key.PINPolicy ||
		a.TouchPolicy != key.TouchPolicy || a.Slot != slot || a.Formfactor != piv.FormfactorUSBAKeychain {
		t.Fatalf("attestation %+v for %+v on card %d", a, key, serial)
	}
}

func TestPIVGoGenerateEveryPolicy(t *testing.T) {
	env, serial, yk := card(t)
	mk := piv.DefaultManagementKey
	for _, alg := range []piv.Algorithm{piv.AlgorithmEC256, piv.AlgorithmEC384, piv.AlgorithmRSA2048} {
		for _, pp := range []piv.PINPolicy{piv.PINPolicyNever, piv.PINPolicyOnce, piv.PINPolicyAlways} {
			for _, tp := range []piv.TouchPolicy{piv.TouchPolicyNever, piv.TouchPolicyAlways, piv.TouchPolicyCached} {
				key := piv.Key{Algorithm: alg, PINPolicy: pp, TouchPolicy: tp}
				pub, err := yk.GenerateKey(mk, piv.SlotAuthentication, key)
				if err != nil {
					t.Fatalf("%+v: %v", key, err)
				}
				checkKey(t, yk, piv.SlotAuthentication, pub, 1)
				checkAttestation(t, env, serial, yk, piv.SlotAuthentication, key)
				if testProfile() == sim.Profile52 {
					continue
				}
				ki, err := yk.KeyInfo(piv.SlotAuthentication)
				if err != nil || ki.Algorithm != alg || ki.PINPolicy != pp || ki.TouchPolicy != tp ||
					ki.Origin != piv.OriginGenerated || !publicEqual(ki.PublicKey, pub) {
					t.Fatalf("KeyInfo() = %+v, %v for %+v", ki, err, key)
				}
			}
		}
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	x, err1 := x509.MarshalPKIXPublicKey(a)
	y, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func TestPIVGoFirmware57Algorithms(t *testing.T) {
	env, serial, yk := card(t)
	// On 5.7 the default management key is AES-192; piv-go learns that from GET METADATA.
	mk := piv.DefaultManagementKey
	for _, alg := range []piv.Algorithm{piv.AlgorithmEd25519, piv.AlgorithmX25519, piv.AlgorithmRSA4096} {
		key := piv.Key{Algorithm: alg, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyAlways}
		pub, err := yk.GenerateKey(mk, piv.SlotKeyManagement, key)
		if testProfile() != sim.Profile57 {
			if err == nil {
				t.Fatalf("firmware %s generated a %v key", testProfile(), alg)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
		checkKey(t, yk, piv.SlotKeyManagement, pub, 1)
		checkAttestation(t, env, serial, yk, piv.SlotKeyManagement, key)
		if ki, err := yk.KeyInfo(piv.SlotKeyManagement); err != nil || ki.Algorithm != alg {
			t.Fatalf("KeyInfo() = %+v, %v", ki, err)
		}
	}
}

func TestPIVGoPINPolicies(t *testing.T) {
	env, serial, yk := card(t)
	keys := map[piv.Slot]piv.PINPolicy{
		piv.SlotCardAuthentication: piv.PINPolicyNever,
		piv.SlotAuthentication:     piv.PINPolicyOnce,
		piv.SlotSignature:          piv.PINPolicyAlways,
	}
	pubs := map[piv.Slot]crypto.PublicKey{}
	for slot, pp := range keys {
		pub, err := yk.GenerateKey(piv.DefaultManagementKey, slot, ecKey(piv.AlgorithmEC256, pp, piv.TouchPolicyNever))
		if err != nil {
			t.Fatal(err)
		}
		pubs[slot] = pub
	}
	// Each checkKey op signs and agrees: two private key operations.
	for _, tc := range []struct {
		slot piv.Slot
		want int
	}{{piv.SlotCardAuthentication, 0}, {piv.SlotAuthentication, 1}, {piv.SlotSignature, 4}} {
		yk.Close()
		yk = open(t, env, serial) // a new connection: a new SELECT drops the PIN
		if got := checkKey(t, yk, tc.slot, pubs[tc.slot], 2); got != tc.want {
			t.Errorf("PIN policy %v: %d PIN prompts for 4 operations, want %d", keys[tc.slot], got, tc.want)
		}
	}
	// Once holds across operations on one connection, and on the next connection is needed again.
	if got := checkKey(t, yk, piv.SlotAuthentication, pubs[piv.SlotAuthentication], 1); got != 0 {
		t.Errorf("PIN policy once asked again on the same connection")
	}
	yk.Close()
	yk = open(t, env, serial)
	if got := checkKey(t, yk, piv.SlotAuthentication, pubs[piv.SlotAuthentication], 1); got != 1 {
		t.Errorf("PIN policy once: %d prompts on a new connection, want 1", got)
	}
	// Without the PIN the card refuses.
	priv, err := yk.PrivateKey(piv.SlotSignature, pubs[piv.SlotSignature], piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
		t.Fatal("a PIN-always key signed without a VERIFY")
	}
}

func TestPIVGoTouchDenied(t *testing.T) {
	env, serial, yk := card(t)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, ecKey(piv.AlgorithmEC256, piv.PINPolicyNever, piv.TouchPolicyAlways))
	if err != nil {
		t.Fatal(err)
	}
	env.DenyTouch(t, serial)
	priv, err := yk.PrivateKey(piv.SlotAuthentication, pub, piv.KeyAuth{})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
		t.Fatal("a touch-always key signed with touch denied")
	}
}

func TestPIVGoCertificates(t *testing.T) {
	_, _, yk := card(t)
	mk := piv.DefaultManagementKey
	if _, err := yk.Certificate(piv.SlotSignature); !errors.Is(err, piv.ErrNotFound) {
		t.Fatalf("Certificate() of an empty slot: %v, want ErrNotFound", err)
	}
	pub, err := yk.GenerateKey(mk, piv.SlotSignature, ecKey(piv.AlgorithmEC384, piv.PINPolicyNever, piv.TouchPolicyNever))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "custodian", Organization: []string{strings.Repeat("long enough to chain ", 20)}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, ca)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if len(der) < 300 {
		t.Fatalf("certificate of %d bytes does not exercise chaining", len(der))
	}
	if err := yk.SetCertificate(mk, piv.SlotSignature, cert); err != nil {
		t.Fatal(err)
	}
	got, err := yk.Certificate(piv.SlotSignature)
	if err != nil || !got.Equal(cert) {
		t.Fatalf("Certificate() = %v", err)
	}
}

func TestPIVGoImportedKey(t *testing.T) {
	_, _, yk := card(t)
	// A fixed P-256 key (RFC 6979 A.2.5), imported as piv-go's SetPrivateKeyInsecure does.
	d, _ := new(big.Int).SetString("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d.FillBytes(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(piv.AlgorithmEC256, piv.PINPolicyNever, piv.TouchPolicyNever)
	if err := yk.SetPrivateKeyInsecure(piv.DefaultManagementKey, piv.SlotCardAuthentication, priv, key); err != nil {
		t.Fatal(err)
	}
	// An imported key cannot be attested, so piv-go on firmware 5.2 must be told its PIN policy.
	checkKeyAuth(t, yk, piv.SlotCardAuthentication, &priv.PublicKey, 1, piv.PINPolicyNever)
	if _, err := yk.Attest(piv.SlotCardAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Fatalf("Attest() of an imported key: %v, want ErrNotFound", err)
	}
	if testProfile() != sim.Profile52 {
		if ki, err := yk.KeyInfo(piv.SlotCardAuthentication); err != nil || ki.Origin != piv.OriginImported {
			t.Fatalf("KeyInfo() = %+v, %v", ki, err)
		}
	}
}
