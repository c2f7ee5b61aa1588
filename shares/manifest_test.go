package shares

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/wrap"
)

// testManifest builds a signed 2-of-3 split manifest and returns it with its file, secret and shares.
func testManifest(t testing.TB) (*Manifest, []byte, []byte, []Share) {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	id := "0123456789abcdef0123456789abcdef"
	key, err := DeriveManifestKey(secret, id)
	if err != nil {
		t.Fatal(err)
	}
	kcv, _ := wrap.KCV(secret)
	m := &Manifest{
		Format: ManifestFormat, Kind: KindSplit, CeremonyID: id, Generation: 1,
		Created: "2026-11-26T12:00:00Z", Rehearsal: true, Threshold: 2, SecretSize: 32,
		SecretCheck: kcv.String(), ManifestKey: key.Public().(ed25519.PublicKey),
		RosterSHA: FileSHA256([]byte("roster")), Deviations: []string{},
	}
	split, _ := Split(secret, 3, 2)
	for i, name := range []string{"alice", "bob", "carol"} {
		m.Custodians = append(m.Custodians, Entry{
			Name: name, Recipient: "age1" + name, Kind: KindX25519,
			Share: ShareRef{File: "shares/" + name + ".age", X: int(split[i].X), Commitment: Commitment(id, 1, split[i].X, split[i].Y), FileSHA256: FileSHA256([]byte(name))},
			Check: CheckRef{File: "checks/" + name + ".age", FileSHA256: FileSHA256([]byte("c" + name)), ValueSHA256: FileSHA256([]byte("v" + name))},
		})
	}
	b, err := m.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return m, b, secret, split
}

func TestManifestRoundTrip(t *testing.T) {
	m, b, secret, _ := testManifest(t)
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := m.ManifestKeyFingerprint()
	if err := got.CheckPin(fp); err != nil {
		t.Fatal(err)
	}
	key, _ := DeriveManifestKey(secret, m.CeremonyID)
	if !bytes.Equal(key.Public().(ed25519.PublicKey), got.ManifestKey) {
		t.Fatal("the secret does not derive the manifest key")
	}
}

// TestManifestAnyFieldChanged changes every value in the manifest, one at a time, and expects the
// signature (or validation) to refuse each.
func TestManifestAnyFieldChanged(t *testing.T) {
	_, b, _, _ := testManifest(t)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var paths [][]any
	var walk func(v any, path []any)
	walk = func(v any, path []any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, append(append([]any{}, path...), k))
			}
		case []any:
			for i, e := range v {
				walk(e, append(append([]any{}, path...), i))
			}
		default:
			paths = append(paths, path)
		}
	}
	walk(doc["manifest"], []any{"manifest"})
	if len(paths) < 30 {
		t.Fatalf("only %d fields found", len(paths))
	}
	for _, p := range paths {
		var d map[string]any
		json.Unmarshal(b, &d)
		mutate(d, p)
		changed, err := jcs.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(changed); err == nil {
			t.Errorf("field %v changed: manifest accepted", p)
		}
	}
}

// mutate changes the leaf at path to a different value of the same type.
func mutate(doc map[string]any, path []any) {
	var parent any = doc
	for _, k := range path[:len(path)-1] {
		switch p := parent.(type) {
		case map[string]any:
			parent = p[k.(string)]
		case []any:
			parent = p[k.(int)]
		}
	}
	change := func(v any) any {
		switch v := v.(type) {
		case string:
			if v == "" {
				return "x"
			}
			return v[:len(v)-1] + string(rune(v[len(v)-1]^1))
		case float64:
			return v + 1
		case bool:
			return !v
		case nil:
			return map[string]any{}
		}
		return v
	}
	switch p := parent.(type) {
	case map[string]any:
		k := path[len(path)-1].(string)
		p[k] = change(p[k])
	case []any:
		i := path[len(path)-1].(int)
		p[i] = change(p[i])
	}
}

func TestManifestPinAndSignature(t *testing.T) {
	m, b, _, _ := testManifest(t)
	if err := m.CheckPin("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrManifestKeyPin) {
		t.Errorf("wrong pin: %v", err)
	}
	// Re-signed by another key: the signature verifies under the new key, the pin does not.
	fp, _ := m.ManifestKeyFingerprint()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	m2, _ := ParseManifest(b)
	m2.ManifestKey = pub
	b2, err := m2.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	m3, err := ParseManifest(b2)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.CheckPin(fp); !errors.Is(err, ErrManifestKeyPin) {
		t.Errorf("re-signed manifest passed the original pin: %v", err)
	}
	// A signature by another key over the same manifest.
	var sm signedManifest
	jcs.Unmarshal(b, &sm)
	in, _ := ManifestSigningInput(sm.Manifest)
	sm.Signature = ed25519.Sign(priv, in)
	b4, _ := jcs.Marshal(sm)
	if _, err := ParseManifest(b4); !errors.Is(err, ErrManifestSignature) {
		t.Errorf("foreign signature: %v", err)
	}
}

func TestCheckEnvelope(t *testing.T) {
	m, _, _, split := testManifest(t)
	e := m.Custodians[0]
	env := &Envelope{Format: EnvelopeFormat, CeremonyID: m.CeremonyID, Generation: 1, Custodian: e.Name, Threshold: 2, X: e.Share.X, Share: split[0].Y}
	if err := m.CheckEnvelope(e.Name, env); err != nil {
		t.Fatalf("the matching envelope: %v", err)
	}
	for name, mut := range map[string]func(*Envelope){
		"ceremony":   func(e *Envelope) { e.CeremonyID = "ffffffffffffffffffffffffffffffff" },
		"generation": func(e *Envelope) { e.Generation = 2 },
		"custodian":  func(e *Envelope) { e.Custodian = "bob" },
		"threshold":  func(e *Envelope) { e.Threshold = 3 },
		"x = 0":      func(e *Envelope) { e.X = 0 },
		"other x":    func(e *Envelope) { e.X = int(split[1].X) },
		"changed y":  func(e *Envelope) { e.Share = bytes.Clone(e.Share); e.Share[5] ^= 1 },
		"bob's y":    func(e *Envelope) { e.Share = split[1].Y },
	} {
		c := *env
		mut(&c)
		if err := m.CheckEnvelope(e.Name, &c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "envelope.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := e.Marshal()
	if !bytes.Equal(again, bytes.TrimSuffix(b, []byte("\n"))) {
		t.Fatal("envelope does not re-marshal to itself")
	}
	for name, bad := range map[string]string{
		"format": `{"ceremony_id":"x","custodian":"a","format":"custos-share-v2","generation":1,"share":"AAAAAAAAAAAAAAAAAAAAAA==","threshold":2,"x":1}`,
		"x>255":  `{"ceremony_id":"x","custodian":"a","format":"custos-share-v1","generation":1,"share":"AAAAAAAAAAAAAAAAAAAAAA==","threshold":2,"x":256}`,
		"size":   `{"ceremony_id":"x","custodian":"a","format":"custos-share-v1","generation":1,"share":"AAAA","threshold":2,"x":1}`,
	} {
		if _, err := ParseEnvelope([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "envelope.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		out, err := e.Marshal()
		if err != nil || !bytes.Equal(out, bytes.TrimSuffix(b, []byte("\n"))) {
			t.Fatalf("parsed envelope does not re-marshal to its input: %v", err)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("a parsed manifest does not validate: %v", err)
		}
	})
}

func TestSeedManifest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseManifest(b); err != nil {
		t.Fatal(err)
	}
}
