package ceremony

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
)

// NextGeneration is what reshare and rekey share: the records pinned by their seal, a new pinned roster,
// a quorum of the current generation, new shares for the new roster and its check round.
type NextGeneration struct {
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
	Cards              CardOptions // the cards of the quorum and of the new roster, held together
	Now                func() time.Time
	AfterStep          func(step string) error
}

// regen is a flow that makes the next generation of shares.
type regen struct {
	*run
	o           NextGeneration
	records     []*VerifiedRecord
	vr          *VerifiedRecord
	old         *shares.Manifest
	roster      *shares.Roster
	rosterBytes []byte
	quorum      []presentKey
	newKeys     []presentKey
	cardRecords map[string]*card.Record // the new roster's verified card custodians
	release     func()                  // the cards held
}

// startRegen checks everything that needs no secret and no card PIN (pins first, then the flow's own
// check), then starts the record.
func startRegen(flow string, o NextGeneration, check func(*regen) error, facts Facts) (*regen, error) {
	if o.Preflight == nil {
		return nil, errors.New("the flow needs its preflight report")
	}
	if len(o.Ceremony) == 0 || o.Roster == "" {
		return nil, fmt.Errorf("%w: --ceremony DIR and --roster NEW are required", ErrUsage)
	}
	if !o.Rehearsal && (o.ExpectSeal == "" || o.ExpectRosterSHA256 == "") {
		return nil, fmt.Errorf("%w: production pins the record (--expect-seal) and the new roster (--expect-roster-sha256)", ErrUsage)
	}
	if o.Prompter == nil {
		return nil, fmt.Errorf("%s: no prompter for the witnesses", flow)
	}
	g := &regen{o: o}
	var err error
	if g.records, err = VerifyRecords(o.Ceremony, o.ExpectSeal); err != nil {
		return nil, err
	}
	g.vr = g.records[len(g.records)-1]
	g.old = g.vr.Manifest
	if g.old == nil || g.vr.Outcome != OutcomeSuccess {
		return nil, fmt.Errorf("%s holds no current generation of shares (it is a %s record, %s)", g.vr.Dir, g.vr.Flow, g.vr.Outcome)
	}
	if g.old.Rehearsal != o.Rehearsal {
		return nil, fmt.Errorf("%s: rehearsal and production never mix", g.vr.Dir)
	}
	if g.rosterBytes, g.roster, err = loadRoster(o.Roster, o.ExpectRosterSHA256, o.Rehearsal); err != nil {
		return nil, err
	}
	if g.cardRecords, err = verifyRosterCards(g.roster, o.Rehearsal); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(g); err != nil {
			return nil, err
		}
	}
	keys, err := identityKeys(o.Identities)
	if err != nil {
		return nil, err
	}
	oldRecips, newRecips := manifestRecipients(g.old), rosterRecipients(g.roster)
	if err := staleKey(keys, g.records, g.old); err != nil {
		return nil, err
	}
	if err := unassigned(keys, "ceremony "+g.old.CeremonyID+" or the new roster", oldRecips, newRecips); err != nil {
		return nil, err
	}
	g.newKeys, g.quorum = assign(keys, newRecips), assign(keys, oldRecips)
	if o.Cards.Selector == nil && len(g.cardRecords) > 0 {
		return nil, fmt.Errorf("%w: the new roster has card custodians; bring their cards", ErrUsage)
	}
	if o.Cards.Selector != nil && o.Cards.Selector.OneReader {
		return nil, fmt.Errorf("%w: %s needs the cards of the quorum and of the new roster together, not --one-reader", ErrUsage, flow)
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	facts["rehearsal"], facts["ceremony_id"], facts["from_generation"] = o.Rehearsal, g.old.CeremonyID, g.old.Generation
	if g.run, err = startRun(flow, o.Out, g.vr.Seal, facts, o.HostFacts, o.Now, o.AfterStep); err != nil {
		return nil, err
	}
	return g, nil
}

// begin records preflight, pins and the record built on, and copies the previous manifest and the
// files carried over (all but the wrapped key when the flow re-wraps it).
func (g *regen) begin(pins Facts, carry ...string) error {
	if err := g.event("preflight", Actor{Role: "custos"}, g.o.Preflight.Facts()); err != nil {
		return err
	}
	g.step = "pins"
	pins["seal"], pins["seal_pinned"] = g.vr.Seal, g.o.ExpectSeal != ""
	pins["roster_sha256"], pins["roster_pinned"] = shares.FileSHA256(g.rosterBytes), g.o.ExpectRosterSHA256 != ""
	if err := g.event("pins", Actor{Role: "operator"}, pins); err != nil {
		return err
	}
	g.step = "record"
	for _, rel := range append([]string{"manifest.json"}, carry...) {
		b, err := os.ReadFile(filepath.Join(g.vr.Dir, rel))
		if errors.Is(err, os.ErrNotExist) && rel != "manifest.json" {
			continue
		}
		if err != nil {
			return err
		}
		if rel == "manifest.json" {
			rel = "previous-manifest.json"
		}
		if err := g.out.WriteFile(rel, b); err != nil {
			return err
		}
	}
	if err := g.event("record", Actor{Role: "custos"}, Facts{"record": g.vr.RecordID, "generation": g.old.Generation, "manifest_sha256": g.vr.Body.Files["manifest.json"]}); err != nil {
		return err
	}
	g.step = "witness"
	return g.witnessRoster(g.o.Prompter, g.roster, g.cardRecords)
}

// rebuild has the quorum of the current generation rebuild its KEK.
func (g *regen) rebuild(ctx context.Context) ([]byte, []byte, error) {
	g.step = "quorum"
	oldWant, err := expectedCards(g.old)
	if err != nil {
		return nil, nil, err
	}
	held, release, err := holdAll(g.o.Cards, g.flow, g.id, "decrypt its share, or its new share and check token (check round)",
		withoutKeys(oldWant, g.quorum), withoutKeys(rosterCards(g.roster, g.cardRecords), g.newKeys))
	if err != nil {
		return nil, nil, err
	}
	g.release = release
	g.quorum, g.newKeys = append(g.quorum, held[0]...), append(g.newKeys, held[1]...)
	if _, err := allPresent(g.newKeys, g.roster); err != nil {
		return nil, nil, err
	}
	for _, k := range g.quorum {
		if err := g.t.Append("quorum", Actor{Role: "custodian", Name: k.name}, Facts{"key": k.source, "generation": g.old.Generation}); err != nil {
			return nil, nil, err
		}
	}
	if err := g.done("quorum"); err != nil {
		return nil, nil, err
	}
	g.step = "combine"
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	kek, mkey, err := rebuildKEK(g.old, g.vr.Dir, g.quorum)
	if err != nil {
		return nil, nil, err
	}
	if err := g.event("combine", Actor{Role: "custos"}, Facts{"shares": len(g.quorum), "threshold": g.old.Threshold, "kek_check": g.old.SecretCheck, "manifest_key_derived": true}); err != nil {
		clear(kek)
		clear(mkey)
		return nil, nil, err
	}
	return kek, mkey, nil
}

// nextManifest starts the next generation's manifest.
func (g *regen) nextManifest() *shares.Manifest {
	return &shares.Manifest{
		Format: shares.ManifestFormat, Kind: g.old.Kind, CeremonyID: g.old.CeremonyID, Generation: g.old.Generation + 1,
		Created: now(g.o.Now), Rehearsal: g.o.Rehearsal, Threshold: g.roster.Threshold, SecretSize: g.old.SecretSize,
		RosterSHA: shares.FileSHA256(g.rosterBytes), CA: g.old.CA,
		Previous:   &shares.PrevRef{ManifestSHA256: g.vr.Body.Files["manifest.json"], Generation: g.old.Generation},
		Deviations: g.o.Preflight.Deviations(),
	}
}

// splitAndCheck writes the new shares of secret for the new roster and runs their check round.
func (g *regen) splitAndCheck(m *shares.Manifest, secret []byte) error {
	g.step = "split"
	recipients := make([]age.Recipient, len(g.roster.Custodians))
	for i, mem := range g.roster.Custodians {
		var err error
		if recipients[i], err = recipientFor(mem); err != nil {
			return err
		}
	}
	if err := writeShares(g.out, m, g.roster, recipients, secret); err != nil {
		return err
	}
	pinCards(m, g.cardRecords)
	if err := g.out.WriteFile("roster.json", g.rosterBytes); err != nil {
		return err
	}
	if err := g.event("split", Actor{Role: "custos"}, Facts{"generation": m.Generation, "threshold": m.Threshold, "custodians": len(m.Custodians)}); err != nil {
		return err
	}
	g.step = "check-round"
	return g.checkRound(m, g.newKeys)
}

// writeManifest signs and writes the new manifest.
func (g *regen) writeManifest(m *shares.Manifest, key []byte, extra Facts) ([]byte, error) {
	g.step = "manifest"
	mb, err := m.Sign(key)
	if err != nil {
		return nil, err
	}
	if err := g.out.WriteFile("manifest.json", mb); err != nil {
		return nil, err
	}
	fp, _ := m.ManifestKeyFingerprint()
	extra["manifest_sha256"], extra["manifest_key"], extra["supersedes"] = shares.FileSHA256(mb), fp, m.Previous.ManifestSHA256
	return mb, g.event("manifest", Actor{Role: "custos"}, extra)
}

// close releases the cards held and the record being written.
func (g *regen) close() {
	if g.release != nil {
		g.release()
	}
	g.run.close()
}
