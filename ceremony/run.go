package ceremony

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// run is one flow writing its record: a new directory built under a temporary name, a transcript in it,
// the step in progress, and the seal at the end, of success or of an abort.
type run struct {
	flow  string
	id    string
	out   *fsx.Dir
	dest  string
	t     *Transcript
	step  string
	after func(step string) error // test seam, called after each step
}

// startRun creates the record directory, gives the record a new id and begins its transcript with
// facts and the host's facts (the binary's version and hash).
func startRun(flow, dest, link string, facts, host Facts, now func() time.Time, after func(string) error) (*run, error) {
	id, err := newCeremonyID()
	if err != nil {
		return nil, err
	}
	for k, v := range host {
		facts[k] = v
	}
	out, err := fsx.NewDir(dest)
	if err != nil {
		return nil, err
	}
	t, err := BeginTranscript(out.TempPath(TranscriptFile), flow, id, link, facts, now)
	if err != nil {
		out.Abort()
		return nil, err
	}
	return &run{flow: flow, id: id, out: out, dest: dest, t: t, after: after}, nil
}

// event appends an event and runs the test seam for the step it completes.
func (r *run) event(step string, actor Actor, facts Facts) error {
	if err := r.t.Append(step, actor, facts); err != nil {
		return err
	}
	return r.done(step)
}

// done runs the test seam for a completed step.
func (r *run) done(step string) error {
	if r.after != nil {
		return r.after(step)
	}
	return nil
}

// seal seals the record over its files and commits the directory.
func (r *run) seal(body SealBody, signers ...Signer) (string, error) {
	files, err := RecordFiles(r.out.TempPath("."))
	if err != nil {
		return "", err
	}
	body.Files = files
	s, err := r.t.Seal(body, signers...)
	if err != nil {
		return "", err
	}
	if err := r.t.Close(); err != nil {
		return "", err
	}
	if err := r.out.Commit(); err != nil {
		return "", err
	}
	// The report is rendered from the record as written, which is verified on the way.
	vr, err := VerifyRecord(r.dest)
	if err != nil {
		return "", fmt.Errorf("the record just written does not verify: %w", err)
	}
	if err := WriteReport(vr, filepath.Join(r.dest, ReportFile)); err != nil {
		return "", err
	}
	return s, nil
}

// abort records where and why the flow stopped, removes the listed files of the record (which protect
// nothing once the flow failed), and seals and commits what remains as an aborted record.
func (r *run) abort(cause error, generation int, remove ...string) error {
	for _, rel := range remove {
		os.RemoveAll(r.out.TempPath(rel))
	}
	err := r.t.Append("abort", Actor{Role: "custos"}, Facts{"where": r.step, "reason": cause.Error()})
	if err == nil {
		_, err = r.seal(SealBody{Generation: generation, Outcome: OutcomeAborted, Where: r.step, Reason: cause.Error()})
	}
	if err != nil {
		return fmt.Errorf("%s aborted at %s: %w (and writing the record failed: %v)", r.flow, r.step, cause, err)
	}
	return fmt.Errorf("%s aborted at %s: %w; the record in %s says so", r.flow, r.step, cause, r.dest)
}

// close releases the transcript and removes an uncommitted directory.
func (r *run) close() {
	r.t.Close()
	r.out.Abort()
}

// witnessRoster has a witness confirm each custodian of a roster that is to receive shares and, for a
// card custodian, the serial printed on the card.
func (r *run) witnessRoster(p Prompter, roster *shares.Roster, records map[string]*card.Record) error {
	for _, m := range roster.Custodians {
		var serial uint32
		if rec, ok := records[m.Name]; ok {
			serial = rec.Serial
		}
		w, err := p.Witness(r.flow, r.id, m.Name, serial)
		if err != nil {
			return fmt.Errorf("witness for %q: %w", m.Name, err)
		}
		if err := r.t.Append("witness", Actor{Role: "witness", Name: w}, Facts{"custodian": m.Name, "recipient": m.Recipient, "kind": m.Kind, "card_serial": int(serial), "confirmed": true}); err != nil {
			return err
		}
	}
	return r.done("witness")
}

// checkRound has every custodian of the new shares open its share and its check token from disk, as
// written into the record being built (invariant 4).
func (r *run) checkRound(m *shares.Manifest, keys []presentKey) error {
	lm := &loadedManifest{Manifest: m, dir: r.out.TempPath("."), final: r.dest}
	for _, k := range keys {
		e, ok := m.Custodian(k.name)
		if !ok {
			return fmt.Errorf("check round: %q is not in the manifest", k.name)
		}
		env, err := openShare(lm, e, k.identity)
		if err != nil {
			return fmt.Errorf("check round: %w", err)
		}
		env.Wipe()
		if _, err := openCheckToken(lm, e, k.identity); err != nil {
			return fmt.Errorf("check round: %w", err)
		}
		if err := r.t.Append("check-round", Actor{Role: "custodian", Name: k.name}, Facts{"share": "opened, commitment matches", "check_token": "opened, value matches", "key": k.source}); err != nil {
			return err
		}
	}
	return r.done("check-round")
}

// freshKEK makes a new KEK from the token's RNG XOR the OS RNG and records the sources (never values)
// and its check value. The caller wipes it.
func (r *run) freshKEK(sess *hsm.Session) ([]byte, error) {
	hr, err := sess.Random(wrap.KEKSize)
	if err != nil {
		return nil, err
	}
	defer clear(hr)
	kek := make([]byte, wrap.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		return nil, err
	}
	for i := range kek {
		kek[i] ^= hr[i]
	}
	kcv, err := wrap.KCV(kek)
	if err == nil {
		err = r.event("kek", Actor{Role: "custos"}, Facts{"sources": []any{"HSM C_GenerateRandom", "OS getrandom"}, "combined": "XOR", "check_value": kcv.String()})
	}
	if err != nil {
		clear(kek)
		return nil, err
	}
	return kek, nil
}

// step is one named step of a flow.
type step struct {
	name string
	run  func(context.Context) error
}

// steps runs steps in order; a cancelled context stops the flow between them.
func (r *run) steps(ctx context.Context, steps ...step) error {
	for _, st := range steps {
		r.step = st.name
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := st.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sealSigners are the manifest key and, once each, the cards among keys.
func sealSigners(manifestKey []byte, keys ...[]presentKey) []Signer {
	out := []Signer{ManifestKeySigner(manifestKey)}
	seen := map[string]bool{}
	for _, ks := range keys {
		for _, k := range ks {
			if k.signer != nil && !seen[k.signer.Name()] {
				seen[k.signer.Name()] = true
				out = append(out, k.signer)
			}
		}
	}
	return out
}

// newCeremonyID returns a new ceremony or record id: 16 random bytes in lowercase hex.
func newCeremonyID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
