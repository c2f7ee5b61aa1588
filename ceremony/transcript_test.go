package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// sealedRecord makes a rehearsal split record with a transcript of a few events, sealed by its manifest
// key, and returns its directory, seal and manifest key.
func sealedRecord(t *testing.T, dir, link string) (string, string, ed25519.PrivateKey) {
	t.Helper()
	var recips []string
	for _, n := range []string{"a", "b", "c"} {
		id, _ := age.GenerateX25519Identity()
		recips = append(recips, n+"="+id.Recipient().String())
	}
	roster := filepath.Join(dir, "roster.json")
	if _, err := os.Stat(roster); err != nil {
		if _, err := CreateRoster(RosterOptions{Threshold: 2, Recipients: recips, AllowSoftware: true, Rehearsal: true, Out: roster}); err != nil {
			t.Fatal(err)
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	rec := filepath.Join(dir, "rec-"+randName())
	res, err := Split(SplitOptions{Roster: roster, Rehearsal: true, Secret: secret, Out: rec})
	if err != nil {
		t.Fatal(err)
	}
	// The split's own record verifies; then its transcript is replaced by one that links link.
	vr, err := VerifyRecord(rec)
	if err != nil {
		t.Fatalf("split record: %v", err)
	}
	if vr.Seal != res.Seal {
		t.Fatalf("split record seal %s, split said %s", vr.Seal, res.Seal)
	}
	os.Remove(filepath.Join(rec, TranscriptFile))
	tr, err := BeginTranscript(filepath.Join(rec, TranscriptFile), "split", res.CeremonyID, link, Facts{"custos": "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"pins", "shares", "manifest"} {
		if err := tr.Append(step, Actor{Role: "operator", Name: "olivia"}, Facts{"n": 1, "what": step}); err != nil {
			t.Fatal(err)
		}
	}
	files, err := RecordFiles(rec)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := shares.DeriveManifestKey(secret, res.CeremonyID)
	seal, err := tr.Seal(SealBody{Generation: 1, Outcome: OutcomeSuccess, Files: files}, ManifestKeySigner(key))
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	return rec, seal, key
}

func randName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestTranscriptVerifies(t *testing.T) {
	rec, seal, _ := sealedRecord(t, t.TempDir(), "")
	vr, err := VerifyRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Seal != seal || vr.Outcome != OutcomeSuccess || len(vr.Events) != 5 || vr.Signers[0] != SignerManifestKey {
		t.Fatalf("verified %+v", vr)
	}
	if _, err := VerifyRecords([]string{rec}, seal); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRecords([]string{rec}, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrPin) {
		t.Fatalf("wrong --expect-seal: %v", err)
	}
}

// TestTranscriptTamper: any line changed, deleted, swapped or appended; a recomputed chain with a forged
// seal signature; a changed, added or removed file. Each is refused, naming the line or file.
func TestTranscriptTamper(t *testing.T) {
	dir := t.TempDir()
	rec, _, _ := sealedRecord(t, dir, "")
	orig, _ := os.ReadFile(filepath.Join(rec, TranscriptFile))
	lines := bytes.SplitAfter(orig, []byte("\n"))
	lines = lines[:len(lines)-1]
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	for name, c := range map[string]struct {
		transcript []byte
		want       string
	}{
		"line changed":  {join(lines[0], lines[1], bytes.Replace(lines[2], []byte(`"olivia"`), []byte(`"oliver"`), 1), lines[3], lines[4]), "line 4: does not chain to line 3"},
		"line deleted":  {join(lines[0], lines[1], lines[3], lines[4]), "line 3: sequence 3, want 2"},
		"lines swapped": {join(lines[0], lines[2], lines[1], lines[3], lines[4]), "line 2: sequence 2, want 1"},
		"line appended": {join(lines[0], lines[1], lines[2], lines[3], lines[4], lines[1]), "line 5: events follow the seal"},
		"seal removed":  {join(lines[0], lines[1], lines[2], lines[3]), "line 4: the transcript does not end in a seal"},
		"forged seal":   {forgeSeal(t, lines), "line 5: signature of manifest-key"},
		"not canonical": {join(lines[0], bytes.Replace(lines[1], []byte(`{"actor"`), []byte(`{ "actor"`), 1), lines[2], lines[3], lines[4]), "line 2: not a canonical transcript event"},
	} {
		d := copyRecord(t, rec, filepath.Join(dir, strings.ReplaceAll(name, " ", "-")))
		os.WriteFile(filepath.Join(d, TranscriptFile), c.transcript, 0o600)
		_, err := VerifyRecord(d)
		if !errors.Is(err, ErrTranscript) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	for name, c := range map[string]struct {
		mutate func(d string)
		want   string
	}{
		"file changed": {func(d string) { flip(t, filepath.Join(d, "roster.json")) }, "roster.json differs from the SHA-256 in the seal"},
		"file added":   {func(d string) { os.WriteFile(filepath.Join(d, "extra"), []byte("x"), 0o600) }, "extra is not listed in the seal"},
		"file removed": {func(d string) { os.Remove(filepath.Join(d, "checks", "b.age")) }, "checks/b.age is missing"},
	} {
		d := copyRecord(t, rec, filepath.Join(dir, strings.ReplaceAll(name, " ", "-")))
		c.mutate(d)
		_, err := VerifyRecord(d)
		if !errors.Is(err, ErrTranscript) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// forgeSeal re-signs the seal with another key, keeping the manifest's key in the signature's place: the
// hashes are all valid, only the signature is forged.
func forgeSeal(t *testing.T, lines [][]byte) []byte {
	var e Event
	if err := jcs.Unmarshal(lines[4], &e); err != nil {
		t.Fatal(err)
	}
	var sf sealFacts
	b, _ := jcs.Marshal(e.Facts)
	jcs.Unmarshal(b, &sf)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	in, _ := SealSigningInput(&sf.Body)
	sf.Signatures[0].Signature = ed25519.Sign(other, in)
	e.Facts = Facts{"body": sf.Body, "signatures": sf.Signatures}
	line, _ := jcs.Marshal(e)
	return append(bytes.Join(lines[:4], nil), append(line, '\n')...)
}

// TestTranscriptSignerMustBeManifestKey: a seal validly signed by another key is refused for a record
// that holds a manifest.
func TestTranscriptSignerMustBeManifestKey(t *testing.T) {
	dir := t.TempDir()
	rec, _, _ := sealedRecord(t, dir, "")
	d := copyRecord(t, rec, filepath.Join(dir, "other-signer"))
	raw, _ := os.ReadFile(filepath.Join(d, TranscriptFile))
	lines := bytes.SplitAfter(raw, []byte("\n"))
	var e Event
	jcs.Unmarshal(lines[4], &e)
	var sf sealFacts
	b, _ := jcs.Marshal(e.Facts)
	jcs.Unmarshal(b, &sf)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	s := ManifestKeySigner(other)
	in, _ := SealSigningInput(&sf.Body)
	sf.Signatures[0].PublicKey, _ = s.PublicKey()
	sf.Signatures[0].Signature, _ = s.Sign(in)
	e.Facts = Facts{"body": sf.Body, "signatures": sf.Signatures}
	line, _ := jcs.Marshal(e)
	os.WriteFile(filepath.Join(d, TranscriptFile), append(bytes.Join(lines[:4], nil), append(line, '\n')...), 0o600)
	if _, err := VerifyRecord(d); err == nil || !strings.Contains(err.Error(), "signed by a key other than the manifest's") {
		t.Fatalf("%v", err)
	}
}

// TestRecordChain: records verify as a chain only with every link present and in order.
func TestRecordChain(t *testing.T) {
	dir := t.TempDir()
	r1, s1, _ := sealedRecord(t, dir, "")
	r2, s2, _ := sealedRecord(t, dir, s1)
	r3, s3, _ := sealedRecord(t, dir, s2)
	if _, err := VerifyRecords([]string{r1, r2, r3}, s3); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRecords([]string{r1, r3}, s3); err == nil || !strings.Contains(err.Error(), "does not link the seal") {
		t.Fatalf("middle record left out: %v", err)
	}
	if _, err := VerifyRecords([]string{r2, r1}, ""); err == nil {
		t.Fatal("records out of order accepted")
	}
}

func copyRecord(t *testing.T, from, to string) string {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func flip(t *testing.T, p string) {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o600)
}

// TestShareCheckOfBackupNeedsSeal: in production, the share check of a CA key backup is pinned by the
// record's latest seal; the manifest key alone is refused.
func TestShareCheckOfBackupNeedsSeal(t *testing.T) {
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	id := "00112233445566778899aabbccddeeff"
	key, _ := shares.DeriveManifestKey(secret, id)
	kcv, _ := wrap.KCV(secret)
	h := strings.Repeat("ab", 32)
	m := &shares.Manifest{Format: shares.ManifestFormat, Kind: shares.KindCeremony, CeremonyID: id, Generation: 1,
		Created: "2026-11-26T00:00:00Z", Threshold: 2, SecretSize: 32, SecretCheck: kcv.String(),
		ManifestKey: key.Public().(ed25519.PublicKey), RosterSHA: h, Deviations: []string{},
		CA: &shares.CAInfo{KeyAlg: "p256", Fingerprint: "SHA256:x", WrappedSHA256: h, PublicKeySHA256: h}}
	for i, n := range []string{"a", "b"} {
		m.Custodians = append(m.Custodians, shares.Entry{Name: n, Recipient: "age1" + n, Kind: shares.KindX25519,
			Share: shares.ShareRef{File: "shares/" + n + ".age", X: i + 1, Commitment: h, FileSHA256: h},
			Check: shares.CheckRef{File: "checks/" + n + ".age", FileSHA256: h, ValueSHA256: h}})
	}
	b, err := m.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o600)
	fp, _ := m.ManifestKeyFingerprint()
	_, err = ShareCheck(ShareCheckOptions{Ceremony: dir, ExpectManifestKey: fp, Identity: "unused"})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "pinned by the record's latest seal") {
		t.Fatalf("%v", err)
	}
}
