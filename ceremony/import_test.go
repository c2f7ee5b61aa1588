package ceremony

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
)

// genFixture is one rehearsal generation (P-256, software custodians 2 of 3) made once per test process.
var genFixture struct {
	once sync.Once
	dir  string
	rec  string
	seal string
	ids  []string
	err  error
}

func generated(t *testing.T) (rec, seal string, ids []string) {
	t.Helper()
	genFixture.once.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			genFixture.err = err
			return
		}
		tok := testenv.SoftHSMToken(t, "import-source")
		roster, ids := softwareRoster(t, dir, 3, 2)
		rec := filepath.Join(dir, "gen")
		res, err := Generate(context.Background(), generateOptions(t, tok, roster, ids, rec))
		if err != nil {
			genFixture.err = err
			return
		}
		genFixture.dir, genFixture.rec, genFixture.seal, genFixture.ids = dir, rec, res.Seal, ids
	})
	if genFixture.err != nil {
		t.Fatal(genFixture.err)
	}
	return genFixture.rec, genFixture.seal, genFixture.ids
}

func importOptions(t *testing.T, rec, seal string, ids []string, module, serial, pin string, out string) ImportOptions {
	return ImportOptions{
		Ceremony: []string{rec}, ExpectSeal: seal, Identities: ids, Out: out, Rehearsal: true,
		HSM:          hsm.Config{Module: module, TokenSerial: serial, PIN: []byte(pin)},
		HSMPINSource: "test fixture", Transport: hsm.TransportAuto, Preflight: rehearsalPreflight(t),
	}
}

// TestImportRehearsal: two of three custodians import the generated CA key into a second SoftHSM token:
// the key is sensitive and not extractable there, the proof verifies, no KEK or session copy is left, and
// the records verify as a chain.
func TestImportRehearsal(t *testing.T) {
	rec, seal, ids := generated(t)
	tok := testenv.SoftHSMToken(t, "import-target")
	out := filepath.Join(t.TempDir(), "imp")
	res, err := Import(context.Background(), importOptions(t, rec, seal, ids[1:], tok.Module, tok.Serial, tok.UserPIN, out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRecords([]string{rec, out}, res.Seal); err != nil {
		t.Fatal(err)
	}
	objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN)
	var priv int
	for _, o := range objs {
		if !o.Token {
			t.Errorf("session object left: %v", o)
		}
		if o.Class == 3 { // CKO_PRIVATE_KEY
			priv++
			if !o.Sensitive || o.Extractable {
				t.Errorf("CA key attributes %v", o)
			}
		}
		if o.Class == 4 { // CKO_SECRET_KEY: a KEK
			t.Errorf("secret key left: %v", o)
		}
	}
	if priv != 1 {
		t.Fatalf("%d private keys in the target, want the CA key: %v", priv, objs)
	}
}

// TestImportRefusedBeforeCards: a wrong seal pin and a record from which a file is gone are refused
// before anything is written.
func TestImportRefusedBeforeCards(t *testing.T) {
	rec, _, ids := generated(t)
	tok := testenv.SoftHSMToken(t, "import-refused")
	out := filepath.Join(t.TempDir(), "imp")
	_, err := Import(context.Background(), importOptions(t, rec, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ids, tok.Module, tok.Serial, tok.UserPIN, out))
	if !errors.Is(err, ErrPin) {
		t.Fatalf("wrong seal: %v", err)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("target token touched: %v", objs)
	}
}

// TestImportInterrupted: an import cancelled (as SIGINT does) after each named step leaves no KEK,
// transport key or partial key in the target token, and its record says where it stopped.
func TestImportInterrupted(t *testing.T) {
	rec, seal, ids := generated(t)
	tok := testenv.SoftHSMToken(t, "import-interrupted")
	dir := t.TempDir()
	for _, step := range ImportSteps[:len(ImportSteps)-1] {
		ctx, cancel := context.WithCancel(context.Background())
		out := filepath.Join(dir, strings.ReplaceAll(step, "/", "-"))
		o := importOptions(t, rec, seal, ids[:2], tok.Module, tok.Serial, tok.UserPIN, out)
		var seen []string
		o.AfterStep = func(s string) error {
			seen = append(seen, s)
			if s == step {
				cancel()
			}
			return nil
		}
		_, err := Import(ctx, o)
		cancel()
		if step == "import/destroy" {
			// Cancelled after the last HSM step, the import is complete; only the seal is left, which a
			// cancelled flow still refuses to skip.
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("after %s: %v", step, err)
			}
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after %s: %v (steps %v)", step, err, seen)
		}
		if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
			t.Fatalf("after %s: target token keeps %v", step, objs)
		}
		vr, err := VerifyRecord(out)
		if err != nil {
			t.Fatalf("after %s: %v", step, err)
		}
		if vr.Outcome != OutcomeAborted || vr.Body.Where == "" {
			t.Fatalf("after %s: record %+v", step, vr.Body)
		}
	}
}
