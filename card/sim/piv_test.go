package sim

import (
	"bytes"
	"crypto/aes"
	"crypto/des"
	"testing"
)

func TestVerifyPIN(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C3)
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("654321")), 0x63C2)
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C2)
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	mustOK(t, c, insVerify, 0, refPIN, nil) // verified: the query answers 9000
	// A wrong PIN after a good one logs out; short PINs and all-FF are wrong attempts.
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("1")), 0x63C2)
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C2)
	wantSW(t, c, insVerify, 0, refPIN, bytes.Repeat([]byte{0xFF}, 8), 0x63C1)
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), 0x63C0)
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")), swAuthBlocked)
	wantSW(t, c, insVerify, 0, refPIN, nil, swAuthBlocked)
	// Malformed VERIFYs.
	wantSW(t, c, insVerify, 0, refPIN, []byte("123456"), swIncorrectData)
	wantSW(t, c, insVerify, 0, 0x81, nil, swRefNotFound)
	wantSW(t, c, insVerify, 0, refBio, []byte{0x03, 0x00}, swRefNotFound)
	wantSW(t, c, insVerify, 0x01, refPIN, nil, swWrongP1P2)
}

func TestVerifyLogout(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	mustOK(t, c, insVerify, 0xFF, refPIN, nil)
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C3)
}

func TestChangeReferenceAndUnblock(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	pin, puk := padPIN([]byte("123456")), padPIN([]byte("12345678"))
	newPIN, newPUK := padPIN([]byte("24680135")), padPIN([]byte("87654321"))

	wantSW(t, c, insChangeRef, 0, refPIN, append(padPIN([]byte("111111")), newPIN...), 0x63C2)
	wantSW(t, c, insChangeRef, 0, refPIN, append(bytes.Clone(pin), padPIN([]byte("12345"))...), swIncorrectData)
	mustOK(t, c, insChangeRef, 0, refPIN, append(bytes.Clone(pin), newPIN...))
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C3) // success restored the counter
	wantSW(t, c, insVerify, 0, refPIN, pin, 0x63C2)
	mustOK(t, c, insVerify, 0, refPIN, newPIN)

	mustOK(t, c, insChangeRef, 0, refPUK, append(bytes.Clone(puk), newPUK...))
	for want := uint16(0x63C2); want >= 0x63C0; want-- {
		wantSW(t, c, insVerify, 0, refPIN, pin, want)
	}
	wantSW(t, c, insResetRetry, 0, refPIN, append(bytes.Clone(puk), pin...), 0x63C2)
	wantSW(t, c, insResetRetry, 0, refPIN, append(bytes.Clone(newPUK), padPIN([]byte("123"))...), swIncorrectData)
	mustOK(t, c, insResetRetry, 0, refPIN, append(bytes.Clone(newPUK), pin...))
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C3)
	mustOK(t, c, insVerify, 0, refPIN, pin)
	wantSW(t, c, insChangeRef, 0, refPUK, append(bytes.Clone(puk), puk...), 0x63C2)
	wantSW(t, c, insChangeRef, 0, 0x9B, append(bytes.Clone(puk), puk...), swRefNotFound)
	wantSW(t, c, insChangeRef, 0, refPUK, puk, swIncorrectData)
}

func TestNewPUKRulesOn57(t *testing.T) {
	c := newTestCard(t, Profile57)
	selectPIV(t, c)
	puk := padPIN([]byte("12345678"))
	wantSW(t, c, insChangeRef, 0, refPUK, append(bytes.Clone(puk), padPIN([]byte("1234\x80678"))...), swConditions)
	wantSW(t, c, insChangeRef, 0, refPUK, append(bytes.Clone(puk), padPIN([]byte("12345"))...), swConditions)
}

// blockPUK does what piv-go's Reset does to the PUK before RESET.
func blockPUK(t *testing.T, c *Card) {
	t.Helper()
	bad := padPIN([]byte("9999"))
	for _, sw := range []uint16{0x63C2, 0x63C1, 0x63C0, swAuthBlocked} {
		wantSW(t, c, insChangeRef, 0, refPUK, append(bytes.Clone(bad), bad...), sw)
	}
}

func TestReset(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	mustOK(t, c, insGenerate, 0, 0x9A, unhex(t, "AC03800111"))
	mustOK(t, c, insPutData, 0x3F, 0xFF, unhex(t, "5C035FC10253020102"))
	newKey := bytes.Repeat([]byte{7}, 24)
	mustOK(t, c, insSetMgmtKey, 0xFF, 0xFF, append([]byte{alg3DES, refMgmt, 24}, newKey...))
	f9Cert := bytes.Clone(c.st.Objects[objAttestation])

	wantSW(t, c, insReset, 0, 0, nil, swConditions)
	for _, sw := range []uint16{0x63C2, 0x63C1, 0x63C0} {
		wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("99")), sw)
	}
	wantSW(t, c, insReset, 0, 0, nil, swConditions) // PUK not blocked yet
	blockPUK(t, c)
	wantSW(t, c, insResetRetry, 0, refPIN, append(padPIN([]byte("12345678")), padPIN([]byte("123456"))...), swAuthBlocked)
	mustOK(t, c, insReset, 0, 0, nil)

	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C3)
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	if sw := authMgmt3DES(t, c, defaultMgmtKey); sw != swOK {
		t.Fatalf("default management key after reset: %04x", sw)
	}
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC102"), swNotFound)
	wantSW(t, c, insGetMetadata, 0, 0x9A, nil, swRefNotFound)
	wantSW(t, c, insAttest, 0x9A, 0, nil, swIncorrectData)
	if got := mustOK(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FFF01")); !bytes.Equal(got, appendTLV(nil, 0x53, f9Cert)) {
		t.Fatal("reset lost the attestation certificate")
	}
	mustOK(t, c, insGetMetadata, 0, slotAttestation, nil)
}

func TestSetPINRetries(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	wantSW(t, c, insSetPINRetries, 5, 6, nil, swSecurityStatus)
	authMgmt3DES(t, c, defaultMgmtKey)
	wantSW(t, c, insSetPINRetries, 5, 6, nil, swSecurityStatus) // PIN also needed
	mustOK(t, c, insChangeRef, 0, refPIN, append(padPIN([]byte("123456")), padPIN([]byte("777777"))...))
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("777777")))
	wantSW(t, c, insSetPINRetries, 0, 6, nil, swIncorrectData)
	mustOK(t, c, insSetPINRetries, 5, 20, nil)
	wantSW(t, c, insVerify, 0, refPIN, nil, 0x63C5)
	md := mustOK(t, c, insGetMetadata, 0, refPUK, nil)
	if !bytes.Equal(md, unhex(t, "0101FF 050101 06021414")) {
		t.Fatalf("PUK metadata %x", md)
	}
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456"))) // PIN back to default
	wantSW(t, c, insChangeRef, 0, refPUK, append(padPIN([]byte("0")), padPIN([]byte("0"))...), 0x63CF)
}

func TestManagementKey(t *testing.T) {
	for _, tc := range []struct {
		p          Profile
		defaultAlg byte
		aes        bool
	}{{Profile52, alg3DES, false}, {Profile54, alg3DES, true}, {Profile57, algAES192, true}} {
		t.Run(string(tc.p), func(t *testing.T) {
			c := newTestCard(t, tc.p)
			selectPIV(t, c)
			if tc.p == Profile52 {
				wantSW(t, c, insGetMetadata, 0, refMgmt, nil, swINSNotSupported)
			} else {
				md := mustOK(t, c, insGetMetadata, 0, refMgmt, nil)
				if !bytes.Equal(md, []byte{0x01, 0x01, tc.defaultAlg, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01}) {
					t.Fatalf("metadata %x", md)
				}
			}
			newAES := bytes.Repeat([]byte{0x42}, 16)
			setAES := append([]byte{algAES128, refMgmt, 16}, newAES...)
			wantSW(t, c, insSetMgmtKey, 0xFF, 0xFF, setAES, swSecurityStatus)
			if tc.defaultAlg == alg3DES {
				if sw := authMgmt3DES(t, c, defaultMgmtKey); sw != swOK {
					t.Fatalf("3DES auth: %04x", sw)
				}
			} else {
				wantSW(t, c, insGenAuth, alg3DES, refMgmt, unhex(t, "7C028000"), swIncorrectData)
				authMgmtAES(t, c, algAES192, defaultMgmtKey)
			}
			if !tc.aes {
				wantSW(t, c, insSetMgmtKey, 0xFF, 0xFF, setAES, swIncorrectData)
				newDES := bytes.Repeat([]byte{0x13}, 24)
				mustOK(t, c, insSetMgmtKey, 0xFF, 0xFF, append([]byte{alg3DES, refMgmt, 24}, newDES...))
				selectPIV(t, c)
				if sw := authMgmt3DES(t, c, newDES); sw != swOK {
					t.Fatalf("auth with the new 3DES key: %04x", sw)
				}
				return
			}
			wantSW(t, c, insSetMgmtKey, 0xFF, 0xFF, append([]byte{algAES256, refMgmt, 16}, newAES...), swIncorrectData)
			mustOK(t, c, insSetMgmtKey, 0xFF, 0xFE, setAES)
			selectPIV(t, c)
			md := mustOK(t, c, insGetMetadata, 0, refMgmt, nil)
			if !bytes.Equal(md, unhex(t, "010108 02020002 050100")) {
				t.Fatalf("metadata after change %x", md)
			}
			authMgmtAES(t, c, algAES128, newAES)
			// The key now asks for a touch: a denied touch fails authentication.
			if err := c.SetTouchApproval(false); err != nil {
				t.Fatal(err)
			}
			selectPIV(t, c)
			if sw := authMgmtAESStatus(t, c, algAES128, newAES); sw != swSecurityStatus {
				t.Fatalf("auth with touch denied: %04x, want 6982", sw)
			}
		})
	}
}

func authMgmtAES(t *testing.T, c *Card, alg byte, key []byte) {
	t.Helper()
	if sw := authMgmtAESStatus(t, c, alg, key); sw != swOK {
		t.Fatalf("AES auth: %04x", sw)
	}
}

func authMgmtAESStatus(t *testing.T, c *Card, alg byte, key []byte) uint16 {
	t.Helper()
	resp := mustOK(t, c, insGenAuth, alg, refMgmt, unhex(t, "7C028000"))
	if len(resp) != 20 || !bytes.Equal(resp[:4], []byte{0x7C, 0x12, 0x80, 0x10}) {
		t.Fatalf("AES witness %x", resp)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	witness := make([]byte, 16)
	block.Decrypt(witness, resp[4:])
	chal := bytes.Repeat([]byte{9}, 16)
	data := append(append([]byte{0x7C, 0x24, 0x80, 0x10}, witness...), append([]byte{0x81, 0x10}, chal...)...)
	resp, sw := send(t, c, insGenAuth, alg, refMgmt, data)
	if sw == swOK {
		want := make([]byte, 16)
		block.Encrypt(want, chal)
		if !bytes.Equal(resp, append([]byte{0x7C, 0x12, 0x82, 0x10}, want...)) {
			t.Fatalf("card response %x", resp)
		}
	}
	return sw
}

func TestManagementAuthFailures(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	// Step 2 without step 1.
	wantSW(t, c, insGenAuth, alg3DES, refMgmt, unhex(t, "7C148008 0000000000000000 8108 0000000000000000"), swIncorrectData)
	// A wrong key.
	if sw := authMgmt3DES(t, c, bytes.Repeat([]byte{1}, 24)); sw != swSecurityStatus {
		t.Fatalf("wrong key: %04x, want 6982", sw)
	}
	wantSW(t, c, insGenerate, 0, 0x9A, unhex(t, "AC03800111"), swSecurityStatus)
	// Single authentication, as yubico-piv-tool does it.
	chal := mustOK(t, c, insGenAuth, alg3DES, refMgmt, unhex(t, "7C028100"))
	if len(chal) != 12 || !bytes.Equal(chal[:4], unhex(t, "7C0A8108")) {
		t.Fatalf("challenge %x", chal)
	}
	block, _ := desBlock(defaultMgmtKey)
	enc := make([]byte, 8)
	block.Encrypt(enc, chal[4:])
	mustOK(t, c, insGenAuth, alg3DES, refMgmt, append(unhex(t, "7C0A8208"), enc...))
	mustOK(t, c, insGenerate, 0, 0x9A, unhex(t, "AC03800111"))
	// OpenSC's RNG probe uses P1 00.
	wantSW(t, c, insGenAuth, 0x00, refMgmt, unhex(t, "7C028100"), swIncorrectData)
}

func TestDataObjects(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC102"), swNotFound)
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC109"), swSecurityStatus)
	wantSW(t, c, insGetData, 0x3F, 0xFE, unhex(t, "5C035FC102"), swWrongP1P2)
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C02AAAA"), swIncorrectData)
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C037FC102"), swIncorrectData)
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C027F61"), swNotFound)
	wantSW(t, c, insPutData, 0x3F, 0xFF, unhex(t, "5C035FC10253020102"), swSecurityStatus)
	authMgmt3DES(t, c, defaultMgmtKey)
	wantSW(t, c, insPutData, 0x3F, 0xFF, unhex(t, "5C017E53020102"), swIncorrectData)
	// piv-go's SetMetadata: the PIN-protected management key.
	printed := unhex(t, "881A8918 0102030405060708 0102030405060708 0102030405060708")
	mustOK(t, c, insPutData, 0x3F, 0xFF, append(unhex(t, "5C035FC109531C"), printed...))
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC109"), swSecurityStatus)
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	if got := mustOK(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC109")); !bytes.Equal(got, append([]byte{0x53, 0x1C}, printed...)) {
		t.Fatalf("printed object %x", got)
	}
	mustOK(t, c, insPutData, 0x3F, 0xFF, unhex(t, "5C035FC1095300"))
	wantSW(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC109"), swNotFound)
}

func TestMetadataPIN(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	if md := mustOK(t, c, insGetMetadata, 0, refPIN, nil); !bytes.Equal(md, unhex(t, "0101FF 050101 06020303")) {
		t.Fatalf("PIN metadata %x", md)
	}
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), 0x63C2)
	mustOK(t, c, insChangeRef, 0, refPIN, append(padPIN([]byte("123456")), padPIN([]byte("1234567"))...))
	if md := mustOK(t, c, insGetMetadata, 0, refPIN, nil); !bytes.Equal(md, unhex(t, "0101FF 050100 06020303")) {
		t.Fatalf("PIN metadata after change %x", md)
	}
	wantSW(t, c, insGetMetadata, 0, 0x9A, nil, swRefNotFound)
	wantSW(t, c, insGetMetadata, 0, refBio, nil, swRefNotFound)
}

func TestReadConfig(t *testing.T) {
	c := newTestCard(t, Profile57)
	mustOK(t, c, insSelect, 0x04, 0x00, aidMgmt)
	resp := mustOK(t, c, insReadConfig, 0, 0, nil)
	if int(resp[0]) != len(resp)-1 {
		t.Fatalf("READ CONFIG length byte %d for %d bytes", resp[0], len(resp)-1)
	}
	ts, err := parseTLVs(resp[1:])
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[uint32][]byte{
		0x01: {0x00, 0x10}, 0x02: {byte(c.Serial() >> 24), byte(c.Serial() >> 16), byte(c.Serial() >> 8), byte(c.Serial())},
		0x04: {formFactor}, 0x05: {5, 7, 1},
	} {
		if got, _ := find(ts, tag); !bytes.Equal(got, want) {
			t.Errorf("tag %02x = %x, want %x", tag, got, want)
		}
	}
	wantSW(t, c, insGetVersion, 0, 0, nil, swINSNotSupported)
	selectPIV(t, c)
	if v := mustOK(t, c, insGetVersion, 0, 0, nil); !bytes.Equal(v, []byte{5, 7, 1}) {
		t.Fatalf("version %x", v)
	}
	if s := mustOK(t, c, insGetSerial, 0, 0, nil); len(s) != 4 {
		t.Fatalf("serial %x", s)
	}
}

func desBlock(key []byte) (interface{ Encrypt(dst, src []byte) }, error) {
	return des.NewTripleDESCipher(key)
}

// TestYkmanResetFlow follows ykman's reset: tries left from metadata, VERIFY and RESET RETRY
// COUNTER with all-FF blocks until they are blocked, then RESET, in extended APDUs.
func TestYkmanResetFlow(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	ff := bytes.Repeat([]byte{0xFF}, 16)
	md, sw := raw(t, c, unhex(t, "00F70080000000"))
	if sw != swOK || md[len(md)-1] != 3 {
		t.Fatalf("PIN metadata %x %04x", md, sw)
	}
	for want := uint16(0x63C2); ; want-- {
		_, sw := raw(t, c, append(unhex(t, "00200080000008"), ff[:8]...))
		if sw != want {
			t.Fatalf("VERIFY all-FF: %04x, want %04x", sw, want)
		}
		if sw == 0x63C0 {
			break
		}
	}
	for want := uint16(0x63C2); ; want-- {
		_, sw := raw(t, c, append(unhex(t, "002C0080000010"), ff...))
		if sw != want {
			t.Fatalf("RESET RETRY COUNTER all-FF: %04x, want %04x", sw, want)
		}
		if sw == 0x63C0 {
			break
		}
	}
	if _, sw := raw(t, c, unhex(t, "00FB0000000000")); sw != swOK {
		t.Fatalf("RESET: %04x", sw)
	}
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
}
