package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pki/custos/wrap"
)

// legacy makes what a CA that runs the paper procedure brings to an adoption: a CA key (P-256, in
// software: the rehearsal plays the legacy HSM) with its root certificate; an AES-256 key held as two
// XOR components, each with its check value, as the envelopes hold them; the CA key exported as RFC
// 5649-wrapped PKCS#8 under that key; and the exported file's HMAC-SHA256 under the same key. It returns
// the whole key's check value.
func (r *rehearsal) legacy() (string, error) {
	dir := filepath.Join(r.dir, "legacy")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "Legacy Root CA REHEARSAL", Organization: []string{"Custos Rehearsal"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.Public(), ca)
	if err != nil {
		return "", err
	}
	key := make([]byte, wrap.KEKSize)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	defer clear(key)
	c1 := make([]byte, len(key))
	if _, err := rand.Read(c1); err != nil {
		return "", err
	}
	c2 := make([]byte, len(key))
	for i := range key {
		c2[i] = key[i] ^ c1[i]
	}
	var components []byte
	for _, c := range [][]byte{c1, c2} {
		kcv, err := wrap.KCV(c)
		if err != nil {
			return "", err
		}
		components = fmt.Appendf(components, "%s %s\n", hex.EncodeToString(c), kcv)
		clear(c)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(ca)
	if err != nil {
		return "", err
	}
	blob, err := wrap.Wrap(key, pk)
	clear(pk)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(blob)
	for _, f := range []struct {
		name string
		body []byte
	}{
		{"ca.crt.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{"components", components},
		{"ca-key.kwp", blob},
		{"ca-key.kwp.mac", []byte(hex.EncodeToString(mac.Sum(nil)) + "\n")},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.body, 0o600); err != nil {
			return "", err
		}
	}
	clear(components)
	kcv, err := wrap.KCV(key)
	return kcv.String(), err
}

// adopt takes over the legacy CA key from two paper components, to the 2-of-3 roster of fresh keys the
// rekey made, and imports it from the new shares.
func (r *rehearsal) adopt(context.Context) error {
	fmt.Fprintln(r.stdout, "adoption (paper procedure, two components)")
	kcv, err := r.legacy()
	if err != nil {
		return err
	}
	out, err := r.custosStep("ceremony adopt", append([]string{"ceremony", "adopt", "--rehearsal", "--roster", "roster-rekey.json",
		"--components", "2", "--components-file", "legacy/components", "--kcv", kcv, "--legacy-blob", "legacy/ca-key.kwp",
		"--legacy-format", "kwp", "--legacy-mac", "legacy/ca-key.kwp.mac", "--ca-cert", "legacy/ca.crt.pem",
		"--witness", rehearsalWitness, "--pin-file", "cards.pin", "--out", "adoption"}, r.hsmArgs("rehearsal-source")...)...)
	if err != nil {
		return err
	}
	if _, err := r.record("adoption", out); err != nil {
		return err
	}
	return r.importInto("import-adoption", "rehearsal-adopted", r.serials[r.n-3:r.n-1], "adoption")
}
