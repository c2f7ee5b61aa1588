package ceremony

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// legacyCA is what the paper procedure leaves: a CA key and its certificate, an AES key held as two XOR
// components with their check values, the CA key exported under it (kwp and cbc-pad) and an HMAC.
type legacyCA struct {
	dir                string
	cert, kwp, cbc     string
	mac, badMAC, other string // files: the MAC, a wrong MAC, a certificate of another P-256 key
	key                []byte
	parts              []LegacyComponent
}

func newLegacyCA(t *testing.T) *legacyCA {
	t.Helper()
	dir := t.TempDir()
	l := &legacyCA{dir: dir, key: make([]byte, 32)}
	rand.Read(l.key)
	c1 := make([]byte, 32)
	rand.Read(c1)
	c2 := make([]byte, 32)
	for i := range c2 {
		c2[i] = l.key[i] ^ c1[i]
	}
	k1, _ := wrap.KCV(c1)
	k2, _ := wrap.LegacyKCV(c2) // the paper procedure's envelopes carry either kind
	l.parts = []LegacyComponent{{Holder: "hugo", Value: c1, Check: k1}, {Holder: "ines", Value: c2, Check: k2}}

	ca := testenv.Key(t, "p256")
	l.cert = writeCert(t, dir, "ca.crt", ca)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l.other = writeCert(t, dir, "other.crt", other)
	der, err := x509.MarshalPKCS8PrivateKey(ca)
	if err != nil {
		t.Fatal(err)
	}
	kwp, err := wrap.Wrap(l.key, der)
	if err != nil {
		t.Fatal(err)
	}
	l.kwp = write(t, dir, "legacy.kwp", kwp)
	// cbc-pad: IV ‖ AES-CBC(PKCS#7(PKCS#8)).
	pad := 16 - len(der)%16
	plain := append(slices.Clone(der), slices.Repeat([]byte{byte(pad)}, pad)...)
	iv := make([]byte, 16)
	rand.Read(iv)
	b, _ := aes.NewCipher(l.key)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(plain, plain)
	l.cbc = write(t, dir, "legacy.cbc", append(iv, plain...))
	m := hmac.New(sha256.New, l.key)
	m.Write(kwp)
	sum := m.Sum(nil)
	l.mac = write(t, dir, "legacy.mac", sum)
	sum[0] ^= 1
	l.badMAC = write(t, dir, "bad.mac", sum)
	return l
}

func write(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCert writes a self-signed root certificate of key, as PEM.
func writeCert(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Legacy Root " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// kcv is the whole legacy key's check value, as --kcv takes it.
func (l *legacyCA) kcv() string {
	k, _ := wrap.LegacyKCV(l.key)
	return k.String()
}

// componentSource hands out the components and records which were asked for.
type componentSource struct {
	parts []LegacyComponent
	asked []int
}

func (s *componentSource) Component(i, n int) (LegacyComponent, error) {
	s.asked = append(s.asked, i)
	c := s.parts[i-1]
	c.Value = slices.Clone(c.Value)
	return c, nil
}

func (l *legacyCA) options(t *testing.T, tok *softtoken.Token, roster string, ids []string, out string) (AdoptOptions, *componentSource, *rehearsalWitness) {
	src := &componentSource{parts: l.parts}
	w := &rehearsalWitness{name: "wanda"}
	return AdoptOptions{
		Roster: roster, HSM: hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, PIN: []byte(tok.UserPIN)}, HSMPINSource: "test fixture",
		Components: 2, Source: src, ComponentsSource: "test", KCV: l.kcv(), LegacyBlob: l.kwp, LegacyFormat: LegacyKWP, LegacyMAC: l.mac,
		CACert: l.cert, Identities: ids, Out: out, Rehearsal: true, Preflight: rehearsalPreflight(t), Prompter: w,
	}, src, w
}

// TestAdopt: a legacy KWP blob with its HMAC is adopted from two components (one with a cmac, one with an
// ecb check value) in the token: the record verifies, names the legacy facts, has each envelope's
// destruction witnessed and leaves nothing in the token; the new shares then import the CA key into
// another token.
func TestAdopt(t *testing.T) {
	l := newLegacyCA(t)
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "adopt-source")
	roster, sha, ids := freshSoftwareRoster(t, dir, "a", 3, 2)
	out := filepath.Join(dir, "adopted")
	o, src, w := l.options(t, tok, roster, ids, out)
	o.ExpectRosterSHA256 = sha
	var steps []string
	o.AfterStep = func(s string) error { steps = append(steps, s); return nil }
	res, err := Adopt(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(steps, " "), strings.Join(AdoptSteps[:len(AdoptSteps)-1], " "); got != want {
		t.Errorf("steps\n got %s\nwant %s", got, want)
	}
	if !slices.Equal(src.asked, []int{1, 2}) || res.Unwrapped != "token" || len(res.Deviations) != 0 {
		t.Fatalf("asked %v, result %+v", src.asked, res)
	}
	vr, err := VerifyRecord(out)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Manifest.Generation != 1 || vr.Manifest.CA.Fingerprint != res.CAFingerprint || vr.Manifest.CeremonyID != res.CeremonyID {
		t.Fatalf("manifest %+v", vr.Manifest)
	}
	if len(w.confirmed) != 2 || !strings.Contains(w.confirmed[1], "envelope of legacy component 2 of 2 (check value "+l.parts[1].Check.String()) {
		t.Fatalf("witnessed %q", w.confirmed)
	}
	tr, _ := os.ReadFile(filepath.Join(out, TranscriptFile))
	blob, _ := os.ReadFile(l.kwp)
	for _, want := range []string{`"verified":true`, shares.FileSHA256(blob), `"format":"kwp"`, l.kcv(), `"proof_verified":true`} {
		if !strings.Contains(string(tr), want) {
			t.Errorf("the transcript does not say %s", want)
		}
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("the source token keeps %v", objs)
	}
	// The legacy key opens nothing in the record.
	nb, _ := os.ReadFile(filepath.Join(out, "ca-key.wrapped"))
	nf, err := wrap.ParseFile(nb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrap.Unwrap(l.key, nf.Blob); err == nil {
		t.Fatal("the legacy key unwraps the new blob")
	}

	target := testenv.SoftHSMToken(t, "adopt-target")
	imp := filepath.Join(dir, "imp")
	ires, err := Import(context.Background(), importOptions(t, out, res.Seal, ids[1:], target.Module, target.Serial, target.UserPIN, imp))
	if err != nil {
		t.Fatal(err)
	}
	if ires.CAFingerprint != res.CAFingerprint {
		t.Fatalf("imported %s, adopted %s", ires.CAFingerprint, res.CAFingerprint)
	}
	if _, err := VerifyRecords([]string{out, imp}, ires.Seal); err != nil {
		t.Fatal(err)
	}
}

// TestAdoptRefusals: a wrong component is caught at its own check value before the next is asked for;
// a wrong whole-key check value, a wrong HMAC and a certificate of another key are refused with nothing
// but the aborted transcript in the record and nothing in the token; a roster other than the pinned one,
// and cbc-pad without --allow-host-unwrap, are refused before the record starts.
func TestAdoptRefusals(t *testing.T) {
	l := newLegacyCA(t)
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "adopt-refusals")
	roster, _, ids := freshSoftwareRoster(t, dir, "r", 2, 2)
	for _, tc := range []struct {
		name   string
		change func(*AdoptOptions, *componentSource)
		want   string
		asked  []int
	}{
		{"wrong first component", func(o *AdoptOptions, s *componentSource) {
			s.parts = slices.Clone(s.parts)
			s.parts[0].Value = slices.Clone(s.parts[0].Value)
			s.parts[0].Value[3] ^= 0x10
		}, "component 1 of 2 does not match its check value " + l.parts[0].Check.String(), []int{1}},
		{"wrong second component", func(o *AdoptOptions, s *componentSource) {
			s.parts = slices.Clone(s.parts)
			s.parts[1].Value = slices.Clone(s.parts[0].Value)
		}, "component 2 of 2 does not match its check value " + l.parts[1].Check.String(), []int{1, 2}},
		{"wrong kcv", func(o *AdoptOptions, s *componentSource) { o.KCV = "ecb:000000" }, "does not match --kcv ecb:000000", []int{1, 2}},
		{"wrong mac", func(o *AdoptOptions, s *componentSource) { o.LegacyMAC = l.badMAC }, "HMAC-SHA256 in " + l.badMAC + " does not match", []int{1, 2}},
		{"another key", func(o *AdoptOptions, s *componentSource) { o.CACert = l.other }, "not the CA key", []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			o, src, _ := l.options(t, tok, roster, ids, out)
			tc.change(&o, src)
			_, err := Adopt(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if !slices.Equal(src.asked, tc.asked) {
				t.Errorf("asked for components %v, want %v", src.asked, tc.asked)
			}
			vr, err := VerifyRecord(out)
			if err != nil || vr.Outcome != OutcomeAborted {
				t.Fatalf("record %v %+v", err, vr)
			}
			for rel := range vr.Body.Files {
				t.Errorf("the aborted record holds %s", rel)
			}
			if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
				t.Fatalf("the token keeps %v", objs)
			}
		})
	}
	// Pins first: a roster that is not the pinned one is refused before anything is asked for.
	o, src, _ := l.options(t, tok, roster, ids, filepath.Join(dir, "pin"))
	o.ExpectRosterSHA256 = strings.Repeat("0", 64)
	if _, err := Adopt(context.Background(), o); !errors.Is(err, ErrPin) {
		t.Fatalf("wrong roster pin: %v", err)
	}
	if _, err := os.Stat(o.Out); !os.IsNotExist(err) || len(src.asked) != 0 {
		t.Fatalf("refused, yet the record exists (%v) or components were asked for (%v)", err, src.asked)
	}
	o, src, _ = l.options(t, tok, roster, ids, filepath.Join(dir, "cbc"))
	o.LegacyBlob, o.LegacyFormat, o.LegacyMAC = l.cbc, LegacyCBCPad, ""
	if _, err := Adopt(context.Background(), o); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--allow-host-unwrap") {
		t.Fatalf("cbc-pad without --allow-host-unwrap: %v", err)
	}
	if _, err := os.Stat(o.Out); !os.IsNotExist(err) || len(src.asked) != 0 {
		t.Fatalf("refused, yet the record exists (%v) or components were asked for (%v)", err, src.asked)
	}
}

// TestAdoptCBCPad: with --allow-host-unwrap a cbc-pad blob is opened on the host; the adoption works and
// records the deviation in the result, the transcript and the signed manifest.
func TestAdoptCBCPad(t *testing.T) {
	l := newLegacyCA(t)
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "adopt-cbc")
	roster, _, ids := freshSoftwareRoster(t, dir, "c", 2, 2)
	o, _, _ := l.options(t, tok, roster, ids, filepath.Join(dir, "adopted"))
	o.LegacyBlob, o.LegacyFormat, o.LegacyMAC, o.AllowHostUnwrap = l.cbc, LegacyCBCPad, "", true
	res, err := Adopt(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	vr, err := VerifyRecord(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unwrapped != "host" || len(res.Deviations) != 1 || !slices.Contains(vr.Manifest.Deviations, res.Deviations[0]) ||
		!strings.Contains(res.Deviations[0], "host unwrap") {
		t.Fatalf("result %+v, manifest deviations %q", res, vr.Manifest.Deviations)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("the token keeps %v", objs)
	}
}

// TestParseComponent: grouped hex of an AES key size, in either case; anything else refused without
// showing what was typed.
func TestParseComponent(t *testing.T) {
	k, err := ParseComponent([]byte("0011 2233 4455 6677 8899 AABB ccdd eeff"))
	if err != nil || len(k) != 16 || k[10] != 0xaa {
		t.Fatalf("%x %v", k, err)
	}
	for _, bad := range []string{"0011 2233", "0011 2233 4455 6677 8899 aabb ccdd eefg", "0011 2233 4455 6677 8899 aabb ccdd eef"} {
		if _, err := ParseComponent([]byte(bad)); err == nil || strings.Contains(err.Error(), "0011") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestAdoptAbortsCleanly: a failure at any step before the envelopes are destroyed leaves the token
// empty and a sealed, aborted record without wrapped key, shares or manifest, and no envelope is
// reported destroyed.
func TestAdoptAbortsCleanly(t *testing.T) {
	l := newLegacyCA(t)
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "adopt-abort")
	roster, _, ids := freshSoftwareRoster(t, dir, "x", 2, 2)
	boom := errors.New("injected failure")
	for _, at := range []string{"kek", "adopt", "trial-import/prove", "check-round", "manifest"} {
		out := filepath.Join(dir, strings.ReplaceAll(at, "/", "-"))
		o, _, w := l.options(t, tok, roster, ids, out)
		o.AfterStep = func(s string) error {
			if s == at {
				return boom
			}
			return nil
		}
		if _, err := Adopt(context.Background(), o); !errors.Is(err, boom) {
			t.Fatalf("%s: %v", at, err)
		}
		vr, err := VerifyRecord(out)
		if step, _, _ := strings.Cut(at, "/"); err != nil || vr.Outcome != OutcomeAborted || vr.Body.Where != step {
			t.Fatalf("%s: record %v", at, err)
		}
		for _, rel := range []string{"ca-key.wrapped", "manifest.json", "shares"} {
			if _, err := os.Stat(filepath.Join(out, rel)); !os.IsNotExist(err) {
				t.Errorf("%s: the aborted record holds %s", at, rel)
			}
		}
		if len(w.confirmed) != 0 {
			t.Errorf("%s: envelopes destroyed: %q", at, w.confirmed)
		}
		if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
			t.Fatalf("%s: the token keeps %v", at, objs)
		}
	}
}
