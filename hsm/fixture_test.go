package hsm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

// caFixture is a CA key generated in a SoftHSM token, wrapped under a random KEK, with its root
// certificate: made once per test process and algorithm.
type caFixture struct {
	Tok    *softtoken.Token
	CA     *hsm.CAKey // nil when loaded from a file
	Sess   *hsm.Session
	KEK    []byte
	File   *wrap.File
	Public crypto.PublicKey
	Cert   *x509.Certificate
	Quirk  wrap.Quirk
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*caFixture{}
)

const testSubject = "CN=Custos Test Root REHEARSAL,O=Custos,C=DE"

func fixture(t *testing.T, alg string) *caFixture {
	t.Helper()
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f := fixtures[alg]; f != nil {
		return f
	}
	if path := os.Getenv("CUSTOS_TEST_FIXTURES"); path != "" {
		f := loadFixture(t, path, alg)
		fixtures[alg] = f
		return f
	}
	ctx := context.Background()
	tok := testenv.SoftHSMToken(t, "gen-"+alg)
	s, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, PIN: []byte(tok.UserPIN), Rehearsal: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Probe(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := s.GenerateCA(ctx, alg, "custos CA "+alg)
	if err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	check, err := wrap.KCV(kek)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.PutKEK(ctx, kek, hsm.TransportAuto, p, true)
	if err != nil {
		t.Fatal(err)
	}
	file, err := s.WrapCA(ctx, k, ca, check, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Destroy(); err != nil {
		t.Fatal(err)
	}
	quirk, err := hsm.SoftwareCheck(kek, file, ca.Public)
	if err != nil {
		t.Fatal(err)
	}
	dn, err := hsm.ParseDN(testSubject)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := hsm.RootCertificate(ca.Signer(), dn, 9*365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := &caFixture{Tok: tok, CA: ca, Sess: s, KEK: kek, File: file, Public: ca.Public, Cert: cert, Quirk: quirk}
	fixtures[alg] = f
	return f
}

type fixtureJSON struct {
	KEK  []byte `json:"kek"`
	File []byte `json:"file"`
	Cert []byte `json:"cert"`
}

// saveFixtures writes the fixtures of algs to a file for a test re-run in openCryptoki's namespaces
// and points CUSTOS_TEST_FIXTURES at it (the KEK is a test fixture, not a secret).
func saveFixtures(t *testing.T, algs ...string) {
	t.Helper()
	all := map[string]fixtureJSON{}
	for _, alg := range algs {
		f := fixture(t, alg)
		fb, err := f.File.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		all[alg] = fixtureJSON{KEK: f.KEK, File: fb, Cert: f.Cert.Raw}
	}
	b, _ := json.Marshal(all)
	path := filepath.Join(t.TempDir(), "fixtures.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOS_TEST_FIXTURES", path)
}

func loadFixture(t *testing.T, path, alg string) *caFixture {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]fixtureJSON
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	fj, ok := all[alg]
	if !ok {
		t.Fatalf("no %s fixture in %s", alg, path)
	}
	file, err := wrap.ParseFile(fj.File)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(fj.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return &caFixture{KEK: fj.KEK, File: file, Public: cert.PublicKey, Cert: cert}
}

func writePEM(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.crt.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
