package sim

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
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"
)

// generate asks the card for a key and decodes the public key it answers.
func generate(t *testing.T, c *Card, slot, alg, pin, touch byte) crypto.PublicKey {
	t.Helper()
	resp := mustOK(t, c, insGenerate, 0, slot, []byte{0xAC, 0x09, 0x80, 0x01, alg, 0xAA, 0x01, pin, 0xAB, 0x01, touch})
	ts, err := parseTLVs(resp)
	if err != nil || len(ts) != 1 || ts[0].tag != tagPublicKey {
		t.Fatalf("generate response %x: %v", resp, err)
	}
	pub := decodePublic(t, alg, ts[0].value)
	if !c.st.Profile.metadata() {
		return pub
	}
	if md := mustOK(t, c, insGetMetadata, 0, slot, nil); !bytes.HasSuffix(md, appendTLV(nil, 0x04, ts[0].value)) {
		t.Fatalf("metadata %x does not end in the generated public key", md)
	}
	return pub
}

func decodePublic(t *testing.T, alg byte, b []byte) crypto.PublicKey {
	t.Helper()
	ts, err := parseTLVs(b)
	if err != nil {
		t.Fatal(err)
	}
	if bits := rsaBits(alg); bits != 0 {
		n, _ := find(ts, 0x81)
		e, _ := find(ts, 0x82)
		if len(n) != bits/8 || !bytes.Equal(e, []byte{1, 0, 1}) || b[0] != 0x81 {
			t.Fatalf("RSA public key %x", b)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	}
	pt, ok := find(ts, 0x86)
	if !ok {
		t.Fatalf("public key %x has no 86", b)
	}
	var pub crypto.PublicKey
	switch alg {
	case algP256, algP384:
		pub, err = ecdsa.ParseUncompressedPublicKey(curveOf(alg), pt)
	case algEd25519:
		if len(pt) != ed25519.PublicKeySize {
			t.Fatalf("Ed25519 public key %x", pt)
		}
		pub = ed25519.PublicKey(pt)
	case algX25519:
		pub, err = ecdh.X25519().NewPublicKey(pt)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// authTemplate is GENERAL AUTHENTICATE's 7C { 82 00, tag input }.
func authTemplate(tag uint32, in []byte) []byte {
	return appendTLV(nil, tagDynAuth, appendTLV([]byte{0x82, 0x00}, tag, in))
}

func authResult(t *testing.T, resp []byte) []byte {
	t.Helper()
	outer, err := parseTLVs(resp)
	if err != nil || len(outer) != 1 || outer[0].tag != tagDynAuth {
		t.Fatalf("response %x", resp)
	}
	inner, err := parseTLVs(outer[0].value)
	if err != nil || len(inner) != 1 || inner[0].tag != tagResponse {
		t.Fatalf("response %x", resp)
	}
	return inner[0].value
}

func signECDSA(t *testing.T, c *Card, slot, alg byte, pub crypto.PublicKey, wantSW uint16) {
	t.Helper()
	digest := sha256.Sum256([]byte(fmt.Sprintf("message for %02x", slot)))
	resp, sw := send(t, c, insGenAuth, alg, slot, authTemplate(tagChallenge, digest[:]))
	if sw != wantSW {
		t.Fatalf("sign in %02x: SW %04x, want %04x", slot, sw, wantSW)
	}
	if sw == swOK && !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], authResult(t, resp)) {
		t.Fatalf("signature of slot %02x does not verify", slot)
	}
}

func TestGenerateUnderEveryPolicy(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	slot := byte(0x82)
	for _, pin := range []byte{pinNever, pinOnce, pinAlways} {
		for _, touch := range []byte{touchNever, touchAlways, touchCached} {
			pub := generate(t, c, slot, algP256, pin, touch)
			md := mustOK(t, c, insGetMetadata, 0, slot, nil)
			if !bytes.HasPrefix(md, []byte{0x01, 0x01, algP256, 0x02, 0x02, pin, touch, 0x03, 0x01, originGenerated}) {
				t.Fatalf("metadata %x", md)
			}
			signECDSA(t, c, slot, algP256, pub, map[byte]uint16{pinNever: swOK, pinOnce: swSecurityStatus, pinAlways: swSecurityStatus}[pin])
			slot++
		}
	}
	// Policies resolve to the slot defaults; invalid ones are refused.
	for slot, want := range map[byte]byte{0x9A: pinOnce, 0x9C: pinAlways, 0x9D: pinOnce, 0x9E: pinNever} {
		mustOK(t, c, insGenerate, 0, slot, unhex(t, "AC03800111"))
		if md := mustOK(t, c, insGetMetadata, 0, slot, nil); md[5] != want || md[6] != touchNever {
			t.Errorf("slot %02x policies %x, want %02x 01", slot, md[5:7], want)
		}
	}
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AC06800111AA0104"), swIncorrectData)
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AC06800111AB0104"), swIncorrectData)
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AC038001E0"), swIncorrectData) // Ed25519 needs 5.7
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AC03800116"), swIncorrectData) // RSA-4096 needs 5.7
	wantSW(t, c, insGenerate, 0, 0x9B, unhex(t, "AC03800111"), swRefNotFound)
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AB03800111"), swIncorrectData)
}

func TestPINPolicies(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	never := generate(t, c, 0x9E, algP256, pinNever, touchNever)
	once := generate(t, c, 0x9A, algP256, pinOnce, touchNever)
	always := generate(t, c, 0x9C, algP256, pinAlways, touchNever)
	pin := padPIN([]byte("123456"))

	signECDSA(t, c, 0x9E, algP256, never, swOK)
	signECDSA(t, c, 0x9A, algP256, once, swSecurityStatus)
	signECDSA(t, c, 0x9C, algP256, always, swSecurityStatus)
	mustOK(t, c, insVerify, 0, refPIN, pin)
	// Once: one VERIFY serves every operation until the next SELECT.
	signECDSA(t, c, 0x9A, algP256, once, swOK)
	signECDSA(t, c, 0x9A, algP256, once, swOK)
	// Always: each operation needs a VERIFY just before it.
	signECDSA(t, c, 0x9C, algP256, always, swSecurityStatus)
	mustOK(t, c, insVerify, 0, refPIN, pin)
	signECDSA(t, c, 0x9C, algP256, always, swOK)
	signECDSA(t, c, 0x9C, algP256, always, swSecurityStatus)
	signECDSA(t, c, 0x9A, algP256, once, swOK)
	mustOK(t, c, insVerify, 0, refPIN, pin)
	signECDSA(t, c, 0x9C, algP256, always, swOK)
	// A VERIFY serves one private key operation only, whichever key uses it.
	mustOK(t, c, insVerify, 0, refPIN, pin)
	signECDSA(t, c, 0x9E, algP256, never, swOK)
	signECDSA(t, c, 0x9C, algP256, always, swSecurityStatus)
	selectPIV(t, c)
	signECDSA(t, c, 0x9A, algP256, once, swSecurityStatus)
	signECDSA(t, c, 0x9E, algP256, never, swOK)
	mustOK(t, c, insVerify, 0, refPIN, pin)
	c.Reset()
	signECDSA(t, c, 0x9A, algP256, once, swSecurityStatus)
}

func TestTouchDenied(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	never := generate(t, c, 0x82, algP256, pinNever, touchNever)
	touch := generate(t, c, 0x83, algP256, pinNever, touchAlways)
	cached := generate(t, c, 0x84, algP256, pinNever, touchCached)
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return clock }
	signECDSA(t, c, 0x83, algP256, touch, swOK)
	if err := c.SetTouchApproval(false); err != nil {
		t.Fatal(err)
	}
	signECDSA(t, c, 0x82, algP256, never, swOK)
	signECDSA(t, c, 0x83, algP256, touch, swSecurityStatus)
	// A cached-touch key works for 15 seconds after the last touch.
	clock = clock.Add(14 * time.Second)
	signECDSA(t, c, 0x84, algP256, cached, swOK)
	clock = clock.Add(time.Second)
	signECDSA(t, c, 0x84, algP256, cached, swSecurityStatus)
	reloaded, err := LoadCard(c.path)
	if err != nil {
		t.Fatal(err)
	}
	signECDSA(t, reloaded, 0x83, algP256, touch, swSecurityStatus)
	if err := reloaded.SetTouchApproval(true); err != nil {
		t.Fatal(err)
	}
	signECDSA(t, reloaded, 0x83, algP256, touch, swOK)
}

func TestECDH(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	for _, tc := range []struct {
		alg   byte
		curve ecdh.Curve
	}{{algP256, ecdh.P256()}, {algP384, ecdh.P384()}} {
		pub := generate(t, c, 0x9D, tc.alg, pinNever, touchNever)
		peer, err := tc.curve.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		resp := mustOK(t, c, insGenAuth, tc.alg, 0x9D, authTemplate(tagExponent, peer.PublicKey().Bytes()))
		cardPub, err := pub.(*ecdsa.PublicKey).ECDH()
		if err != nil {
			t.Fatal(err)
		}
		want, err := peer.ECDH(cardPub)
		if err != nil {
			t.Fatal(err)
		}
		if got := authResult(t, resp); !bytes.Equal(got, want) {
			t.Fatalf("alg %02x: card secret %x, software ECDH %x", tc.alg, got, want)
		}
		bad := peer.PublicKey().Bytes()
		bad[len(bad)-1] ^= 1
		wantSW(t, c, insGenAuth, tc.alg, 0x9D, authTemplate(tagExponent, bad), swIncorrectData)
	}
	// Wrong algorithm, empty slot, attestation slot, neither or both of 81 and 85.
	digest := make([]byte, 32)
	wantSW(t, c, insGenAuth, algP256, 0x9D, authTemplate(tagChallenge, digest), swIncorrectData)
	wantSW(t, c, insGenAuth, algP256, 0x9A, authTemplate(tagChallenge, digest), swIncorrectData)
	wantSW(t, c, insGenAuth, algP256, slotAttestation, authTemplate(tagChallenge, digest), swIncorrectData)
	wantSW(t, c, insGenAuth, algP384, 0x9D, unhex(t, "7C028200"), swIncorrectData)
	wantSW(t, c, insGenAuth, algP384, 0x9D, unhex(t, "7C0682008100 8500"), swIncorrectData)
	wantSW(t, c, insGenAuth, algP384, 0x9D, authTemplate(tagChallenge, make([]byte, 49)), swIncorrectData)
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is one RSA-2048 key for the test process.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

// pkcs1Sign pads a SHA-256 digest as PKCS #1 v1.5 does, for the card's raw RSA operation.
func pkcs1Pad(k int, digest []byte) []byte {
	prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	t := append(prefix, digest...)
	em := bytes.Repeat([]byte{0xFF}, k)
	em[0], em[1] = 0x00, 0x01
	em[k-len(t)-1] = 0x00
	copy(em[k-len(t):], t)
	return em
}

func testRSA(t *testing.T, c *Card, slot byte, pub *rsa.PublicKey) {
	t.Helper()
	digest := sha256.Sum256([]byte("RSA message"))
	resp := mustOK(t, c, insGenAuth, algRSA2048, slot, authTemplate(tagChallenge, pkcs1Pad(pub.Size(), digest[:])))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], authResult(t, resp)); err != nil {
		t.Fatalf("RSA signature: %v", err)
	}
	// A PKCS #1 v1.5 type 2 block, encrypted with the public key.
	msg := []byte("a wrapped key")
	em := bytes.Repeat([]byte{0x5A}, pub.Size())
	em[0], em[1], em[pub.Size()-len(msg)-1] = 0x00, 0x02, 0x00
	copy(em[pub.Size()-len(msg):], msg)
	m := new(big.Int).SetBytes(em)
	ct := m.Exp(m, big.NewInt(int64(pub.E)), pub.N).FillBytes(make([]byte, pub.Size()))
	resp = mustOK(t, c, insGenAuth, algRSA2048, slot, authTemplate(tagChallenge, ct))
	if pt := authResult(t, resp); !bytes.Equal(pt, em) {
		t.Fatalf("RSA decryption %x", pt)
	}
	wantSW(t, c, insGenAuth, algRSA2048, slot, authTemplate(tagChallenge, bytes.Repeat([]byte{0xFF}, 256)), swIncorrectData)
}

func TestRSA(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	pub := generate(t, c, 0x9D, algRSA2048, pinNever, touchNever)
	testRSA(t, c, 0x9D, pub.(*rsa.PublicKey))

	// Import as piv-go's SetPrivateKeyInsecure does: five CRT elements, chained.
	k := testRSAKey(t)
	var data []byte
	for i, v := range []*big.Int{k.Primes[0], k.Primes[1], k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv} {
		data = appendTLV(data, uint32(1+i), v.FillBytes(make([]byte, 128)))
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	wantSW(t, c, insImportKey, algRSA2048, 0x9A, bad, swIncorrectData)
	wantSW(t, c, insImportKey, algRSA1024, 0x9A, data, swIncorrectData)
	mustOK(t, c, insImportKey, algRSA2048, 0x9A, append(data, 0xAA, 0x01, pinNever, 0xAB, 0x01, touchNever))
	md := mustOK(t, c, insGetMetadata, 0, 0x9A, nil)
	if !bytes.HasPrefix(md, []byte{0x01, 0x01, algRSA2048, 0x02, 0x02, pinNever, touchNever, 0x03, 0x01, originImported}) {
		t.Fatalf("metadata %x", md[:10])
	}
	testRSA(t, c, 0x9A, &k.PublicKey)
	wantSW(t, c, insAttest, 0x9A, 0, nil, swIncorrectData)
}

func TestImportEC(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	// A known P-256 key, as a later test of the custodian cards imports.
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), unhex(t, "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721"))
	if err != nil {
		t.Fatal(err)
	}
	scalar := unhex(t, "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
	wantSW(t, c, insImportKey, algP256, 0x9A, append([]byte{0x06, 0x20}, scalar...), swSecurityStatus)
	authMgmt3DES(t, c, defaultMgmtKey)
	wantSW(t, c, insImportKey, algP256, 0x9A, append([]byte{0x06, 0x1F}, scalar[1:]...), swIncorrectData)
	wantSW(t, c, insImportKey, algP256, 0x9A, append([]byte{0x06, 0x20}, make([]byte, 32)...), swIncorrectData)
	wantSW(t, c, insImportKey, algP256, 0x9B, append([]byte{0x06, 0x20}, scalar...), swRefNotFound)
	mustOK(t, c, insImportKey, algP256, 0x9A, append([]byte{0x06, 0x20}, scalar...))
	md := mustOK(t, c, insGetMetadata, 0, 0x9A, nil)
	pt, _ := priv.PublicKey.Bytes()
	if !bytes.Equal(md, append(unhex(t, "010111 02020201 030102 0443 8641"), pt...)) {
		t.Fatalf("metadata %x", md)
	}
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	signECDSA(t, c, 0x9A, algP256, &priv.PublicKey, swOK)
	wantSW(t, c, insAttest, 0x9A, 0, nil, swIncorrectData)

	d := make([]byte, 48)
	d[47] = 1
	mustOK(t, c, insImportKey, algP384, 0x9E, append([]byte{0x06, 0x30}, d...))
	one, _ := ecdsa.ParseRawPrivateKey(elliptic.P384(), d)
	signECDSA(t, c, 0x9E, algP384, &one.PublicKey, swOK)
}

func TestFirmware57Algorithms(t *testing.T) {
	c := newTestCard(t, Profile57)
	selectPIV(t, c)
	authMgmtAES(t, c, algAES192, defaultMgmtKey)

	edPub := generate(t, c, 0x9A, algEd25519, pinNever, touchNever).(ed25519.PublicKey)
	msg := []byte("an Ed25519 signature covers the whole message, not a digest")
	resp := mustOK(t, c, insGenAuth, algEd25519, 0x9A, authTemplate(tagChallenge, msg))
	if !ed25519.Verify(edPub, msg, authResult(t, resp)) {
		t.Fatal("Ed25519 signature does not verify")
	}

	xPub := generate(t, c, 0x9D, algX25519, pinNever, touchNever).(*ecdh.PublicKey)
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	resp = mustOK(t, c, insGenAuth, algX25519, 0x9D, authTemplate(tagExponent, peer.PublicKey().Bytes()))
	if want, _ := peer.ECDH(xPub); !bytes.Equal(authResult(t, resp), want) {
		t.Fatal("X25519 secret differs from software ECDH")
	}
	wantSW(t, c, insGenAuth, algX25519, 0x9D, authTemplate(tagExponent, make([]byte, 32)), swIncorrectData)

	seed := bytes.Repeat([]byte{3}, 32)
	mustOK(t, c, insImportKey, algEd25519, 0x9E, append([]byte{0x07, 0x20}, seed...))
	resp = mustOK(t, c, insGenAuth, algEd25519, 0x9E, authTemplate(tagChallenge, msg))
	if want := ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg); !bytes.Equal(authResult(t, resp), want) {
		t.Fatal("imported Ed25519 key signs differently")
	}
	mustOK(t, c, insImportKey, algX25519, 0x82, append(append([]byte{0x08, 0x20}, seed...), 0xAA, 0x01, pinNever))
	xPriv, _ := ecdh.X25519().NewPrivateKey(seed)
	resp = mustOK(t, c, insGenAuth, algX25519, 0x82, authTemplate(tagExponent, peer.PublicKey().Bytes()))
	if want, _ := peer.ECDH(xPriv.PublicKey()); !bytes.Equal(authResult(t, resp), want) {
		t.Fatal("imported X25519 key agrees differently")
	}

	// MOVE KEY: 9E to 83, then delete 83.
	mustOK(t, c, insMoveKey, 0x83, 0x9E, nil)
	wantSW(t, c, insGetMetadata, 0, 0x9E, nil, swRefNotFound)
	mustOK(t, c, insGenAuth, algEd25519, 0x83, authTemplate(tagChallenge, msg))
	mustOK(t, c, insMoveKey, 0xFF, 0x83, nil)
	wantSW(t, c, insMoveKey, 0xFF, 0x83, nil, swRefNotFound)
}

func TestRSA4096(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA-4096 key generation is slow")
	}
	c := newTestCard(t, Profile57)
	selectPIV(t, c)
	authMgmtAES(t, c, algAES192, defaultMgmtKey)
	pub := generate(t, c, 0x9C, algRSA4096, pinNever, touchNever).(*rsa.PublicKey)
	digest := sha256.Sum256([]byte("RSA-4096"))
	resp := mustOK(t, c, insGenAuth, algRSA4096, 0x9C, authTemplate(tagChallenge, pkcs1Pad(pub.Size(), digest[:])))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], authResult(t, resp)); err != nil {
		t.Fatal(err)
	}
}
