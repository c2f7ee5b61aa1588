package ceremony

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestReshare: the generated 2-of-3 (a, b, c) is reshared to a new 2-of-3 (b, d, e): the new record
// carries a byte-identical wrapped key, an import from two new shares works, a custodian of the old
// generation only is refused naming both generations, and a roster whose SHA-256 is not the pinned one is
// refused before anything is written.
func TestReshare(t *testing.T) {
	rec, seal, ids := generated(t)
	dir := t.TempDir()
	var recips []string
	newIDs := []string{ids[1]}
	for _, n := range []string{"d", "e"} {
		id, _ := age.GenerateX25519Identity()
		f := filepath.Join(dir, n+".key")
		os.WriteFile(f, []byte(id.String()+"\n"), 0o600)
		newIDs = append(newIDs, f)
		recips = append(recips, n+"="+id.Recipient().String())
	}
	b, _ := os.ReadFile(ids[1])
	bid, _ := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	recips = append(recips, "b="+bid.Recipient().String())
	roster := filepath.Join(dir, "new-roster.json")
	rres, err := CreateRoster(RosterOptions{Threshold: 2, Recipients: recips, AllowSoftware: true, Rehearsal: true, Out: roster})
	if err != nil {
		t.Fatal(err)
	}
	opts := func(out string) NextGeneration {
		return NextGeneration{Ceremony: []string{rec}, ExpectSeal: seal, Roster: roster, ExpectRosterSHA256: rres.SHA256,
			Identities: append([]string{ids[0], ids[2]}, newIDs...), Out: out, Rehearsal: true,
			Preflight: rehearsalPreflight(t), Prompter: &rehearsalWitness{name: "wanda"}}
	}

	bad := opts(filepath.Join(dir, "bad"))
	bad.ExpectRosterSHA256 = strings.Repeat("0", 64)
	if _, err := Reshare(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "pin mismatch") {
		t.Fatalf("wrong roster pin: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Fatal("a record was written for a refused reshare")
	}

	out := filepath.Join(dir, "gen2")
	res, err := Reshare(context.Background(), opts(out))
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 2 || res.Supersedes != 1 {
		t.Fatalf("%+v", res)
	}
	w1, _ := os.ReadFile(filepath.Join(rec, "ca-key.wrapped"))
	w2, _ := os.ReadFile(filepath.Join(out, "ca-key.wrapped"))
	if !bytes.Equal(w1, w2) {
		t.Fatal("the reshared record's ca-key.wrapped differs")
	}
	if _, err := VerifyRecords([]string{rec, out}, res.Seal); err != nil {
		t.Fatal(err)
	}

	// An import from two new shares works.
	tok := testenv.SoftHSMToken(t, "reshare-target")
	imp := filepath.Join(dir, "imp")
	if _, err := Import(context.Background(), importOptions(t, out, res.Seal, newIDs[1:], tok.Module, tok.Serial, tok.UserPIN, imp)); err != nil {
		t.Fatal(err)
	}
	// Custodian a holds a share of generation 1 only.
	o := importOptions(t, out, res.Seal, []string{ids[0], newIDs[1]}, tok.Module, tok.Serial, tok.UserPIN, filepath.Join(dir, "imp-old"))
	o.Ceremony = []string{rec, out}
	_, err = Import(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "holds a share of generation 1 only; generation 2 superseded it") {
		t.Fatalf("old-generation share: %v", err)
	}
}
