package card

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestRetire: retiring an enrolled card's decryption key leaves a throwaway key in its slot, attested
// under the sim's root and named by a tombstone certificate; a file encrypted to the old key no longer
// opens on the card; the slot cannot be retired twice; a slot with another key than the one the checks
// allowed, or with no key, is left as it is.
func TestRetire(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[2]
	rec := enrolled(t, e, serial)
	c := openSim(t, e, serial)

	var sealed bytes.Buffer
	rcp, err := ParseRecipient(rec.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	w, err := age.Encrypt(&sealed, rcp)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "a share of an old generation")
	w.Close()

	ui := &testUI{pin: testPIN}
	opts := RetireOptions{Slot: rec.Decryption.Slot, OldKey: rec.Signing.PublicKey, RecordID: "0123", Rehearsal: true, PIN: PINOptions{UI: ui}, Prompt: "custos card retire, record 0123: the card will destroy its key"}
	if _, err := c.Retire(opts); err == nil || !contains(err, "nothing was changed") || len(ui.prompts) != 0 {
		t.Fatalf("retiring another key than the slot's: %v (prompts %q)", err, ui.prompts)
	}
	opts.OldKey = rec.Decryption.PublicKey
	r, err := c.Retire(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ui.prompts) != 1 || ui.prompts[0] != opts.Prompt {
		t.Errorf("PIN prompts %q", ui.prompts)
	}
	if bytes.Equal(r.NewKey, r.OldKey) || !bytes.Equal(r.OldKey, rec.Decryption.PublicKey) {
		t.Fatal("the retirement reports the old key as the slot's new one")
	}
	now, tomb, err := c.SlotKey(rec.Decryption.Slot)
	if err != nil || !tomb || !bytes.Equal(now, r.NewKey) {
		t.Fatalf("slot after retirement: tombstone %v, throwaway key there %v, %v", tomb, bytes.Equal(now, r.NewKey), err)
	}
	if ou := r.Tombstone.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != "REHEARSAL custos card retire, record 0123" {
		t.Errorf("tombstone OU %q", ou)
	}
	if !strings.HasPrefix(r.Tombstone.Subject.CommonName, "RETIRED: key SHA256:") || !bytes.Equal(r.Tombstone.RawSubjectPublicKeyInfo, r.NewKey) {
		t.Errorf("tombstone %q", r.Tombstone.Subject)
	}

	root, err := os.ReadFile(filepath.Join(simVars(e)["CUSTOS_SIM_DIR"], "attestation-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := RehearsalTrust(root)
	if err != nil {
		t.Fatal(err)
	}
	a, err := VerifyChain(r.Attestation, r.F9, trust)
	if err != nil {
		t.Fatal(err)
	}
	if a.Serial != serial || a.Slot != rec.Decryption.Slot || !bytes.Equal(a.PublicKey, r.NewKey) || a.PINPolicy != PINAlways {
		t.Errorf("attestation says %+v", a)
	}
	if !bytes.Contains(r.Proof(), []byte("BEGIN CERTIFICATE")) {
		t.Error("no proof PEM")
	}

	slots, err := c.Slots()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Slot == rec.Decryption.Slot && (s.Use != "other" || !strings.HasPrefix(s.Name, "RETIRED")) {
			t.Errorf("card list sees the retired slot as %s %q", s.Use, s.Name)
		}
	}

	id, err := c.Identity(ExpectedFromRecord(rec), PINOptions{UI: ui}, "open an old share")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := age.Decrypt(&sealed, id); err == nil {
		t.Fatal("a file encrypted to the retired key still opens")
	}

	if _, err := c.Retire(opts); !errors.Is(err, ErrRetired) || !contains(err, "retired already") {
		t.Fatalf("retiring twice: %v", err)
	}
	if _, err := c.Retire(RetireOptions{Slot: 0x90, PIN: PINOptions{UI: ui}}); !errors.Is(err, ErrRetired) || !contains(err, "holds no key") {
		t.Fatalf("retiring an empty slot: %v", err)
	}
}
