package ceremony

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
)

// rehearsalWitness confirms every custodian as one named witness and remembers the minutes.
type rehearsalWitness struct {
	name      string
	minutes   []string
	confirmed []string
}

func (w *rehearsalWitness) Witness(flow, id, custodian string, serial uint32) (string, error) {
	return w.name, nil
}
func (w *rehearsalWitness) Minutes(lines []string) { w.minutes = lines }
func (w *rehearsalWitness) Confirm(flow, id, statement string) (string, error) {
	w.confirmed = append(w.confirmed, statement)
	return w.name, nil
}

// softwareRoster writes a rehearsal roster of n software custodians with threshold k and their
// identity files; it returns the roster path and the identity files.
func softwareRoster(t *testing.T, dir string, n, k int) (string, []string) {
	t.Helper()
	var recips, files []string
	for i := 0; i < n; i++ {
		id, _ := age.GenerateX25519Identity()
		name := string(rune('a' + i))
		recips = append(recips, name+"="+id.Recipient().String())
		f := filepath.Join(dir, name+".key")
		os.WriteFile(f, []byte(id.String()+"\n"), 0o600)
		files = append(files, f)
	}
	path := filepath.Join(dir, "roster.json")
	if _, err := CreateRoster(RosterOptions{Threshold: k, Recipients: recips, AllowSoftware: true, Rehearsal: true, Out: path}); err != nil {
		t.Fatal(err)
	}
	return path, files
}

func generateOptions(t *testing.T, tok *softtoken.Token, roster string, ids []string, out string) GenerateOptions {
	return GenerateOptions{
		Roster: roster, Identities: ids, Out: out, Rehearsal: true, CAKey: "p256",
		HSM:          hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, PIN: []byte(tok.UserPIN)},
		HSMPINSource: "test fixture", Subject: "CN=Custos Test Root,O=Custos,C=DE", Validity: 9 * 365 * 24 * time.Hour,
		Preflight: rehearsalPreflight(t), Prompter: &rehearsalWitness{name: "walter"},
	}
}

// TestGenerateRehearsal: a P-256 generation on SoftHSM with software custodians: the record verifies, the
// manifest pins the CA key, the certificate says REHEARSAL, and the source token keeps nothing.
func TestGenerateRehearsal(t *testing.T) {
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "gen-source")
	roster, ids := softwareRoster(t, dir, 3, 2)
	out := filepath.Join(dir, "gen")
	o := generateOptions(t, tok, roster, ids, out)
	var steps []string
	o.AfterStep = func(s string) error { steps = append(steps, s); return nil }
	res, err := Generate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	vr, err := VerifyRecord(out)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Seal != res.Seal || vr.Outcome != OutcomeSuccess || vr.Manifest == nil || vr.Manifest.CA.Fingerprint != res.CAFingerprint {
		t.Fatalf("record %+v", vr)
	}
	if got, want := strings.Join(steps, " "), strings.Join(GenerateSteps[:len(GenerateSteps)-1], " "); got != want {
		t.Errorf("steps\n got %s\nwant %s", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(out, "ca.crt.pem"))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !strings.Contains(cert.Subject.String(), "REHEARSAL") {
		t.Fatalf("certificate %v: %v", cert.Subject, err)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatal("not a P-256 certificate")
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("source token keeps %v", objs)
	}
	if w := o.Prompter.(*rehearsalWitness); len(w.minutes) != 5 || !strings.Contains(strings.Join(w.minutes, "\n"), res.ManifestKey) {
		t.Errorf("minutes %q", w.minutes)
	}
	// The rebuilt KEK opens the blob: combine in rehearsal, then the software check.
	kek := filepath.Join(dir, "kek.bin")
	if _, err := Combine(CombineOptions{Ceremony: out, Rehearsal: true, Identities: ids[:2], Out: kek}); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateAbortsCleanly: a failure at any step before destruction leaves the source token empty and a
// sealed record that says where and why, with no shares, blob or manifest.
func TestGenerateAbortsCleanly(t *testing.T) {
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "gen-abort")
	roster, ids := softwareRoster(t, dir, 3, 2)
	boom := errors.New("injected failure")
	for _, at := range []string{"token", "wrap", "trial-import/prove", "check-round", "manifest", "minutes"} {
		out := filepath.Join(dir, "abort-"+strings.ReplaceAll(at, "/", "-"))
		o := generateOptions(t, tok, roster, ids, out)
		o.AfterStep = func(s string) error {
			if s == at {
				return boom
			}
			return nil
		}
		_, err := Generate(context.Background(), o)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "generate aborted at") {
			t.Fatalf("abort at %s: %v", at, err)
		}
		if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
			t.Fatalf("abort at %s: source token keeps %v", at, objs)
		}
		vr, err := VerifyRecord(out)
		if err != nil {
			t.Fatalf("abort at %s: %v", at, err)
		}
		if vr.Outcome != OutcomeAborted || !strings.Contains(vr.Body.Reason, "injected failure") {
			t.Fatalf("abort at %s: record %+v", at, vr.Body)
		}
		for _, gone := range []string{"shares", "checks", "ca-key.wrapped", "manifest.json"} {
			if _, err := os.Stat(filepath.Join(out, gone)); err == nil {
				t.Errorf("abort at %s: %s left behind", at, gone)
			}
		}
	}
}

// TestGenerateCheckRoundFailure: when one custodian's share cannot be opened from disk in the check
// round, generation aborts naming it, and the source token holds none of the ceremony's objects.
func TestGenerateCheckRoundFailure(t *testing.T) {
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "gen-check")
	roster, ids := softwareRoster(t, dir, 3, 2)
	out := filepath.Join(dir, "gen")
	o := generateOptions(t, tok, roster, ids, out)
	o.AfterStep = func(s string) error {
		if s == "split" {
			// Custodian b's share file is damaged on disk after it was written.
			tmp, _ := filepath.Glob(filepath.Join(dir, ".gen.tmp-*", "shares", "b.age"))
			if len(tmp) != 1 {
				t.Fatalf("share file of b not found: %v", tmp)
			}
			flip(t, tmp[0])
		}
		return nil
	}
	_, err := Generate(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "generate aborted at check-round") || !strings.Contains(err.Error(), "shares/b.age") {
		t.Fatalf("%v", err)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("source token keeps %v", objs)
	}
	vr, err := VerifyRecord(out)
	if err != nil || vr.Outcome != OutcomeAborted || vr.Body.Where != "check-round" {
		t.Fatalf("record: %v %+v", err, vr)
	}
}

func mkdirTemp() (string, error) { return os.MkdirTemp("", "custos-ceremony-test-") }

func rehearsalPreflight(t testing.TB) *PreflightReport {
	r, err := Preflight(Host{}, "test", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
