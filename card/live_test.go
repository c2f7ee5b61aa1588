package card

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/card/sim"
	"github.com/custos-pki/custos/internal/testenv"
)

// TestLivenessRefusesAnotherCard: a different virtual card given the same serial (card B's keys under
// card A's serial) fails liveness against A's record, and no VERIFY carrying a PIN reaches it.
func TestLivenessRefusesAnotherCard(t *testing.T) {
	e := testenv.Sim(t)
	a, b := e.Serials()[2], e.Serials()[3]
	recA := enrolled(t, e, a)
	enrolled(t, e, b)
	e.EditCard(t, a, b, func(map[string]any) {})
	before := e.Counters(t, a).PINVerifies

	ui := &testUI{pin: testPIN}
	c := openSim(t, e, a)
	if c.Serial() != a {
		t.Fatalf("the impostor answers serial %d, want %d", c.Serial(), a)
	}
	x := ExpectedFromRecord(recA)
	err := c.Liveness(x)
	if !errors.Is(err, ErrNotLive) || !contains(err, "no PIN was sent") {
		t.Fatalf("Liveness = %v, want ErrNotLive", err)
	}
	c.Close()
	if got := e.Counters(t, a).PINVerifies; got != before {
		t.Errorf("%d PIN-carrying VERIFY reached the impostor", got-before)
	}
	if len(ui.prompts) != 0 {
		t.Errorf("PIN asked: %q", ui.prompts)
	}

	// The genuine card passes, and its signer's signatures verify under the attested key.
	e.UseState(t, a, "enrolled", nil)
	c = openSim(t, e, a)
	if err := c.Liveness(x); err != nil {
		t.Fatal(err)
	}
	s := c.Signer(x)
	msg := []byte("custos-receipt-v1\n{}")
	sig, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := parseP256SPKI(x.SigningKey)
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, d[:], sig) || s.Name() != fmt.Sprintf("card:%d", a) {
		t.Errorf("signer %s: signature does not verify", s.Name())
	}
}

// TestCardDecryption: under PIN policy once, one card opened once decrypts several files (piv-p256 and
// p256tag stanzas) with exactly one PIN-carrying VERIFY; the APDUs of one share decryption, liveness
// and opening included, stay within 10 (docs/performance.md); the prompt names the flow, the record
// and what the card will do, and the touch is asked for.
func TestCardDecryption(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[2]
	rec := enrolled(t, e, serial)
	x := ExpectedFromRecord(rec)
	rcp, err := ParseRecipient(rec.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	tagRcp, err := rcp.TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for i, msg := range []string{"share", "check token", "a p256tag file"} {
		var to age.Recipient = rcp
		if i == 2 {
			to = tagRcp // age1tag1…: HPKE with the card as the key exchanger
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, to)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		w.Close()
		files = append(files, buf.Bytes())
	}
	before := e.Counters(t, serial)
	ui := &testUI{pin: testPIN}
	c := openSim(t, e, serial)
	if err := c.Liveness(x); err != nil {
		t.Fatal(err)
	}
	id, err := c.Identity(x, PINOptions{UI: ui}, "custos combine, record R: PIN of YubiKey; the card will decrypt its share")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decryptNative(t, files[0], id); err != nil {
		t.Fatal(err)
	}
	one := e.Counters(t, serial)
	apdus := total(one) - total(before)
	t.Logf("APDUs for one share decryption (open, liveness, PIN, ECDH): %d", apdus)
	if apdus > 10 {
		t.Errorf("%d APDUs for one share decryption, target at most 10: %v", apdus, one.ByINS)
	}
	for i, f := range files[1:] {
		got, err := decryptNative(t, f, id)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && string(got) != "a p256tag file" {
			t.Errorf("p256tag file decrypted to %q", got)
		}
	}
	if n := e.Counters(t, serial).PINVerifies - before.PINVerifies; n != 1 {
		t.Errorf("%d PIN-carrying VERIFYs for three decryptions under PIN policy once, want 1", n)
	}
	if len(ui.prompts) != 1 || !stringsHave(ui.prompts[0], "custos combine", "record R", "decrypt its share") {
		t.Errorf("prompts %q", ui.prompts)
	}
	if len(ui.messages) != 3 || !contains(errors.New(ui.messages[0]), "Touch YubiKey") {
		t.Errorf("touch messages %q", ui.messages)
	}
}

// total counts a card's command APDUs.
func total(c sim.Counters) uint64 {
	var n uint64
	for _, v := range c.ByINS {
		n += v
	}
	return n
}
