package card

import (
	"bytes"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/plugin"
	"github.com/go-piv/piv-go/v2/piv"

	"github.com/custos-pki/custos/internal/testenv"
)

// TestAgePluginSEVectorsOnCard: the private key behind age-plugin-se's piv-p256 vectors, imported into
// a virtual card, opens the vector's stanza through PC/SC: the card does the ECDH, not this process.
// (TestAgePluginSEVectors reproduces the stanzas byte for byte with the fixed ephemeral keys.)
func TestAgePluginSEVectorsOnCard(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[1]
	e.Fresh(t, serial)
	_, scalar, err := plugin.ParseIdentity("AGE-PLUGIN-SE-18YNMANPJKHE2ZAZJHRCKZKFXCT78YYWUTY0F730TMTZFV0CM9YHSRP8GPG")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(mustPKCS8(t, key))
	if err != nil {
		t.Fatal(err)
	}
	c := openSim(t, e, serial)
	slot, _ := piv.RetiredKeyManagementSlot(0x82)
	if err := c.yk.SetPrivateKeyInsecure(piv.DefaultManagementKey, slot, priv, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	before := e.Counters(t, serial)
	ui := &testUI{pin: DefaultPIN}
	id, err := c.Identity(Expected{Name: "se", Serial: serial, DecryptionSlot: 0x82, DecryptionKey: spki, PINPolicy: PINOnce, TouchPolicy: TouchNever}, PINOptions{UI: ui}, "vectors")
	if err != nil {
		t.Fatal(err)
	}
	if id.Recipient().String() != "age1yubikey1qf0l9gks6x65ha077wq3w3u8fy02tpg3cd9w5j0jlgpfgqkcut2lwujzwye" {
		t.Fatalf("recipient %s", id.Recipient())
	}
	lines := strings.Split("-> piv-p256 14yi6A Az7IeMpB4oX0CHt/Bc9xzk6x1K262zNxoUtfAikZa5T7\nSLgnrcnHLaJHCx+fwSEWWoflDgL91oDGCGNwb2YaT+4", "\n")
	body, err := base64.RawStdEncoding.DecodeString(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := id.Unwrap([]*age.Stanza{{Type: "piv-p256", Args: strings.Fields(lines[0])[2:], Body: body}})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := b64.DecodeString("AAAAAAAAAAAAAAAAAAAAAQ"); !bytes.Equal(got, want) {
		t.Errorf("unwrapped %x, want %x", got, want)
	}
	if n := e.Counters(t, serial).ByINS[0x87] - before.ByINS[0x87]; n != 1 {
		t.Errorf("%d GENERAL AUTHENTICATE on the card, want 1 (the ECDH)", n)
	}
}

func mustPKCS8(t *testing.T, k *ecdh.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgeCLIFileOpensOnCard: a file Debian's age CLI encrypted to an enrolled virtual card's
// age1yubikey1… recipient opens with custos's native card-backed identity through PC/SC.
func TestAgeCLIFileOpensOnCard(t *testing.T) {
	e := testenv.Sim(t)
	serial := e.Serials()[0]
	rec := enrolled(t, e, serial)
	plaintext := []byte("a share for the custodian\n")
	out, stderr, err := runAge(t, nil, plaintext, "-e", "-a", "-r", rec.Recipient)
	if err != nil {
		t.Fatalf("age -r: %v\n%s", err, stderr)
	}
	c := openSim(t, e, serial)
	x := ExpectedFromRecord(rec)
	if err := c.Liveness(x); err != nil {
		t.Fatal(err)
	}
	id, err := c.Identity(x, PINOptions{UI: &testUI{pin: testPIN}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := decryptNative(t, out, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Errorf("decrypted %q", got)
	}
}
