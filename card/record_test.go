package card

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age/plugin"

	"github.com/custos-pki/custos/internal/jcs"
)

func validRecord(t testing.TB) *Record {
	t.Helper()
	f9 := newVirtualRoot(t).issueF9(t, Firmware{5, 7, 4})
	s := spec("alice", 12345678)
	s.rehearsal = true
	return f9.enroll(t, s)
}

func TestRecordRoundTrip(t *testing.T) {
	r := validRecord(t)
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"decryption":{"attestation":"-----BEGIN CERTIFICATE-----\n`)) || !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("record file is not canonical JSON with a final newline:\n%s", b)
	}
	for _, want := range []string{`"format":"custos-custodian-v1"`, `"firmware":"5.7.4"`, `"slot":"82"`, `"slot":"9e"`,
		`"pin_policy":"once"`, `"touch_policy":"always"`, `"pin_policy":"never"`, `"serial":12345678`, `"recipient":"age1yubikey1`,
		`"identity":"AGE-PLUGIN-YUBIKEY-1`, `"f9_certificate":"-----BEGIN CERTIFICATE-----\n`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("record file lacks %s", want)
		}
	}
	got, err := ParseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip changed the record:\n got %+v\nwant %+v", got, r)
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("second Marshal differs (%v)", err)
	}
}

// TestRecordFixture parses the example record in testdata/attest (a virtual card's) and writes it
// back byte for byte.
func TestRecordFixture(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "attest", "custodian-rehearsal.json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("fixture does not re-marshal to itself (%v)", err)
	}
}

// identityWithExtra encodes an identity stub followed by extra payload bytes, which ParseStub
// ignores and a record must not carry.
func identityWithExtra(r *Record) string {
	st, _ := ParseStub(r.Identity)
	b := binary.LittleEndian.AppendUint32(nil, st.Serial)
	b = append(append(append(b, st.Slot), st.Tag[:]...), 0)
	return plugin.EncodeIdentity(pluginName, b)
}

func TestParseRecordRefuses(t *testing.T) {
	base := validRecord(t)
	other := validRecord(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(r *Record){
		"format":                   func(r *Record) { r.Format = "custos-custodian-v2" },
		"name":                     func(r *Record) { r.Name = "-alice" },
		"serial 0":                 func(r *Record) { r.Serial = 0 },
		"decryption slot 9a":       func(r *Record) { r.Decryption.Slot = 0x9a },
		"signing slot 9c":          func(r *Record) { r.Signing.Slot = 0x9c },
		"both keys in one slot":    func(r *Record) { r.Signing.Slot = r.Decryption.Slot },
		"another recipient":        func(r *Record) { r.Recipient = other.Recipient },
		"recipient in upper case":  func(r *Record) { r.Recipient = strings.ToUpper(r.Recipient) },
		"identity of another card": func(r *Record) { r.Identity = other.Identity },
		"identity, other serial":   func(r *Record) { r.Serial++ },
		"identity, other slot":     func(r *Record) { r.Decryption.Slot = 0x83 },
		"identity with extra":      func(r *Record) { r.Identity = identityWithExtra(r) },
		"decryption key not the recipient's": func(r *Record) {
			r.Decryption.PublicKey, r.Decryption.Attestation = other.Decryption.PublicKey, other.Decryption.Attestation
		},
		"signing key is the decryption key": func(r *Record) {
			r.Signing.PublicKey, r.Signing.Attestation = r.Decryption.PublicKey, r.Decryption.Attestation
		},
		"signing key P-384":                    func(r *Record) { r.Signing.PublicKey = p384DER },
		"signing key garbage":                  func(r *Record) { r.Signing.PublicKey = []byte{0x30, 0x03, 0x02, 0x01, 0x01} },
		"attestation of another key":           func(r *Record) { r.Signing.Attestation = other.Signing.Attestation },
		"attestation PEM with CRLF":            func(r *Record) { r.Signing.Attestation = strings.ReplaceAll(r.Signing.Attestation, "\n", "\r\n") },
		"attestation PEM with trailing text":   func(r *Record) { r.Signing.Attestation += "x" },
		"attestation PEM twice":                func(r *Record) { r.Signing.Attestation += r.Signing.Attestation },
		"attestation missing":                  func(r *Record) { r.Decryption.Attestation = "" },
		"F9 certificate missing":               func(r *Record) { r.F9Certificate = "" },
		"F9 certificate not a certificate PEM": func(r *Record) { r.F9Certificate = strings.ReplaceAll(r.F9Certificate, "CERTIFICATE", "PUBLIC KEY") },
	} {
		r := *base
		mutate(&r)
		b, err := jcs.Marshal(&r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := ParseRecord(b); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: got %v, want ErrMalformedRecord", name, err)
		}
		if _, err := r.Marshal(); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: Marshal: got %v, want ErrMalformedRecord", name, err)
		}
	}

	good, err := base.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"PIN policy unknown":   {`"pin_policy":"once"`, `"pin_policy":"sometimes"`},
		"touch policy unknown": {`"touch_policy":"always"`, `"touch_policy":"often"`},
		"firmware not minimal": {`"firmware":"5.7.4"`, `"firmware":"5.07.4"`},
		"firmware four parts":  {`"firmware":"5.7.4"`, `"firmware":"5.7.4.1"`},
		"slot in upper case":   {`"slot":"9e"`, `"slot":"9E"`},
		"slot as a number":     {`"slot":"82"`, `"slot":130`},
		"unknown field":        {`{"decryption"`, `{"comment":"x","decryption"`},
		"white space":          {`"format":`, `"format": `},
		"serial negative":      {`"serial":12345678`, `"serial":-12345678`},
		"serial above 2^32":    {`"serial":12345678`, `"serial":4294967296`},
		"base64 not canonical": {`"public_key":"`, `"public_key":"\n`},
	} {
		b := bytes.Replace(good, []byte(edit[0]), []byte(edit[1]), 1)
		if bytes.Equal(b, good) {
			t.Fatalf("%s: %s not found", name, edit[0])
		}
		if _, err := ParseRecord(b); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: got %v, want ErrMalformedRecord", name, err)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	r := validRecord(f)
	b, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":"custos-custodian-v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil {
			t.Fatalf("a parsed record does not marshal: %v", err)
		}
		if !bytes.Equal(bytes.TrimSuffix(again, []byte("\n")), bytes.TrimSuffix(b, []byte("\n"))) {
			t.Fatalf("a parsed record marshals to other bytes:\n%s\n%s", b, again)
		}
	})
}
