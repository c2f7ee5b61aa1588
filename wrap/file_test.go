package wrap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func hexs(b []byte) string { return hex.EncodeToString(b) }

func sampleFile() *File {
	blob := make([]byte, 40)
	rand.Read(blob)
	return &File{
		KEKCheck:    CheckValue{Alg: KCVCMAC, Value: []byte{1, 2, 3, 4, 5}},
		Fingerprint: FingerprintBytes([]byte("spki")),
		KeyAlg:      "p256",
		Mechanism:   "pkcs11:CKM_AES_KEY_WRAP_PAD(0x210a) SoftHSM 2.6.1",
		Blob:        blob,
	}
}

func TestFileRoundTrip(t *testing.T) {
	f := sampleFile()
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := g.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-marshal differs:\n%s\n%s", b, b2)
	}
}

func TestParseFileRefuses(t *testing.T) {
	good, _ := sampleFile().Marshal()
	for name, b := range map[string][]byte{
		"reordered":   bytes.Replace(good, []byte(`{"blob"`), []byte(`{ "blob"`), 1),
		"format":      bytes.Replace(good, []byte("custos-wrapped-key-v1"), []byte("custos-wrapped-key-v2"), 1),
		"ecb check":   bytes.Replace(good, []byte(`"cmac:0102030405"`), []byte(`"ecb:010203"`), 1),
		"key alg":     bytes.Replace(good, []byte(`"p256"`), []byte(`"p521"`), 1),
		"extra field": bytes.Replace(good, []byte(`{"blob"`), []byte(`{"a":1,"blob"`), 1),
		"fingerprint": bytes.Replace(good, []byte(`"SHA256:`), []byte(`"SHA1:`), 1),
		"empty":       nil,
		"truncated":   good[:len(good)/2],
	} {
		if _, err := ParseFile(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSeedCorpus keeps testdata/valid.wrapped, the fuzz seed, a valid file.
func TestSeedCorpus(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "valid.wrapped"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(b); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseFile(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "valid.wrapped"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseFile(b)
		if err != nil {
			return
		}
		// Only canonical files parse, so a parsed file marshals back to exactly its input.
		out, err := g.Marshal()
		if err != nil || !bytes.Equal(bytes.TrimSuffix(out, []byte("\n")), bytes.TrimSuffix(b, []byte("\n"))) {
			t.Fatalf("parsed file does not re-marshal to its input: %v", err)
		}
	})
}
