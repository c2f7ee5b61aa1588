package wrap

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

// Check-value vectors computed independently with OpenSSL 3.0 (`openssl mac -cipher AES-256-CBC
// CMAC` and `openssl enc -aes-256-ecb -nopad` over a zero block).
var kcvVectors = []struct{ key, cmac, ecb string }{
	{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "cmac:377822c093", "ecb:f29000"},
	{"2b7e151628aed2a6abf7158809cf4f3c", "cmac:7ad386c376", "ecb:7df76b"},
}

func TestCheckValueVectors(t *testing.T) {
	for _, v := range kcvVectors {
		key := unhex(t, v.key)
		c, err := KCV(key)
		if err != nil || c.String() != v.cmac {
			t.Errorf("KCV(%s) = %v %v, want %s", v.key, c, err, v.cmac)
		}
		e, err := LegacyKCV(key)
		if err != nil || e.String() != v.ecb {
			t.Errorf("LegacyKCV(%s) = %v %v, want %s", v.key, e, err, v.ecb)
		}
		for _, s := range []string{v.cmac, v.ecb} {
			p, err := ParseCheckValue(s)
			if err != nil || !p.Matches(key) {
				t.Errorf("ParseCheckValue(%s).Matches: %v", s, err)
			}
			key[0] ^= 1
			if p.Matches(key) {
				t.Errorf("%s matches a different key", s)
			}
			key[0] ^= 1
		}
	}
}

func TestParseCheckValueRefuses(t *testing.T) {
	for _, s := range []string{"377822c093", "cmac:377822c0", "cmac:377822C093", "ecb:f29000aa", "kcv:f29000", "cmac:zz7822c093"} {
		if _, err := ParseCheckValue(s); err == nil {
			t.Errorf("ParseCheckValue(%q) accepted", s)
		}
	}
}

// TestCheckValueMatchesOpenSSL compares with the real openssl on fresh keys of every AES size.
func TestCheckValueMatchesOpenSSL(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl")
	for _, size := range []int{16, 24, 32} {
		key := make([]byte, size)
		for i := range key {
			key[i] = byte(i*7 + size)
		}
		cipher := map[int]string{16: "AES-128-CBC", 24: "AES-192-CBC", 32: "AES-256-CBC"}[size]
		cmd := exec.Command(openssl, "mac", "-cipher", cipher, "-macopt", "hexkey:"+hexs(key), "CMAC")
		cmd.Stdin = strings.NewReader(string(make([]byte, 16)))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl mac: %v", err)
		}
		c, _ := KCV(key)
		if want := "cmac:" + strings.ToLower(strings.TrimSpace(string(out)))[:10]; c.String() != want {
			t.Errorf("AES-%d: KCV %s, openssl %s", size*8, c, want)
		}
	}
}
