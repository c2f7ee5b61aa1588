package ceremony

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
)

// ReshareOptions are the inputs of a reshare.
type ReshareOptions struct {
	Ceremony           []string // record directories, oldest first; the last holds the current generation
	ExpectSeal         string   // the last record's seal from the minutes; required in production
	Roster             string   // the new roster
	ExpectRosterSHA256 string   // its SHA-256 from the minutes; required in production
	Identities         []string // identity files of software custodians, of the quorum and of the new roster
	Out                string
	Rehearsal          bool
	Preflight          *PreflightReport
	HostFacts          Facts
	Prompter           Prompter
	Now                func() time.Time
	AfterStep          func(step string) error
}

// ReshareResult is what a reshare reports.
type ReshareResult struct {
	Dir          string `json:"dir"`
	CeremonyID   string `json:"ceremony_id"`
	Generation   int    `json:"generation"`
	Supersedes   int    `json:"supersedes"`
	RosterSHA256 string `json:"roster_sha256"`
	ManifestKey  string `json:"manifest_key"`
	Seal         string `json:"seal"`
}

// ReshareSteps are the steps of a reshare.
var ReshareSteps = []string{"preflight", "pins", "record", "witness", "quorum", "combine", "split", "check-round", "manifest", "seal"}

// recordFiles a reshare carries over byte for byte: the wrapped key and the public files it protects.
var carriedFiles = []string{"ca-key.wrapped", "ca.pub.pem", "ca.crt.pem"}

// Reshare gives the same KEK to a new roster or k-of-n as generation + 1. It does not revoke: any quorum
// of an older generation can still rebuild the KEK from its shares. Pins first (the record's seal, the
// new roster's SHA-256); each new custodian witnessed; a quorum of the current generation rebuilds the
// KEK; new shares and check tokens; the check round of the new custodians; a manifest, signed by the same
// manifest key, that names the one it supersedes by hash; the wrapped key carried over byte for byte.
func Reshare(ctx context.Context, o ReshareOptions) (res *ReshareResult, err error) {
	pf := o.Preflight
	if pf == nil {
		return nil, errors.New("the flow needs its preflight report")
	}
	if len(o.Ceremony) == 0 || o.Roster == "" {
		return nil, fmt.Errorf("%w: --ceremony DIR and --roster NEW are required", ErrUsage)
	}
	if !o.Rehearsal && (o.ExpectSeal == "" || o.ExpectRosterSHA256 == "") {
		return nil, fmt.Errorf("%w: a production reshare pins the record (--expect-seal) and the new roster (--expect-roster-sha256)", ErrUsage)
	}
	if o.Prompter == nil {
		return nil, errors.New("reshare: no prompter for the witnesses")
	}
	records, err := VerifyRecords(o.Ceremony, o.ExpectSeal)
	if err != nil {
		return nil, err
	}
	vr := records[len(records)-1]
	old := vr.Manifest
	if old == nil || vr.Outcome != OutcomeSuccess {
		return nil, fmt.Errorf("%s holds no current generation of shares (it is a %s record, %s)", vr.Dir, vr.Flow, vr.Outcome)
	}
	if old.Rehearsal != o.Rehearsal {
		return nil, fmt.Errorf("%s: rehearsal and production never mix", vr.Dir)
	}
	rosterBytes, roster, err := loadRoster(o.Roster, o.ExpectRosterSHA256, o.Rehearsal)
	if err != nil {
		return nil, err
	}
	keys, err := identityKeys(o.Identities)
	if err != nil {
		return nil, err
	}
	oldRecips, newRecips := manifestRecipients(old), rosterRecipients(roster)
	if err := staleKey(keys, records, old); err != nil {
		return nil, err
	}
	if err := unassigned(keys, "ceremony "+old.CeremonyID+" or the new roster", oldRecips, newRecips); err != nil {
		return nil, err
	}
	newKeys, err := allPresent(keys, roster)
	if err != nil {
		return nil, err
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	id, err := newCeremonyID()
	if err != nil {
		return nil, err
	}
	facts := Facts{"rehearsal": o.Rehearsal, "ceremony_id": old.CeremonyID, "from_generation": old.Generation,
		"revokes": false, "note": "a reshare does not revoke: any quorum of an older generation can still rebuild the KEK"}
	for k, v := range o.HostFacts {
		facts[k] = v
	}
	r, err := startRun("reshare", id, o.Out, vr.Seal, facts, o.Now, o.AfterStep)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var kek []byte
	var mkey ed25519.PrivateKey
	defer func() {
		clear(kek)
		clear(mkey)
		if err != nil {
			err = r.abort(err, old.Generation+1, "shares", "checks", "manifest.json")
		}
	}()
	if err := r.event("preflight", Actor{Role: "custos"}, pf.Facts()); err != nil {
		return nil, err
	}
	r.step = "pins"
	if err := r.event("pins", Actor{Role: "operator"}, Facts{"seal": vr.Seal, "seal_pinned": o.ExpectSeal != "",
		"roster_sha256": shares.FileSHA256(rosterBytes), "roster_pinned": o.ExpectRosterSHA256 != ""}); err != nil {
		return nil, err
	}
	r.step = "record"
	for _, rel := range append([]string{"manifest.json"}, carriedFiles...) {
		b, err := os.ReadFile(filepath.Join(vr.Dir, rel))
		if errors.Is(err, os.ErrNotExist) && rel != "manifest.json" {
			continue
		}
		if err != nil {
			return nil, err
		}
		if rel == "manifest.json" {
			rel = "previous-manifest.json"
		}
		if err := r.out.WriteFile(rel, b); err != nil {
			return nil, err
		}
	}
	if err := r.event("record", Actor{Role: "custos"}, Facts{"record": vr.RecordID, "generation": old.Generation, "manifest_sha256": vr.Body.Files["manifest.json"]}); err != nil {
		return nil, err
	}
	r.step = "witness"
	if err := r.witnessRoster(o.Prompter, roster); err != nil {
		return nil, err
	}
	r.step = "quorum"
	quorum := assign(keys, oldRecips)
	for _, k := range quorum {
		if err := r.t.Append("quorum", Actor{Role: "custodian", Name: k.name}, Facts{"key": k.source, "generation": old.Generation}); err != nil {
			return nil, err
		}
	}
	if err := r.done("quorum"); err != nil {
		return nil, err
	}
	r.step = "combine"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if kek, mkey, err = rebuildKEK(old, vr.Dir, quorum); err != nil {
		return nil, err
	}
	if err := r.event("combine", Actor{Role: "custos"}, Facts{"shares": len(quorum), "threshold": old.Threshold, "kek_check": old.SecretCheck, "manifest_key_derived": true}); err != nil {
		return nil, err
	}
	r.step = "split"
	m := &shares.Manifest{
		Format: shares.ManifestFormat, Kind: old.Kind, CeremonyID: old.CeremonyID, Generation: old.Generation + 1,
		Created: now(o.Now), Rehearsal: o.Rehearsal, Threshold: roster.Threshold, SecretSize: old.SecretSize,
		SecretCheck: old.SecretCheck, ManifestKey: old.ManifestKey, RosterSHA: shares.FileSHA256(rosterBytes),
		CA: old.CA, Previous: &shares.PrevRef{ManifestSHA256: vr.Body.Files["manifest.json"], Generation: old.Generation},
		Deviations: pf.Deviations(),
	}
	recipients := make([]age.Recipient, len(roster.Custodians))
	for i, mem := range roster.Custodians {
		if recipients[i], err = recipientFor(mem); err != nil {
			return nil, err
		}
	}
	if err := writeShares(r.out, m, roster, recipients, kek); err != nil {
		return nil, err
	}
	if err := r.out.WriteFile("roster.json", rosterBytes); err != nil {
		return nil, err
	}
	if err := r.event("split", Actor{Role: "custos"}, Facts{"generation": m.Generation, "threshold": m.Threshold, "custodians": len(m.Custodians)}); err != nil {
		return nil, err
	}
	r.step = "check-round"
	if err := r.checkRound(m, newKeys); err != nil {
		return nil, err
	}
	r.step = "manifest"
	mb, err := m.Sign(mkey)
	if err != nil {
		return nil, err
	}
	if err := r.out.WriteFile("manifest.json", mb); err != nil {
		return nil, err
	}
	fp, _ := m.ManifestKeyFingerprint()
	if err := r.event("manifest", Actor{Role: "custos"}, Facts{"manifest_sha256": shares.FileSHA256(mb), "manifest_key": fp, "supersedes": m.Previous.ManifestSHA256}); err != nil {
		return nil, err
	}
	r.step = "seal"
	signers := []Signer{ManifestKeySigner(mkey)}
	for _, k := range append(quorum, newKeys...) {
		if k.signer != nil {
			signers = append(signers, k.signer)
		}
	}
	seal, err := r.seal(SealBody{Generation: m.Generation, Outcome: OutcomeSuccess}, signers...)
	if err != nil {
		return nil, err
	}
	return &ReshareResult{Dir: o.Out, CeremonyID: m.CeremonyID, Generation: m.Generation, Supersedes: old.Generation,
		RosterSHA256: m.RosterSHA, ManifestKey: fp, Seal: seal}, nil
}
