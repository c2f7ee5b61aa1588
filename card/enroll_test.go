package card

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestEnrollRecord: an enrolled virtual card's record verifies under the sim's root and passes the
// policy; the card no longer has the default PIN or management key, and stores its new management key
// PIN-protected; card list sees both keys.
func TestEnrollRecord(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[0]
	rec := enrolled(t, e, serial)
	root, err := os.ReadFile(filepath.Join(simVars(e)["CUSTOS_SIM_DIR"], "attestation-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := RehearsalTrust(root)
	if err != nil {
		t.Fatal(err)
	}
	dec, sig, err := VerifyRecord(rec, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPolicy(rec, dec, sig, Policy{Rehearsal: true}); err != nil {
		t.Fatal(err)
	}
	if rec.Decryption.Slot != 0x82 || rec.Signing.Slot != SlotCardAuthentication || rec.Decryption.PINPolicy != PINOnce || rec.Decryption.TouchPolicy != TouchAlways {
		t.Errorf("record slots and policies: %+v / %+v", rec.Decryption, rec.Signing)
	}

	c := openSim(t, e, serial)
	slots, err := c.Slots()
	if err != nil {
		t.Fatal(err)
	}
	uses := map[Slot]string{}
	for _, s := range slots {
		uses[s.Slot] = s.Use
	}
	if uses[0x82] != "age" || uses[SlotCardAuthentication] != "custos-signing" || len(uses) != 2 {
		t.Errorf("card list sees %v", uses)
	}
	if err := c.yk.SetManagementKey(piv.DefaultManagementKey, piv.DefaultManagementKey); err == nil {
		t.Error("the default management key still works")
	}
	m, err := c.yk.Metadata(testPIN)
	if err != nil || m.ManagementKey == nil || len(*m.ManagementKey) != 24 {
		t.Fatalf("PIN-protected management key: %v, %v", m, err)
	}
	if err := c.yk.SetManagementKey(*m.ManagementKey, *m.ManagementKey); err != nil {
		t.Errorf("the PIN-protected management key is not the card's: %v", err)
	}
	if err := c.yk.VerifyPIN(DefaultPIN); err == nil {
		t.Error("the default PIN still works")
	}
}

// TestEnrollNeverDestroys: a key without a certificate in slot 82 makes enroll use 83; --slot 1 there
// is refused without --force; --force replaces it only after the typed confirmation; a 5.2 card (no
// GET METADATA) needs --force.
func TestEnrollNeverDestroys(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[1]
	e.Fresh(t, serial)
	c := openSim(t, e, serial)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	slot82, _ := piv.RetiredKeyManagementSlot(0x82)
	if err := c.yk.SetPrivateKeyInsecure(piv.DefaultManagementKey, slot82, k, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Fatal(err)
	}
	opts := func(slot int, force bool, ui *testUI) EnrollOptions {
		return EnrollOptions{Name: "careful", Slot: slot, Force: force, Rehearsal: true, PIN: PINOptions{UI: ui},
			NewCredentials: func(uint32) ([]byte, []byte, error) { return []byte(testPIN), []byte(testPUK), nil },
			ConfirmReplace: func(prompt, answer string) (bool, error) {
				ui.prompts = append(ui.prompts, prompt)
				return ui.confirm, nil
			}}
	}
	ui := &testUI{pin: DefaultPIN}
	if _, err := Enroll(c, opts(1, false, ui)); !errors.Is(err, ErrNeedsForce) || !contains(err, "key-without-certificate") {
		t.Fatalf("--slot 1 over a key without certificate: %v", err)
	}
	if _, err := Enroll(c, opts(1, true, ui)); err == nil || !contains(err, "not confirmed") || len(ui.prompts) != 1 || !stringsHave(ui.prompts[0], "DESTROYED", "replace 82") {
		t.Fatalf("--force without confirmation: %v (prompts %q)", err, ui.prompts)
	}
	rec, err := Enroll(c, opts(0, false, ui))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decryption.Slot != 0x83 {
		t.Errorf("enroll used slot %v, want 83 (82 holds a key without a certificate)", rec.Decryption.Slot)
	}
	ki, err := c.yk.KeyInfo(slot82)
	if err != nil || !ki.PublicKey.(*ecdsa.PublicKey).Equal(&k.PublicKey) {
		t.Errorf("the key in slot 82 changed: %v", err)
	}
	c.Close()

	// The same card as a 5.2: enroll cannot see keys without certificates and asks for --force.
	e.Fresh(t, serial)
	e.EditCard(t, serial, serial, func(st map[string]any) { st["profile"] = "5.2" })
	c = openSim(t, e, serial)
	if c.Firmware()[1] != 2 {
		t.Fatalf("firmware %v, want 5.2", c.Firmware())
	}
	if _, err := Enroll(c, opts(0, false, &testUI{pin: DefaultPIN})); !errors.Is(err, ErrNeedsForce) || !contains(err, "no GET METADATA") {
		t.Fatalf("5.2 card without --force: %v", err)
	}
	if c.yk.VerifyPIN(DefaultPIN) != nil {
		t.Error("the refusal changed the 5.2 card's PIN")
	}
	rec, err = Enroll(c, opts(0, true, &testUI{pin: DefaultPIN}))
	if err != nil {
		t.Fatalf("5.2 card with --force: %v", err)
	}
	if rec.Firmware[1] != 2 || rec.Decryption.Slot != 0x82 {
		t.Errorf("5.2 record: firmware %v, slot %v", rec.Firmware, rec.Decryption.Slot)
	}
}

func stringsHave(s string, subs ...string) bool {
	for _, sub := range subs {
		if !contains(errors.New(s), sub) {
			return false
		}
	}
	return true
}
