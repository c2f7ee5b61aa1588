package card

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/plugin"
)

// The vectors below come from /work/shared/reference/age-piv-p256.md §1, §2 and §5: recipients
// published upstream and in issues, the age-plugin-se piv-p256 stanzas (written by Swift/CryptoKit,
// independent of this code), and a deterministic KAT.

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedEphemeral makes r use the given scalar as the ephemeral key of its next stanzas.
func fixedEphemeral(t testing.TB, r *Recipient, scalar []byte) {
	t.Helper()
	esk, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	r.ephemeral = func() (*ecdh.PrivateKey, error) { return esk, nil }
}

// stanzaText renders a one-line-body stanza as it appears in an age header.
func stanzaText(s *age.Stanza) string {
	return "-> " + s.Type + " " + strings.Join(s.Args, " ") + "\n" + base64.RawStdEncoding.EncodeToString(s.Body) + "\n"
}

func TestRecipientVectors(t *testing.T) {
	for _, v := range []struct{ recipient, point, tag string }{
		// age-plugin-yubikey tests/integration.rs
		{"age1yubikey1q2w7u3vpya839jxxuq8g0sedh3d740d4xvn639sqhr95ejj8vu3hyfumptt",
			"029dee4581274f12c8c6e00e87c32dbc5beabdb53327a89600b8cb4cca47672372", "7zyZ5Q"},
		// age-plugin-yubikey issue #43
		{"age1yubikey1qgqsp5z24ff2wkezx0x8vdsv7hwywhj68tp9m6hfchjuunlx8h5pzx33eal",
			"020100d04aaa52a75b2233cc76360cf5dc475e5a3ac25deae9c5e5ce4fe63de811", "/Ghj/w"},
		// FiloSottile/age#387 and AgePony #10 (points not recorded)
		{"age1yubikey1qggtmdsmnl6wncg22jw8lvfm2qd7s5k5x8rvg4yjfmurkj7g9wcmszcmpfh", "", "V5RkLg"},
		{"age1yubikey1qtlu4dlqkg0tg6nswpgmhw34vpszdeaffzp4f6fgpemlvxqcvzv35hnavmu", "", "ETDAmA"},
	} {
		r, err := ParseRecipient(v.recipient)
		if err != nil {
			t.Fatalf("%s: %v", v.recipient, err)
		}
		if len(v.recipient) != 71 {
			t.Errorf("%s: %d characters, want 71", v.recipient, len(v.recipient))
		}
		if v.point != "" && !bytes.Equal(r.compressed, mustHex(t, v.point)) {
			t.Errorf("%s: point %x, want %s", v.recipient, r.compressed, v.point)
		}
		if tag := r.Tag(); b64.EncodeToString(tag[:]) != v.tag {
			t.Errorf("%s: tag %s, want %s", v.recipient, b64.EncodeToString(tag[:]), v.tag)
		}
		if r.String() != v.recipient {
			t.Errorf("re-encoded as %s, want %s", r.String(), v.recipient)
		}
	}
}

func TestStubVectors(t *testing.T) {
	for _, v := range []struct {
		identity, payload string
		stub              Stub
	}{
		// reference §2: age-plugin-yubikey's Stub unit test values (serial 42, slot R1, tag [7;4])
		{"AGE-PLUGIN-YUBIKEY-19GQQQQYZQURSWPCKSHMQG", "2a0000008207070707", Stub{42, 0x82, [4]byte{7, 7, 7, 7}}},
		// reference §5 KAT: serial 12345678, slot 0x82
		{"AGE-PLUGIN-YUBIKEY-1FESMCQYZ63DRLGCHE9FHV", "4e61bc0082d45a3fa3", Stub{12345678, 0x82, [4]byte{0xd4, 0x5a, 0x3f, 0xa3}}},
	} {
		st, err := ParseStub(v.identity)
		if err != nil {
			t.Fatalf("%s: %v", v.identity, err)
		}
		if st != v.stub {
			t.Errorf("%s parsed as %+v, want %+v", v.identity, st, v.stub)
		}
		if st.String() != v.identity {
			t.Errorf("%+v encoded as %s, want %s", st, st.String(), v.identity)
		}
		if _, data, _ := plugin.ParseIdentity(v.identity); hex.EncodeToString(data) != v.payload {
			t.Errorf("%s payload %x, want %s", v.identity, data, v.payload)
		}
	}
}

// TestKAT checks every intermediate value of the reference's deterministic KAT and reproduces its
// stanza byte for byte with the fixed ephemeral key, then opens it through a software KeyExchanger.
func TestKAT(t *testing.T) {
	static := sha256.Sum256([]byte("age-plugin-yubikey KAT static key"))
	ephemeral := sha256.Sum256([]byte("age-plugin-yubikey KAT ephemeral key"))
	if hex.EncodeToString(static[:]) != "ee22b43f8d8897b517affbef2c54bad46c0634bf0cbd4148bc389e8c9decfb40" ||
		hex.EncodeToString(ephemeral[:]) != "7771d4d0ca36fe50a17e3dd9bf30adc6ff7e1a4ac263fa72148a7ad983924870" {
		t.Fatal("KAT scalars differ from the reference")
	}
	key, err := ecdh.P256().NewPrivateKey(static[:])
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(key, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r := id.Recipient()
	if got := hex.EncodeToString(r.compressed); got != "036a3434254c0ed4c5076884ccf5430c5cb83cf64092e1a95e9da014aa06f64175" {
		t.Errorf("recipient point %s", got)
	}
	if got := r.String(); got != "age1yubikey1qd4rgdp9fs8df3g8dzzvea2rp3wts08kgzfwr227nkspf2sx7eqh2svc6rh" {
		t.Errorf("recipient %s", got)
	}
	if tag := r.Tag(); hex.EncodeToString(tag[:]) != "d45a3fa3" || b64.EncodeToString(tag[:]) != "1Fo/ow" {
		t.Errorf("tag %x", tag)
	}
	st, err := NewStub(12345678, 0x82, r)
	if err != nil {
		t.Fatal(err)
	}
	if st.String() != "AGE-PLUGIN-YUBIKEY-1FESMCQYZ63DRLGCHE9FHV" {
		t.Errorf("identity %s", st)
	}

	esk, err := ecdh.P256().NewPrivateKey(ephemeral[:])
	if err != nil {
		t.Fatal(err)
	}
	epk := mustHex(t, "02ca3f32a770d125dd3f5f39612e6617c1b9d7a9657fd9c009e607dce0e9488dff")
	shared, err := key.ECDH(esk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(shared); got != "0fcef47c4d509228f98b265bcebc2db3f03404e9bf96005fd28fd7d876ca1fc0" {
		t.Errorf("ECDH x coordinate %s", got)
	}
	wrapKey, err := pivP256Key(shared, epk, r.compressed)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(wrapKey); got != "60a5c2f8298e7ba0ad395c588f061c572eefb44098774fbe5ab2457dd969b91d" {
		t.Errorf("wrap key %s", got)
	}
	if !bytes.Equal(shared, make([]byte, 32)) {
		t.Error("pivP256Key left the shared secret in memory")
	}

	fixedEphemeral(t, r, ephemeral[:])
	fileKey := mustHex(t, "000102030405060708090a0b0c0d0e0f")
	stanzas, err := r.Wrap(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	const want = "-> piv-p256 1Fo/ow Aso/Mqdw0SXdP185YS5mF8G516llf9nACeYH3ODpSI3/\nKdLoUWLrxnprX1FSfyNFpa3aRITah+NGRzMfdoZRJpM\n"
	if len(stanzas) != 1 || stanzaText(stanzas[0]) != want {
		t.Fatalf("stanza\n%s\nwant\n%s", stanzaText(stanzas[0]), want)
	}
	got, err := id.Unwrap(stanzas)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fileKey) {
		t.Errorf("unwrapped %x, want %x", got, fileKey)
	}
}

// TestAgePluginSEVectors reproduces both piv-p256 stanzas of age-plugin-se byte for byte and opens
// the first with the private key behind it (the payload of its AGE-PLUGIN-SE identity).
func TestAgePluginSEVectors(t *testing.T) {
	fileKey, err := b64.DecodeString("AAAAAAAAAAAAAAAAAAAAAQ")
	if err != nil {
		t.Fatal(err)
	}
	_, scalar, err := plugin.ParseIdentity("AGE-PLUGIN-SE-18YNMANPJKHE2ZAZJHRCKZKFXCT78YYWUTY0F730TMTZFV0CM9YHSRP8GPG")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []struct{ se, yubikey, ephemeral, stanza string }{
		{"age1se1qf0l9gks6x65ha077wq3w3u8fy02tpg3cd9w5j0jlgpfgqkcut2lw6hta9l",
			"age1yubikey1qf0l9gks6x65ha077wq3w3u8fy02tpg3cd9w5j0jlgpfgqkcut2lwujzwye",
			"N2WRutxd1Ed0l4piqArI2gKYSTG7peE8BYBrLLV7YjQ",
			"-> piv-p256 14yi6A Az7IeMpB4oX0CHt/Bc9xzk6x1K262zNxoUtfAikZa5T7\nSLgnrcnHLaJHCx+fwSEWWoflDgL91oDGCGNwb2YaT+4\n"},
		{"age1se1q0mm28s88km3d8fvwve26xg4tt26cqamhxm79g9xvmw0f2erawj752upj6l",
			"age1yubikey1q0mm28s88km3d8fvwve26xg4tt26cqamhxm79g9xvmw0f2erawj75vegpme",
			"3naom0zZxBZcSZCfoNzyjLVmG6hyRKX8bCU3wukusFI",
			"-> piv-p256 1mgwOA A1x2nUpw2wo/7z0JR5puskK6NuvW5XkQBwkun/T3WC80\n9NGkkBZykDMgw6dndbbjnn7DQBalVV4sVIurWku030Y\n"},
	} {
		_, sePoint, err := plugin.ParseRecipient(v.se)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseRecipient(v.yubikey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.compressed, sePoint) {
			t.Fatalf("vector %d: %s and %s hold different points", i, v.se, v.yubikey)
		}
		esk, err := base64.RawStdEncoding.DecodeString(v.ephemeral)
		if err != nil {
			t.Fatal(err)
		}
		fixedEphemeral(t, r, esk)
		stanzas, err := r.Wrap(fileKey)
		if err != nil {
			t.Fatal(err)
		}
		if got := stanzaText(stanzas[0]); got != v.stanza {
			t.Errorf("vector %d: stanza\n%s\nwant\n%s", i, got, v.stanza)
		}
		if i != 0 {
			continue
		}
		id, err := NewIdentity(key, key.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if id.Recipient().String() != v.yubikey {
			t.Fatalf("AGE-PLUGIN-SE key is %s, want %s", id.Recipient(), v.yubikey)
		}
		// Open the vector's own text, not what Wrap produced.
		lines := strings.Split(v.stanza, "\n")
		body, err := base64.RawStdEncoding.DecodeString(lines[1])
		if err != nil {
			t.Fatal(err)
		}
		s := &age.Stanza{Type: "piv-p256", Args: strings.Fields(lines[0])[2:], Body: body}
		got, err := id.Unwrap([]*age.Stanza{s})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, fileKey) {
			t.Errorf("unwrapped %x, want %x", got, fileKey)
		}
	}
}
