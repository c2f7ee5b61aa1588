package ceremony

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
)

// freshSoftwareRoster writes a rehearsal roster of new software custodians and their identity files.
func freshSoftwareRoster(t *testing.T, dir, prefix string, n, k int) (string, string, []string) {
	var recips, files []string
	for i := 0; i < n; i++ {
		id, _ := age.GenerateX25519Identity()
		name := prefix + string(rune('a'+i))
		f := filepath.Join(dir, name+".key")
		os.WriteFile(f, []byte(id.String()+"\n"), 0o600)
		files = append(files, f)
		recips = append(recips, name+"="+id.Recipient().String())
	}
	path := filepath.Join(dir, prefix+"roster.json")
	res, err := CreateRoster(RosterOptions{Threshold: k, Recipients: recips, AllowSoftware: true, Rehearsal: true, Out: path})
	if err != nil {
		t.Fatal(err)
	}
	return path, res.SHA256, files
}

// TestRekey: after a rekey to fresh keys the old KEK does not unwrap the new blob, an import from the new
// shares works, the handover verifies under the old manifest key, the chain of records verifies and
// fails when the record in the middle is left out, and a roster reusing an old key is refused.
func TestRekey(t *testing.T) {
	rec, seal, ids := generated(t)
	dir := t.TempDir()
	tok := testenv.SoftHSMToken(t, "rekey")
	roster, sha, newIDs := freshSoftwareRoster(t, dir, "n", 3, 2)
	w := &rehearsalWitness{name: "wanda"}
	opts := func(out, roster, sha string) RekeyOptions {
		return RekeyOptions{
			NextGeneration: NextGeneration{Ceremony: []string{rec}, ExpectSeal: seal, Roster: roster, ExpectRosterSHA256: sha,
				Identities: append(ids[:2:2], newIDs...), Out: out, Rehearsal: true, Preflight: rehearsalPreflight(t), Prompter: w},
			HSM: hsm.Config{Module: tok.Module, TokenSerial: tok.Serial, PIN: []byte(tok.UserPIN)}, HSMPINSource: "test fixture",
		}
	}
	// A roster that keeps an old key is refused.
	reuse, reuseSHA := reuseRoster(t, dir, ids[0], newIDs[0])
	if _, err := Rekey(context.Background(), opts(filepath.Join(dir, "reuse"), reuse, reuseSHA)); err == nil || !strings.Contains(err.Error(), "a rekey needs fresh keys") {
		t.Fatalf("reused key: %v", err)
	}

	out := filepath.Join(dir, "rekeyed")
	res, err := Rekey(context.Background(), opts(out, roster, sha))
	if err != nil {
		t.Fatal(err)
	}
	if res.ManifestKey == res.OldManifestKey || res.Generation != 2 {
		t.Fatalf("%+v", res)
	}
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("the rekey token keeps %v", objs)
	}
	if len(w.confirmed) != 1 || !strings.Contains(w.confirmed[0], filepath.Join(rec, "ca-key.wrapped")) {
		t.Fatalf("witnessed destructions %q", w.confirmed)
	}
	vr, err := VerifyRecord(out)
	if err != nil || vr.Handover == nil || vr.Handover.OldManifestKey != res.OldManifestKey {
		t.Fatalf("record %v, handover %+v", err, vr)
	}

	// The old KEK, rebuilt from the old shares, opens nothing current.
	oldKEK := filepath.Join(dir, "old.kek")
	if _, err := Combine(CombineOptions{Ceremony: rec, Rehearsal: true, Identities: ids[:2], Out: oldKEK}); err != nil {
		t.Fatal(err)
	}
	kb, _ := os.ReadFile(oldKEK)
	nb, _ := os.ReadFile(filepath.Join(out, "ca-key.wrapped"))
	nf, err := wrap.ParseFile(nb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrap.Unwrap(kb, nf.Blob); err == nil {
		t.Fatal("the old KEK unwraps the new blob")
	}

	// An import from the new shares works, and the chain verifies only whole.
	target := testenv.SoftHSMToken(t, "rekey-target")
	imp := filepath.Join(dir, "imp")
	ires, err := Import(context.Background(), importOptions(t, out, res.Seal, newIDs[:2], target.Module, target.Serial, target.UserPIN, imp))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRecords([]string{rec, out, imp}, ires.Seal); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRecords([]string{rec, imp}, ires.Seal); err == nil {
		t.Fatal("the chain verified with the rekey record left out")
	}

	// A handover changed after the fact is refused.
	d := copyRecord(t, out, filepath.Join(dir, "tampered"))
	hb, _ := os.ReadFile(filepath.Join(d, HandoverFile))
	os.WriteFile(filepath.Join(d, HandoverFile), []byte(strings.Replace(string(hb), `"to_generation":2`, `"to_generation":3`, 1)), 0o600)
	if _, err := VerifyRecord(d); err == nil {
		t.Fatal("a changed handover verified")
	}
}

// reuseRoster writes a roster of one old and one new key.
func reuseRoster(t *testing.T, dir, oldKey, newKey string) (string, string) {
	var recips []string
	for i, f := range []string{oldKey, newKey} {
		b, _ := os.ReadFile(f)
		id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		recips = append(recips, string(rune('p'+i))+"="+id.Recipient().String())
	}
	path := filepath.Join(dir, "reuse-roster.json")
	res, err := CreateRoster(RosterOptions{Threshold: 2, Recipients: recips, AllowSoftware: true, Rehearsal: true, Out: path})
	if err != nil {
		t.Fatal(err)
	}
	return path, res.SHA256
}
