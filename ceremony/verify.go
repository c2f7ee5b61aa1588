package ceremony

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// ErrTranscript marks a transcript or record that does not verify.
var ErrTranscript = errors.New("record does not verify")

// VerifiedRecord is a record whose transcript chain, seal, files and signatures verified.
type VerifiedRecord struct {
	Dir      string           `json:"dir"`
	RecordID string           `json:"record_id"`
	Flow     string           `json:"flow"`
	Seal     string           `json:"seal"`
	Link     string           `json:"link"`
	Outcome  string           `json:"outcome"`
	Events   []Event          `json:"-"`
	Body     SealBody         `json:"-"`
	Signers  []string         `json:"signers"`
	Manifest *shares.Manifest `json:"-"`
	// Previous is the manifest this record's generation superseded (reshare, rekey), if it holds one.
	Previous *shares.Manifest `json:"-"`
	// Handover is a rekey's statement, verified under the previous manifest key.
	Handover *Handover `json:"handover,omitempty"`
}

// sealEvent is the seal line's facts, parsed.
type sealFacts struct {
	Body       SealBody        `json:"body"`
	Signatures []SealSignature `json:"signatures"`
}

// VerifyRecord checks one record directory: every transcript line canonical and chained to the one
// before, the first a begin and the last a seal; every file of the record listed in the seal with its
// SHA-256 and no other file present; every signature valid, the manifest key's under the record's
// manifest and each card's under the signing key the manifest pins for that serial. A successful record
// must be signed by its manifest key when it holds a manifest. The error names the first bad line or file.
func VerifyRecord(dir string) (*VerifiedRecord, error) {
	path := filepath.Join(dir, TranscriptFile)
	raw, err := readLimited(path, maxRecordFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTranscript, err)
	}
	bad := func(n int, format string, a ...any) error {
		return fmt.Errorf("%w: %s line %d: %s", ErrTranscript, path, n, fmt.Sprintf(format, a...))
	}
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		return nil, fmt.Errorf("%w: %s is empty or its last line is cut", ErrTranscript, path)
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	lines = lines[:len(lines)-1] // after the last newline
	vr := &VerifiedRecord{Dir: dir}
	prev := ""
	for i, line := range lines {
		n := i + 1
		var e Event
		if err := jcs.Unmarshal(line, &e); err != nil {
			return nil, bad(n, "not a canonical transcript event: %v", err)
		}
		switch {
		case e.Seq != i:
			return nil, bad(n, "sequence %d, want %d (a line was removed, added or moved)", e.Seq, i)
		case e.Prev != prev:
			return nil, bad(n, "does not chain to line %d (its hash of the line before differs)", n-1)
		case i == 0 && e.Step != "begin":
			return nil, bad(n, "the first event is %q, want begin", e.Step)
		case i > 0 && e.Flow != vr.Flow:
			return nil, bad(n, "flow %q in a %q record", e.Flow, vr.Flow)
		case e.Step == "seal" && i != len(lines)-1:
			return nil, bad(n, "events follow the seal")
		}
		if i == 0 {
			vr.Flow = e.Flow
			vr.RecordID, _ = e.Facts["record_id"].(string)
			vr.Link, _ = e.Facts["link"].(string)
		}
		vr.Events = append(vr.Events, e)
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
	}
	last := vr.Events[len(vr.Events)-1]
	n := len(lines)
	if last.Step != "seal" {
		return nil, bad(n, "the transcript does not end in a seal (the flow did not finish)")
	}
	var sf sealFacts
	b, _ := jcs.Marshal(last.Facts)
	if err := jcs.Unmarshal(b, &sf); err != nil {
		return nil, bad(n, "seal: %v", err)
	}
	body := sf.Body
	switch {
	case body.Format != SealFormat:
		return nil, bad(n, "seal format %q", body.Format)
	case body.RecordID != vr.RecordID || body.Flow != vr.Flow || body.Link != vr.Link:
		return nil, bad(n, "the seal names another record, flow or link than the transcript's first line")
	case body.Prev != last.Prev:
		return nil, bad(n, "the seal does not cover the line before it")
	case body.Outcome != OutcomeSuccess && body.Outcome != OutcomeAborted:
		return nil, bad(n, "outcome %q", body.Outcome)
	}
	vr.Body, vr.Outcome = body, body.Outcome
	vr.Seal = wrap.FingerprintBytes(lines[len(lines)-1])

	if err := checkRecordFiles(dir, body.Files); err != nil {
		return nil, err
	}
	if _, ok := body.Files["manifest.json"]; ok {
		mb, _ := readLimited(filepath.Join(dir, "manifest.json"), maxRecordFile)
		if vr.Manifest, err = shares.ParseManifest(mb); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTranscript, filepath.Join(dir, "manifest.json"), err)
		}
	}
	if _, ok := body.Files["previous-manifest.json"]; ok {
		mb, _ := readLimited(filepath.Join(dir, "previous-manifest.json"), maxRecordFile)
		if vr.Previous, err = shares.ParseManifest(mb); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTranscript, filepath.Join(dir, "previous-manifest.json"), err)
		}
	}
	if _, ok := body.Files[HandoverFile]; ok {
		if err := vr.verifyHandover(); err != nil {
			return nil, err
		}
	}
	in, err := SealSigningInput(&body)
	if err != nil {
		return nil, err
	}
	signedByManifestKey := false
	for _, s := range sf.Signatures {
		if err := verifySealSignature(in, s); err != nil {
			return nil, bad(n, "signature of %s: %v", s.Signer, err)
		}
		if err := vr.checkSigner(s); err != nil {
			return nil, bad(n, "%v", err)
		}
		if s.Signer == SignerManifestKey {
			signedByManifestKey = true
		}
		vr.Signers = append(vr.Signers, s.Signer)
	}
	if vr.Manifest != nil && body.Outcome == OutcomeSuccess && !signedByManifestKey {
		return nil, bad(n, "the seal of a successful record holding a manifest is not signed by its manifest key")
	}
	return vr, nil
}

// SignerManifestKey names the manifest key in a seal.
const SignerManifestKey = "manifest-key"

// checkSigner ties a signature's key to what the record's manifest pins.
func (vr *VerifiedRecord) checkSigner(s SealSignature) error {
	if vr.Manifest == nil {
		return nil
	}
	if s.Signer == SignerManifestKey {
		want, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(vr.Manifest.ManifestKey))
		if err != nil {
			return err
		}
		if !bytes.Equal(want, s.PublicKey) {
			return errors.New("the seal is signed by a key other than the manifest's")
		}
		return nil
	}
	// A card co-signs as a custodian of this generation or, for a quorum, of the one it superseded.
	for _, m := range []*shares.Manifest{vr.Manifest, vr.Previous} {
		if m == nil {
			continue
		}
		for _, c := range m.Custodians {
			if c.Card != nil && s.Signer == fmt.Sprintf("card:%d", c.Card.Serial) {
				if !bytes.Equal(c.Card.SigningKey, s.PublicKey) {
					return fmt.Errorf("%s co-signed with a key other than the attested signing key in the manifest", s.Signer)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("signer %s is not in the record's manifests", s.Signer)
}

func verifySealSignature(msg []byte, s SealSignature) error {
	pub, err := x509.ParsePKIXPublicKey(s.PublicKey)
	if err != nil {
		return err
	}
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, msg, s.Signature) {
			return errors.New("does not verify")
		}
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub, d[:], s.Signature) {
			return errors.New("does not verify")
		}
	default:
		return fmt.Errorf("unsupported key %T", pub)
	}
	return nil
}

// checkRecordFiles compares the files on disk with those the seal lists.
func checkRecordFiles(dir string, files map[string]string) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == TranscriptFile || rel == ReportFile {
			return nil
		}
		want, ok := files[rel]
		if !ok {
			return fmt.Errorf("%w: %s is not listed in the seal", ErrTranscript, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if shares.FileSHA256(b) != want {
			return fmt.Errorf("%w: %s differs from the SHA-256 in the seal", ErrTranscript, p)
		}
		seen[rel] = true
		return nil
	})
	if err != nil {
		return err
	}
	var missing []string
	for rel := range files {
		if !seen[rel] {
			missing = append(missing, rel)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s is missing (listed in the seal)", ErrTranscript, filepath.Join(dir, missing[0]))
	}
	return nil
}

// ReportFile is the name of a record's rendered report.
const ReportFile = "report.md"

// VerifyRecords verifies each record and the links between them, in the order given: each record after
// the first must link the seal of the one before. expectSeal, when set, must be the seal of the last.
func VerifyRecords(dirs []string, expectSeal string) ([]*VerifiedRecord, error) {
	var out []*VerifiedRecord
	for i, d := range dirs {
		vr, err := VerifyRecord(d)
		if err != nil {
			return nil, err
		}
		if i > 0 && vr.Link != out[i-1].Seal {
			return nil, fmt.Errorf("%w: %s does not link the seal of %s (a record between them is missing, or the order is wrong)", ErrTranscript, d, dirs[i-1])
		}
		out = append(out, vr)
	}
	if expectSeal != "" && len(out) > 0 && out[len(out)-1].Seal != expectSeal {
		return nil, fmt.Errorf("%w: the seal of %s is not the one in the minutes", ErrPin, dirs[len(dirs)-1])
	}
	return out, nil
}

// verifyHandover checks a rekey's handover statement: signed by the previous manifest key, naming this
// record's manifest and its key.
func (vr *VerifiedRecord) verifyHandover() error {
	path := filepath.Join(vr.Dir, HandoverFile)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrTranscript, path, fmt.Sprintf(format, a...))
	}
	if vr.Previous == nil || vr.Manifest == nil {
		return bad("a handover needs the previous and the new manifest in the record")
	}
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return bad("%v", err)
	}
	var h Handover
	if err := jcs.Unmarshal(b, &h); err != nil || h.Format != HandoverFormat {
		return bad("not a %s statement", HandoverFormat)
	}
	in, err := HandoverSigningInput(&h)
	if err != nil {
		return err
	}
	if !ed25519.Verify(vr.Previous.ManifestKey, in, h.Signature) {
		return bad("the handover does not verify under the previous manifest key")
	}
	oldFP, _ := vr.Previous.ManifestKeyFingerprint()
	newFP, _ := vr.Manifest.ManifestKeyFingerprint()
	if h.OldManifestKey != oldFP || h.NewManifestKey != newFP || h.NewManifestSHA256 != vr.Body.Files["manifest.json"] ||
		h.CeremonyID != vr.Manifest.CeremonyID || h.ToGeneration != vr.Manifest.Generation || h.FromGeneration != vr.Previous.Generation {
		return bad("the handover names other manifests or keys than the record holds")
	}
	vr.Handover = &h
	return nil
}
