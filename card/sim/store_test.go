package sim

import (
	"bytes"
	"math/big"
	"os"
	"path/filepath"
	"testing"
)

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func TestPersistence(t *testing.T) {
	c := newTestCard(t, Profile54)
	assertMode(t, c.path, 0o600)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	pub := generate(t, c, 0x9A, algP256, pinNever, touchAlways)
	mustOK(t, c, insPutData, 0x3F, 0xFF, unhex(t, "5C035FC10553037001AA"))
	newKey := bytes.Repeat([]byte{0x24}, 24)
	mustOK(t, c, insSetMgmtKey, 0xFF, 0xFF, append([]byte{algAES192, refMgmt, 24}, newKey...))
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), 0x63C2)
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), 0x63C1)
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), 0x63C0)
	before := c.Counters()

	// The card restarts: a new process loads the file.
	r, err := LoadCard(c.path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Serial() != c.Serial() || r.Profile() != Profile54 {
		t.Fatalf("reloaded serial %d profile %s", r.Serial(), r.Profile())
	}
	wantSW(t, r, insVerify, 0, refPIN, nil, swAuthBlocked)
	signECDSA(t, r, 0x9A, algP256, pub, swOK)
	if got := mustOK(t, r, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC105")); !bytes.Equal(got, unhex(t, "53037001AA")) {
		t.Fatalf("object after reload %x", got)
	}
	authMgmtAES(t, r, algAES192, newKey)
	got := r.Counters()
	if got.PINVerifies != before.PINVerifies || got.ByINS[insVerify] != before.ByINS[insVerify]+1 {
		t.Fatalf("counters after reload %+v, before %+v", got, before)
	}
	if a, b := attestationCert(t, r), attestationCert(t, c); !a.Equal(b) {
		t.Fatal("attestation certificate changed on reload")
	}
	// No temporary files are left beside the card.
	entries, _ := os.ReadDir(filepath.Dir(c.path))
	if len(entries) != 3 { // the card and its fleet's root certificate and key
		t.Fatalf("card directory holds %d entries", len(entries))
	}
}

func TestNewCardRefusesExistingPath(t *testing.T) {
	c := newTestCard(t, Profile54)
	if _, err := fleetOf(t, c).NewCard(c.path, 1, Profile54); err == nil {
		t.Fatal("NewCard overwrote an existing card")
	}
	if _, err := fleetOf(t, c).NewCard(filepath.Join(t.TempDir(), "x"), 1, "5.5"); err == nil {
		t.Fatal("NewCard accepted profile 5.5")
	}
}

func TestLoadCardRejectsDamage(t *testing.T) {
	c := newTestCard(t, Profile54)
	b, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"format":    func(b []byte) []byte { return bytes.Replace(b, []byte(`"format":1`), []byte(`"format":9`), 1) },
		"profile": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"profile":"5.4"`), []byte(`"profile":"4.3"`), 1)
		},
		"pin left": func(b []byte) []byte { return bytes.Replace(b, []byte(`"pin_left":3`), []byte(`"pin_left":9`), 1) },
	} {
		p := filepath.Join(t.TempDir(), "card.json")
		if err := os.WriteFile(p, mutate(bytes.Clone(b)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCard(p); err == nil {
			t.Errorf("%s: LoadCard accepted a damaged file", name)
		}
	}
}

func TestParseProfile(t *testing.T) {
	for in, want := range map[string]Profile{"": Profile54, "5.2": Profile52, "5.4": Profile54, "5.7": Profile57} {
		if got, err := ParseProfile(in); err != nil || got != want {
			t.Errorf("ParseProfile(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseProfile("5.3"); err == nil {
		t.Error("ParseProfile accepted 5.3")
	}
}

func TestPersistenceEveryKeyType(t *testing.T) {
	c := newTestCard(t, Profile57)
	selectPIV(t, c)
	authMgmtAES(t, c, algAES192, defaultMgmtKey)
	k := testRSAKey(t)
	var rsaData []byte
	for i, v := range []*big.Int{k.Primes[0], k.Primes[1], k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv} {
		rsaData = appendTLV(rsaData, uint32(1+i), v.FillBytes(make([]byte, 128)))
	}
	mustOK(t, c, insImportKey, algRSA2048, 0x82, rsaData)
	mustOK(t, c, insImportKey, algP384, 0x83, append([]byte{0x06, 0x30}, bytes.Repeat([]byte{0x11}, 48)...))
	mustOK(t, c, insImportKey, algEd25519, 0x84, append([]byte{0x07, 0x20}, bytes.Repeat([]byte{0x22}, 32)...))
	mustOK(t, c, insImportKey, algX25519, 0x85, append([]byte{0x08, 0x20}, bytes.Repeat([]byte{0x33}, 32)...))
	mustOK(t, c, insGenerate, 0, 0x86, unhex(t, "AC03800111"))
	slots := []byte{0x82, 0x83, 0x84, 0x85, 0x86, slotAttestation}
	before := map[byte][]byte{}
	for _, s := range slots {
		before[s] = mustOK(t, c, insGetMetadata, 0, s, nil)
	}
	r, err := LoadCard(c.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if got := mustOK(t, r, insGetMetadata, 0, s, nil); !bytes.Equal(got, before[s]) {
			t.Errorf("slot %02x: metadata %x after reload, %x before", s, got, before[s])
		}
	}
}

func TestSaveFailure(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	if err := os.RemoveAll(filepath.Dir(c.path)); err != nil {
		t.Fatal(err)
	}
	// The wrong PIN cannot be recorded: the card answers with a memory failure, not 63 C2.
	wantSW(t, c, insVerify, 0, refPIN, padPIN([]byte("000000")), swMemoryFailure)
	if err := c.SetTouchApproval(false); err == nil {
		t.Fatal("SetTouchApproval reported success without saving")
	}
}
