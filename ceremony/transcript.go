package ceremony

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// TranscriptFile is the name of a record's transcript.
const TranscriptFile = "transcript.jsonl"

// SealFormat is the version string of a seal, and the domain of the signatures over it.
const SealFormat = "custos-seal-v1"

// Outcomes a seal states.
const (
	OutcomeSuccess = "success"
	OutcomeAborted = "aborted"
)

// Actor says who performed a step.
type Actor struct {
	Role   string `json:"role"` // custos, operator, witness, custodian, card, hsm
	Name   string `json:"name,omitempty"`
	Serial uint32 `json:"serial,omitempty"` // a card's serial
}

// Facts are what a step records: fingerprints, labelled check values, token info, hashes, mechanisms,
// deviations. Never a secret. Values are strings, integers, booleans, lists and objects of them.
type Facts map[string]any

// Event is one line of a transcript.
type Event struct {
	Seq   int    `json:"seq"`
	Time  string `json:"time"`
	Flow  string `json:"flow"`
	Step  string `json:"step"`
	Actor Actor  `json:"actor"`
	Facts Facts  `json:"facts"`
	Prev  string `json:"prev"` // lowercase hex SHA-256 of the previous line, newline included; "" on the first
}

// SealBody is what a seal states and its signatures cover.
type SealBody struct {
	Format     string            `json:"format"`
	RecordID   string            `json:"record_id"`
	Flow       string            `json:"flow"`
	Generation int               `json:"generation"`
	Outcome    string            `json:"outcome"`
	Where      string            `json:"where"`  // the step an aborted flow stopped at
	Reason     string            `json:"reason"` // why it stopped
	Files      map[string]string `json:"files"`  // every file of the record but the transcript and report: SHA-256
	Link       string            `json:"link"`   // the seal of the record this one builds on, or ""
	Prev       string            `json:"prev"`   // SHA-256 of the transcript line before the seal
	Nonce      []byte            `json:"nonce"`
}

// SealSignature is one signature over a seal body: by the manifest key, or co-signed by a card's
// attested signing key.
type SealSignature struct {
	Signer    string `json:"signer"`     // "manifest-key" or "card:SERIAL"
	PublicKey []byte `json:"public_key"` // SubjectPublicKeyInfo DER
	Signature []byte `json:"signature"`
}

// Signer signs seal bodies (the manifest key, or a card's signing key).
type Signer interface {
	// Name is the signer's label in the seal: "manifest-key" or "card:SERIAL".
	Name() string
	// PublicKey returns the signer's SubjectPublicKeyInfo DER.
	PublicKey() ([]byte, error)
	// Sign signs msg: Ed25519 over msg itself, ECDSA over SHA-256(msg).
	Sign(msg []byte) ([]byte, error)
}

// SealSigningInput returns what a seal signature covers: "custos-seal-v1\n" ‖ canonical JSON of body.
func SealSigningInput(body *SealBody) ([]byte, error) {
	b, err := jcs.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return append([]byte(SealFormat+"\n"), b...), nil
}

// Transcript appends events to a record's transcript.jsonl, fsyncing each line.
type Transcript struct {
	f        *os.File
	flow     string
	recordID string
	link     string
	seq      int
	prev     string
	now      func() time.Time
	sealed   bool
}

// BeginTranscript creates path and writes the first event, which names the record and links the seal
// of the record it builds on (link, "" for none).
func BeginTranscript(path, flow, recordID, link string, facts Facts, now func() time.Time) (*Transcript, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	t := &Transcript{f: f, flow: flow, recordID: recordID, link: link, now: now}
	if facts == nil {
		facts = Facts{}
	}
	facts["record_id"] = recordID
	facts["link"] = link
	if err := t.Append("begin", Actor{Role: "custos"}, facts); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// Append writes one event and fsyncs it.
func (t *Transcript) Append(step string, actor Actor, facts Facts) error {
	if t.sealed {
		return errors.New("transcript: already sealed")
	}
	if facts == nil {
		facts = Facts{}
	}
	e := Event{Seq: t.seq, Time: t.now().UTC().Format(time.RFC3339Nano), Flow: t.flow, Step: step, Actor: actor, Facts: facts, Prev: t.prev}
	line, err := jcs.Marshal(e)
	if err != nil {
		return fmt.Errorf("transcript: step %s: %w", step, err)
	}
	line = append(line, '\n')
	if _, err := t.f.Write(line); err != nil {
		return fmt.Errorf("transcript: %w", err)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("transcript: %w", err)
	}
	sum := sha256.Sum256(line)
	t.prev, t.seq = hex.EncodeToString(sum[:]), t.seq+1
	return nil
}

// Seal writes the last event: the seal body over the record's files, signed by each signer. It returns
// the seal, which the minutes record: "SHA256:" and the base64 SHA-256 of the seal line.
func (t *Transcript) Seal(body SealBody, signers ...Signer) (string, error) {
	body.Format, body.RecordID, body.Flow, body.Link, body.Prev = SealFormat, t.recordID, t.flow, t.link, t.prev
	body.Nonce = make([]byte, 32)
	if _, err := rand.Read(body.Nonce); err != nil {
		return "", err
	}
	if body.Files == nil {
		body.Files = map[string]string{}
	}
	in, err := SealSigningInput(&body)
	if err != nil {
		return "", err
	}
	sigs := []SealSignature{}
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			return "", fmt.Errorf("seal: %s: %w", s.Name(), err)
		}
		sig, err := s.Sign(in)
		if err != nil {
			return "", fmt.Errorf("seal: %s: %w", s.Name(), err)
		}
		sigs = append(sigs, SealSignature{Signer: s.Name(), PublicKey: pub, Signature: sig})
	}
	e := Event{Seq: t.seq, Time: t.now().UTC().Format(time.RFC3339Nano), Flow: t.flow, Step: "seal", Actor: Actor{Role: "custos"},
		Facts: Facts{"body": body, "signatures": sigs}, Prev: t.prev}
	line, err := jcs.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	line = append(line, '\n')
	if _, err := t.f.Write(line); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	if err := t.f.Sync(); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	t.sealed = true
	return wrap.FingerprintBytes(line), nil
}

// Close closes the transcript file.
func (t *Transcript) Close() error { return t.f.Close() }

// RecordFiles hashes every file of a record directory but its transcript and report, for the seal.
func RecordFiles(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == TranscriptFile || rel == ReportFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = shares.FileSHA256(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return files, nil
}

// ed25519Signer signs seals with the manifest key.
type ed25519Signer struct{ key ed25519.PrivateKey }

// ManifestKeySigner returns the seal signer for a manifest key.
func ManifestKeySigner(key ed25519.PrivateKey) Signer { return ed25519Signer{key} }

func (s ed25519Signer) Name() string { return SignerManifestKey }
func (s ed25519Signer) PublicKey() ([]byte, error) {
	return x509.MarshalPKIXPublicKey(s.key.Public())
}
func (s ed25519Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }
