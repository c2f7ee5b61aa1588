package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScannerPositiveControl(t *testing.T) {
	secrets := []Secret{{"kek", random(32)}, {"share", random(16)}, {"pin", []byte("12345678")}}
	s, err := NewScanner(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PositiveControl(secrets...); err != nil {
		t.Fatal(err)
	}
}

func TestScannerFindsEachEncoding(t *testing.T) {
	v := random(24)
	s, _ := NewScanner(Secret{"k", v})
	for name, data := range map[string]string{
		"raw":          "x" + string(v) + "y",
		"hex":          "key=" + hex.EncodeToString(v),
		"HEX":          "KEY=" + strings.ToUpper(hex.EncodeToString(v)),
		"base64":       `{"k":"` + base64.StdEncoding.EncodeToString(v) + `"}`,
		"base64url":    base64.URLEncoding.EncodeToString(append([]byte{1}, v...)),
		"base64raw":    base64.RawStdEncoding.EncodeToString(append([]byte{1, 2}, v...)),
		"base64urlraw": base64.RawURLEncoding.EncodeToString(v),
	} {
		if len(s.Scan(name, []byte(data))) == 0 {
			t.Errorf("%s: not found", name)
		}
	}
	// No false positive on unrelated data, including other encodings of other values.
	other := random(24)
	if f := s.Scan("other", []byte(hex.EncodeToString(other)+base64.StdEncoding.EncodeToString(other)+string(other))); len(f) != 0 {
		t.Errorf("false positive: %v", f)
	}
}

func TestScanPaths(t *testing.T) {
	v := random(32)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700)
	os.WriteFile(filepath.Join(dir, "a", "b", "leak"), []byte(hex.EncodeToString(v)), 0o600)
	os.WriteFile(filepath.Join(dir, "out"), v, 0o600)
	os.WriteFile(filepath.Join(dir, "clean"), []byte("nothing"), 0o600)
	os.MkdirAll(filepath.Join(dir, "hardware", "deep"), 0o700)
	os.WriteFile(filepath.Join(dir, "hardware", "deep", "state"), v, 0o600)
	s, _ := NewScanner(Secret{"kek", v})
	f, err := s.ScanPaths([]string{dir}, filepath.Join(dir, "out"), filepath.Join(dir, "hardware"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 1 || !strings.HasSuffix(f[0].Where, "leak") {
		t.Fatalf("findings %v, want exactly the leak (out and the hardware directory are excepted)", f)
	}
}

func TestScannerRefusesShortSecret(t *testing.T) {
	if _, err := NewScanner(Secret{"short", []byte("1234")}); err == nil {
		t.Fatal("a 4-byte secret was accepted")
	}
}
