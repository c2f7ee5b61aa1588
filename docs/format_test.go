// Package docs holds custos's documentation. Its only code is tests. This one keeps format.md true:
// the key-rebuilding recipe runs on a real split with the real age CLI, the test vectors and byte
// layouts match the code, every member table matches what the code writes, and every format version
// string is documented. webtrust_test.go keeps webtrust.md and threat-model.md honest.
package docs

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("format.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// split is a real 3-of-5 rehearsal split to five software custodians.
type split struct {
	dir    string // the record directory
	keys   map[string]string
	secret []byte
	result *ceremony.SplitResult
}

var custodians = []string{"alice", "bob", "carol", "dave", "erin"}

func newSplit(t *testing.T) *split {
	t.Helper()
	dir := t.TempDir()
	s := &split{dir: filepath.Join(dir, "sp"), keys: map[string]string{}, secret: make([]byte, 32)}
	rand.Read(s.secret)
	var recipients []string
	for _, name := range custodians {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		s.keys[name] = filepath.Join(dir, name+".key")
		if err := os.WriteFile(s.keys[name], []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		recipients = append(recipients, name+"="+id.Recipient().String())
	}
	roster := filepath.Join(dir, "roster.json")
	if _, err := ceremony.CreateRoster(ceremony.RosterOptions{
		Threshold: 3, Recipients: recipients, AllowSoftware: true, Rehearsal: true, Out: roster,
	}); err != nil {
		t.Fatal(err)
	}
	res, err := ceremony.Split(ceremony.SplitOptions{
		Roster: roster, Rehearsal: true, Secret: bytes.Clone(s.secret), Out: s.dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.result = res
	return s
}

// decrypt opens a custodian's share or check file with the real age CLI, as format.md says, and
// returns the path of the plaintext.
func (s *split) decrypt(t *testing.T, ageCLI, name, file string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".json")
	cmd := exec.Command(ageCLI, "-d", "-i", s.keys[name], "-o", out, filepath.Join(s.dir, file))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d %s: %v\n%s", file, err, msg)
	}
	return out
}

// goBlock returns the one ```go block of format.md.
func goBlock(t *testing.T, doc string) string {
	t.Helper()
	blocks := regexp.MustCompile("(?ms)^```go\n(.*?)^```$").FindAllStringSubmatch(doc, -1)
	if len(blocks) != 1 {
		t.Fatalf("format.md has %d ```go blocks; want exactly one, the rebuild program", len(blocks))
	}
	return blocks[0][1]
}

// rebuildRunner writes the program of format.md to a directory of its own and returns a function
// running it with `go run rebuild.go ENVELOPE...`, as the recipe does.
func rebuildRunner(t *testing.T) func(envelopes ...string) (stdout, stderr string, err error) {
	t.Helper()
	goCmd := testenv.RequireTool(t, "go")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rebuild.go"), []byte(goBlock(t, readDoc(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(envelopes ...string) (string, string, error) {
		cmd := exec.Command(goCmd, append([]string{"run", "rebuild.go"}, envelopes...)...)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
}

// TestRebuildRecipe follows "Rebuilding a key by hand": three custodians of a real 3-of-5 split decrypt
// their share files with the stock age CLI, and the Go program of format.md rebuilds exactly the secret
// and names the manifest key that signed the manifest. Two shares, or one share twice, are refused.
func TestRebuildRecipe(t *testing.T) {
	ageCLI := testenv.RequireTool(t, "age")
	s := newSplit(t)
	env := map[string]string{}
	for _, name := range []string{"alice", "carol", "erin"} {
		env[name] = s.decrypt(t, ageCLI, name, "shares/"+name+".age")
	}
	run := rebuildRunner(t)

	stdout, stderr, err := run(env["alice"], env["carol"], env["erin"])
	if err != nil {
		t.Fatalf("rebuild with three shares: %v\n%s", err, stderr)
	}
	if want := hex.EncodeToString(s.secret) + "\n"; stdout != want {
		t.Errorf("rebuild printed %q, want the secret", stdout)
	}
	if want := "manifest key " + s.result.ManifestKey + "\n"; stderr != want {
		t.Errorf("rebuild said %q on stderr, want %q", stderr, want)
	}

	for _, c := range []struct {
		name      string
		envelopes []string
		why       string
	}{
		{"two shares", []string{env["alice"], env["erin"]}, "2 shares given; the threshold is 3"},
		{"one share twice", []string{env["alice"], env["carol"], env["alice"]}, "is given twice"},
	} {
		stdout, stderr, err := run(c.envelopes...)
		if err == nil || stdout != "" || !strings.Contains(stderr, c.why) {
			t.Errorf("%s: err %v, stdout %q, stderr %q; want a failure saying %q and nothing on stdout", c.name, err, stdout, stderr, c.why)
		}
	}
}

// TestRebuildShamirVector runs the program of format.md on envelopes holding the documented Shamir
// vector: every three of the five shares give the documented secret.
func TestRebuildShamirVector(t *testing.T) {
	v := vectors(t, readDoc(t))
	secret, xs, ys := shamirVector(t, v)
	dir := t.TempDir()
	var paths []string
	for i, x := range xs {
		e := &shares.Envelope{Format: shares.EnvelopeFormat, CeremonyID: "00112233445566778899aabbccddeeff",
			Generation: 1, Custodian: "c" + strconv.Itoa(x), Threshold: 3, X: x, Share: ys[i]}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, filepath.Join(dir, e.Custodian+".json"))
		if err := os.WriteFile(paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := rebuildRunner(t)
	for _, trio := range [][]int{{0, 1, 2}, {4, 2, 0}, {1, 3, 4}} {
		stdout, stderr, err := run(paths[trio[0]], paths[trio[1]], paths[trio[2]])
		if err != nil || stdout != hex.EncodeToString(secret)+"\n" {
			t.Errorf("shares %v: %v, stdout %q, stderr %q; want %x", trio, err, stdout, stderr, secret)
		}
	}
}

// TestFormatVersionsDocumented: every format version string in the code appears in format.md.
func TestFormatVersionsDocumented(t *testing.T) {
	doc := readDoc(t)
	for _, v := range []string{wrap.FileFormat, shares.EnvelopeFormat, shares.CheckTokenFormat,
		shares.ManifestFormat, shares.RosterFormat, ceremony.ReceiptFormat, card.RecordFormat, card.LiveFormat,
		ceremony.SealFormat, ceremony.HandoverFormat, ceremony.RetireReportFormat} {
		if !strings.Contains(doc, "`"+v+"`") {
			t.Errorf("format version %s is not documented in format.md", v)
		}
	}
}

// memberTables returns the member names of every "| member | type | contents |" table of format.md.
func memberTables(doc string) [][]string {
	var tables [][]string
	var cur []string
	in := false
	row := regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "| member |"):
			in, cur = true, nil
		case in && strings.HasPrefix(line, "|---"):
		case in && row.MatchString(line):
			cur = append(cur, row.FindStringSubmatch(line)[1])
		case in:
			tables = append(tables, cur)
			in = false
		}
	}
	return tables
}

// members returns the sorted member names of a JSON object.
func members(t *testing.T, what string, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var names []string
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := jcs.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMemberTables: for every JSON object the code writes there is a member table in format.md listing
// exactly its members, in canonical (sorted) order, and every member table is one of them.
func TestMemberTables(t *testing.T) {
	ageCLI := testenv.RequireTool(t, "age")
	s := newSplit(t)
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(s.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	envelope, err := os.ReadFile(s.decrypt(t, ageCLI, "bob", "shares/bob.age"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(s.decrypt(t, ageCLI, "bob", "checks/bob.age"))
	if err != nil {
		t.Fatal(err)
	}
	receiptPath := filepath.Join(t.TempDir(), "receipt.json")
	if _, err := ceremony.ShareCheck(ceremony.ShareCheckOptions{Ceremony: s.dir, Rehearsal: true,
		Identity: s.keys["bob"], Receipt: receiptPath}); err != nil {
		t.Fatal(err)
	}
	receipt, err := os.ReadFile(receiptPath)
	if err != nil {
		t.Fatal(err)
	}
	manifestFile := read("manifest.json")
	m, err := shares.ParseManifest(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	entry := marshal(t, m.Custodians[0])
	var e struct{ Share, Check json.RawMessage }
	if err := json.Unmarshal(entry, &e); err != nil {
		t.Fatal(err)
	}
	roster := read("roster.json")
	var r struct{ Custodians []json.RawMessage }
	if err := json.Unmarshal(roster, &r); err != nil {
		t.Fatal(err)
	}
	wrapped, err := (&wrap.File{KEKCheck: wrap.CheckValue{Alg: wrap.KCVCMAC, Value: make([]byte, 5)},
		Fingerprint: wrap.FingerprintBytes(nil), KeyAlg: "p256", Mechanism: "m", Blob: make([]byte, 24)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	recFile, err := os.ReadFile(filepath.Join("..", "card", "testdata", "attest", "custodian-rehearsal.json"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := card.ParseRecord(recFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(read(ceremony.TranscriptFile)), []byte("\n"))
	var sealLine struct {
		Actor json.RawMessage `json:"actor"`
		Facts struct {
			Body       json.RawMessage   `json:"body"`
			Signatures []json.RawMessage `json:"signatures"`
		} `json:"facts"`
	}
	if err := json.Unmarshal(lines[len(lines)-1], &sealLine); err != nil {
		t.Fatal(err)
	}
	objects := map[string][]byte{
		"transcript event": lines[0], "actor": marshal(t, ceremony.Actor{Role: "witness", Name: "w", Serial: 1}),
		"seal body": sealLine.Facts.Body, "seal signature": sealLine.Facts.Signatures[0],
		"handover":          marshal(t, ceremony.Handover{}),
		"retire report":     marshal(t, ceremony.RetireReport{}),
		"retired key":       marshal(t, ceremony.RetiredKey{}),
		"generation status": marshal(t, ceremony.GenerationStatus{}),
		"custodian record":  marshal(t, rec), "card key": marshal(t, rec.Decryption),
		"roster": roster, "roster member": r.Custodians[0], "share envelope": envelope,
		"check token": token, "manifest file": manifestFile, "manifest": marshal(t, m),
		"manifest entry": entry, "share reference": e.Share, "check reference": e.Check,
		"card": marshal(t, shares.CardInfo{}), "CA": marshal(t, shares.CAInfo{}),
		"previous": marshal(t, shares.PrevRef{}), "receipt": receipt,
		"receipt card": marshal(t, ceremony.ReceiptCard{}), "wrapped-key file": wrapped,
	}
	tables := memberTables(readDoc(t))
	used := make([]bool, len(tables))
	for what, b := range objects {
		want := members(t, what, b)
		i := slices.IndexFunc(tables, func(tab []string) bool { return slices.Equal(tab, want) })
		if i < 0 {
			t.Errorf("format.md has no member table for the %s, whose members are %v", what, want)
			continue
		}
		used[i] = true
	}
	for i, tab := range tables {
		if !used[i] {
			t.Errorf("format.md's member table %v matches no object the code writes", tab)
		}
	}
}

// TestManifestFileLayout checks the byte layout format.md gives for manifest.json, and the signature over
// "custos-manifest-v1\n" ‖ M, without the shares package's parser.
func TestManifestFileLayout(t *testing.T) {
	s := newSplit(t)
	b, err := os.ReadFile(filepath.Join(s.dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	const prefix, sigStart = `{"manifest":`, `,"signature":"`
	if !bytes.HasPrefix(b, []byte(prefix)) || len(b) < 12+105 {
		t.Fatalf("manifest.json does not start with %s", prefix)
	}
	inner, tail := b[12:len(b)-105], b[len(b)-105:]
	if !bytes.HasPrefix(tail, []byte(sigStart)) || !bytes.HasSuffix(tail, []byte("\"}\n")) {
		t.Fatalf("manifest.json does not end in %s ‖ 88 base64 characters ‖ \"}\\n: %q", sigStart, tail)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(string(tail[len(sigStart) : len(tail)-3]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		t.Fatalf("signature: %v", err)
	}
	if c, err := jcs.Canonicalize(inner); err != nil || !bytes.Equal(c, inner) {
		t.Fatalf("M is not canonical JSON: %v", err)
	}
	var m struct {
		ManifestKey []byte `json:"manifest_key"`
	}
	if err := json.Unmarshal(inner, &m); err != nil || len(m.ManifestKey) != ed25519.PublicKeySize {
		t.Fatalf("manifest_key: %v", err)
	}
	if !ed25519.Verify(m.ManifestKey, append([]byte("custos-manifest-v1\n"), inner...), sig) {
		t.Error("the signature does not verify over \"custos-manifest-v1\\n\" ‖ M")
	}
	spki := append(mustHex(t, "302a300506032b6570032100"), m.ManifestKey...)
	if fp := wrap.FingerprintBytes(spki); fp != s.result.ManifestKey {
		t.Errorf("fingerprint over the documented SPKI %s, split reported %s", fp, s.result.ManifestKey)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b
}

// vectors returns the "name = value" lines of the code blocks of format.md's "Test vectors" section.
func vectors(t *testing.T, doc string) map[string]string {
	t.Helper()
	_, sec, ok := strings.Cut(doc, "\n## Test vectors\n")
	if !ok {
		t.Fatal("format.md has no \"## Test vectors\" section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	v := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z0-9_.]+) = (\S+)$`).FindAllStringSubmatch(sec, -1) {
		if _, dup := v[m[1]]; dup {
			t.Fatalf("test vector %s given twice", m[1])
		}
		v[m[1]] = m[2]
	}
	return v
}

func get(t *testing.T, v map[string]string, name string) string {
	t.Helper()
	s, ok := v[name]
	if !ok {
		t.Fatalf("format.md has no test vector %s", name)
	}
	return s
}

// shamirVector returns the documented secret and its shares' points and values.
func shamirVector(t *testing.T, v map[string]string) ([]byte, []int, [][]byte) {
	t.Helper()
	secret := mustHex(t, get(t, v, "shamir.secret"))
	var xs []int
	var ys [][]byte
	for name, val := range v {
		if xs2, ok := strings.CutPrefix(name, "shamir.share."); ok {
			x, err := strconv.Atoi(xs2)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			xs, ys = append(xs, x), append(ys, mustHex(t, val))
		}
	}
	if len(xs) != 5 || get(t, v, "shamir.threshold") != "3" {
		t.Fatalf("want five shares of a 3-of-5 sharing, have %d", len(xs))
	}
	return secret, xs, ys
}

// TestVectors checks every test vector of format.md against the code, and the commitment layout as
// the document states it.
func TestVectors(t *testing.T) {
	v := vectors(t, readDoc(t))

	id := get(t, v, "commitment.ceremony_id")
	gen, err := strconv.Atoi(get(t, v, "commitment.generation"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := strconv.Atoi(get(t, v, "commitment.x"))
	if err != nil {
		t.Fatal(err)
	}
	share := mustHex(t, get(t, v, "commitment.share"))
	input := mustHex(t, get(t, v, "commitment.input"))
	layout := []byte("custos-share-commitment-v1\x00")
	layout = binary.BigEndian.AppendUint16(layout, uint16(len(id)))
	layout = append(layout, id...)
	layout = binary.BigEndian.AppendUint32(layout, uint32(gen))
	layout = append(layout, byte(x))
	layout = binary.BigEndian.AppendUint16(layout, uint16(len(share)))
	layout = append(layout, share...)
	if !bytes.Equal(layout, input) || len(input) != 68+len(share) {
		t.Errorf("commitment.input is not the documented layout:\n%x\n%x", input, layout)
	}
	sum := sha256.Sum256(input)
	want := get(t, v, "commitment")
	if hex.EncodeToString(sum[:]) != want || shares.Commitment(id, gen, byte(x), share) != want {
		t.Errorf("commitment: SHA-256 of the input %x, shares.Commitment %s, documented %s",
			sum, shares.Commitment(id, gen, byte(x), share), want)
	}

	secret := mustHex(t, get(t, v, "manifestkey.secret"))
	key, err := shares.DeriveManifestKey(secret, get(t, v, "manifestkey.ceremony_id"))
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := shares.ManifestKeyFingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	cmac, err := wrap.KCV(secret)
	if err != nil {
		t.Fatal(err)
	}
	ecb, err := wrap.LegacyKCV(secret)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{
		"manifestkey.seed":          hex.EncodeToString(key.Seed()),
		"manifestkey.public":        hex.EncodeToString(pub),
		"manifestkey.public_base64": base64.StdEncoding.EncodeToString(pub),
		"manifestkey.spki":          hex.EncodeToString(spki),
		"manifestkey.fingerprint":   fp,
		"checkvalue.cmac":           cmac.String(),
		"checkvalue.ecb":            ecb.String(),
	} {
		if want := get(t, v, name); got != want {
			t.Errorf("%s: code gives %s, format.md says %s", name, got, want)
		}
	}

	secret, xs, ys := shamirVector(t, v)
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			two := []shares.Share{{X: byte(xs[i]), Y: ys[i]}, {X: byte(xs[j]), Y: ys[j]}}
			if got, err := shares.Combine(two, 2); err != nil || bytes.Equal(got, secret) {
				t.Errorf("shares %d and %d alone give the secret (%v)", xs[i], xs[j], err)
			}
			for k := j + 1; k < len(xs); k++ {
				three := append(two, shares.Share{X: byte(xs[k]), Y: ys[k]})
				if got, err := shares.Combine(three, 3); err != nil || !bytes.Equal(got, secret) {
					t.Errorf("shares %d, %d, %d give %x (%v), want %x", xs[i], xs[j], xs[k], got, err, secret)
				}
			}
		}
	}
}
