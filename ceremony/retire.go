package ceremony

// custos card retire: a custodian's old decryption key destroyed on the card, refused while the latest
// generation of any ceremony given uses it, and a report, per older generation, of how many members can
// still open their shares.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// Files of a retire record and the version of its report.
const (
	RetireReportFile   = "retire.json"
	RetireProofFile    = "attestation.pem"
	RetireTombFile     = "tombstone.pem"
	RetireReportFormat = "custos-retire-v1"
)

// ErrCurrentRecipient is wrapped by the refusal to retire a key that the latest generation of a
// ceremony given still uses.
var ErrCurrentRecipient = errors.New("key in use by the latest generation")

// RetireOptions are the inputs of custos card retire.
type RetireOptions struct {
	Slot card.Slot // the retired slot (0x82 to 0x95) whose key goes
	// Ceremony are the records of the ceremonies the card served (any generations, in any order) and
	// the records of earlier retirements.
	Ceremony []string
	// ExpectSeals are the seals of each ceremony's latest record from the minutes; required in production.
	ExpectSeals []string
	Out         string
	Rehearsal   bool
	Preflight   *PreflightReport
	HostFacts   Facts
	Prompter    Prompter
	Cards       CardOptions // the one card: chosen with --serial, or the only card of the records present
	Now         func() time.Time
	AfterStep   func(step string) error
}

// RetireReport is the record's retire.json, and what custos card retire prints.
type RetireReport struct {
	Format    string `json:"format"`
	RecordID  string `json:"record_id"`
	Rehearsal bool   `json:"rehearsal"`
	// Retired is the key this retirement destroyed; NewKey the fingerprint of the throwaway key that
	// took its place (the attestation in attestation.pem names it).
	Retired RetiredKey `json:"retired"`
	NewKey  string     `json:"new_key"`
	// Earlier are the keys the retire records given destroyed.
	Earlier []RetiredKey `json:"earlier"`
	// Generations are the older generations of each ceremony given.
	Generations []GenerationStatus `json:"generations"`
}

// RetiredKey is a decryption key destroyed on a card.
type RetiredKey struct {
	Serial      uint32 `json:"serial"`
	Slot        string `json:"slot"`
	PublicKey   []byte `json:"public_key"` // SubjectPublicKeyInfo DER
	Fingerprint string `json:"fingerprint"`
	Record      string `json:"record"` // the retire record's id
}

// GenerationStatus says how many members of an older generation can still open their shares.
type GenerationStatus struct {
	CeremonyID string   `json:"ceremony_id"`
	Generation int      `json:"generation"`
	Latest     int      `json:"latest_generation"`
	Threshold  int      `json:"threshold"`
	Members    int      `json:"members"`
	CanOpen    []string `json:"can_open"`
	Cannot     []string `json:"cannot_open"`
	// Revoked is set only when fewer than Threshold members can open their shares.
	Revoked bool `json:"revoked"`
}

// RetireResult is what a retirement reports.
type RetireResult struct {
	Dir    string        `json:"dir"`
	Seal   string        `json:"seal"`
	Report *RetireReport `json:"report"`
}

// ceremonyGens are the generations of one ceremony found in the records given.
type ceremonyGens struct {
	gens   map[int]*shares.Manifest
	hashes map[int]string   // SHA-256 of each generation's manifest file
	latest *VerifiedRecord  // the record holding the latest generation
	last   *shares.Manifest // its manifest
}

// retireInputs are the records given, verified and sorted out.
type retireInputs struct {
	records    []*VerifiedRecord
	ceremonies map[string]*ceremonyGens
	earlier    []RetiredKey        // the retirements of earlier retire records, checked
	pending    []earlierRetirement // the retire records given, before checkEarlier
}

// loadRetireInputs verifies every record and groups the generations by ceremony id.
func loadRetireInputs(dirs []string, rehearsal bool) (*retireInputs, error) {
	in := &retireInputs{ceremonies: map[string]*ceremonyGens{}}
	for _, d := range dirs {
		vrs, err := VerifyRecords([]string{d}, "")
		if err != nil {
			return nil, err
		}
		vr := vrs[0]
		in.records = append(in.records, vr)
		if vr.Outcome != OutcomeSuccess {
			continue
		}
		if vr.Flow == "retire" {
			var rep RetireReport
			b, err := readLimited(filepath.Join(d, RetireReportFile), maxRecordFile)
			if err == nil {
				err = jcs.Unmarshal(b, &rep)
			}
			if err != nil || rep.Format != RetireReportFormat {
				return nil, fmt.Errorf("%s: not a %s report: %v", filepath.Join(d, RetireReportFile), RetireReportFormat, err)
			}
			if rep.Rehearsal != rehearsal {
				return nil, fmt.Errorf("%s: rehearsal and production never mix", d)
			}
			if err := in.addEarlier(vr, rep.Retired); err != nil {
				return nil, err
			}
			continue
		}
		for _, m := range []struct {
			m    *shares.Manifest
			file string
		}{{vr.Manifest, "manifest.json"}, {vr.Previous, "previous-manifest.json"}} {
			if m.m == nil {
				continue
			}
			if m.m.Rehearsal != rehearsal {
				return nil, fmt.Errorf("%s: rehearsal and production never mix", d)
			}
			if err := in.addGeneration(vr, m.m, vr.Body.Files[m.file], m.file == "manifest.json"); err != nil {
				return nil, err
			}
		}
	}
	if len(in.ceremonies) == 0 {
		return nil, fmt.Errorf("%w: none of the records given holds a generation of shares; give the records of the ceremonies the card served", ErrUsage)
	}
	return in, in.checkEarlier()
}

// earlierRetirement is a retire record given, with the key that co-signed its seal as its card.
type earlierRetirement struct {
	dir    string
	key    RetiredKey
	signer []byte
}

func (in *retireInputs) addEarlier(vr *VerifiedRecord, k RetiredKey) error {
	var sf sealFacts
	b, err := jcs.Marshal(vr.Events[len(vr.Events)-1].Facts)
	if err == nil {
		err = jcs.Unmarshal(b, &sf)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: seal: %v", ErrTranscript, vr.Dir, err)
	}
	i := slices.IndexFunc(sf.Signatures, func(s SealSignature) bool { return s.Signer == fmt.Sprintf("card:%d", k.Serial) })
	if i < 0 {
		return fmt.Errorf("%w: retire record %s is not co-signed by YubiKey %d, whose key it says it retired", ErrTranscript, vr.Dir, k.Serial)
	}
	in.pending = append(in.pending, earlierRetirement{dir: vr.Dir, key: k, signer: sf.Signatures[i].PublicKey})
	return nil
}

// checkEarlier keeps the earlier retirements of cards the ceremonies given name, each co-signed by the
// signing key a manifest pins for its card (VerifyRecord cannot tie a retire record's signer to a card:
// the record holds no manifest).
func (in *retireInputs) checkEarlier() error {
	for _, p := range in.pending {
		named, pinned := false, false
		for _, cg := range in.ceremonies {
			for _, m := range cg.gens {
				for _, e := range m.Custodians {
					if e.Card != nil && e.Card.Serial == p.key.Serial {
						named = true
						pinned = pinned || bytes.Equal(e.Card.SigningKey, p.signer)
					}
				}
			}
		}
		switch {
		case !named:
			continue // a retirement on a card none of these ceremonies used
		case !pinned:
			return fmt.Errorf("%w: retire record %s is co-signed as YubiKey %d by a key other than the card's attested signing key in the manifests", ErrTranscript, p.dir, p.key.Serial)
		}
		in.earlier = append(in.earlier, p.key)
	}
	return nil
}

func (in *retireInputs) addGeneration(vr *VerifiedRecord, m *shares.Manifest, sha string, own bool) error {
	cg := in.ceremonies[m.CeremonyID]
	if cg == nil {
		cg = &ceremonyGens{gens: map[int]*shares.Manifest{}, hashes: map[int]string{}}
		in.ceremonies[m.CeremonyID] = cg
	}
	if h, ok := cg.hashes[m.Generation]; ok && h != sha {
		return fmt.Errorf("%w: %s holds another manifest of generation %d of ceremony %s than an earlier record given", ErrTranscript, vr.Dir, m.Generation, m.CeremonyID)
	}
	cg.gens[m.Generation], cg.hashes[m.Generation] = m, sha
	if own && (cg.last == nil || m.Generation > cg.last.Generation) {
		cg.latest, cg.last = vr, m
	}
	return nil
}

// checkSeals checks the pins: every ceremony's latest record pinned by its seal (required in
// production), and every pinned seal one of the records given.
func (in *retireInputs) checkSeals(expect []string, rehearsal bool) error {
	if !rehearsal && len(expect) == 0 {
		return fmt.Errorf("%w: --expect-seal is required: the latest seal of each ceremony, from the minutes", ErrUsage)
	}
	for _, s := range expect {
		if !slices.ContainsFunc(in.records, func(vr *VerifiedRecord) bool { return vr.Seal == s }) {
			return fmt.Errorf("%w: a seal given with --expect-seal is none of the records given", ErrPin)
		}
	}
	for _, id := range in.ids() {
		cg := in.ceremonies[id]
		if cg.latest == nil {
			return fmt.Errorf("%w: ceremony %s: give the record that holds its latest generation (only a superseded manifest was given)", ErrUsage, id)
		}
		if len(expect) > 0 && !slices.Contains(expect, cg.latest.Seal) {
			return fmt.Errorf("%w: the seal of %s, the latest record of ceremony %s given, is not pinned with --expect-seal; a record of a later generation may be missing", ErrPin, cg.latest.Dir, id)
		}
	}
	return nil
}

func (in *retireInputs) ids() []string {
	var ids []string
	for id := range in.ceremonies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// cards returns what the manifests pin about each card, from the latest generation naming it.
func (in *retireInputs) cards() ([]card.Expected, error) {
	var out []card.Expected
	gen := map[uint32]int{}
	for _, id := range in.ids() {
		for g, m := range in.ceremonies[id].gens {
			want, err := expectedCards(m)
			if err != nil {
				return nil, err
			}
			for _, x := range want {
				i := slices.IndexFunc(out, func(o card.Expected) bool { return o.Serial == x.Serial })
				switch {
				case i < 0:
					out, gen[x.Serial] = append(out, x), g
				case g > gen[x.Serial]:
					out[i], gen[x.Serial] = x, g
				}
			}
		}
	}
	return out, nil
}

// refuseCurrent refuses a key the latest generation of a ceremony given uses: by its card and slot, or
// by the key itself.
func (in *retireInputs) refuseCurrent(serial uint32, slot card.Slot, key []byte) error {
	for _, id := range in.ids() {
		m := in.ceremonies[id].last
		for _, e := range m.Custodians {
			if e.Card == nil {
				continue
			}
			if e.Card.Serial == serial && e.Card.Slot == slot.String() || bytes.Equal(e.Card.DecryptionKey, key) {
				return fmt.Errorf("%w: YubiKey %d slot %v holds the key of custodian %q in generation %d, the latest of ceremony %s; reshare or rekey to a roster without it first",
					ErrCurrentRecipient, serial, slot, e.Name, m.Generation, id)
			}
		}
	}
	return nil
}

// holder returns the custodian whose key the ceremonies given put in a card's slot (the latest
// generation that names it), and the generations that used it; "" when none did.
func (in *retireInputs) holder(serial uint32, slot card.Slot) (name string, used []any) {
	latest := 0
	for _, id := range in.ids() {
		for g, m := range in.ceremonies[id].gens {
			for _, e := range m.Custodians {
				if e.Card != nil && e.Card.Serial == serial && e.Card.Slot == slot.String() {
					used = append(used, fmt.Sprintf("%s generation %d (%s)", id, g, e.Name))
					if g >= latest {
						name, latest = e.Name, g
					}
				}
			}
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].(string) < used[j].(string) })
	return name, used
}

// status reports, per older generation of each ceremony, who can still open their shares: software
// custodians always can; card custodians unless their slot was retired now (serial and slot) or by an
// earlier retire record (serial, slot and key).
func (in *retireInputs) status(now RetiredKey) []GenerationStatus {
	gone := func(ci *shares.CardInfo) bool {
		if ci.Serial == now.Serial && ci.Slot == now.Slot {
			return true
		}
		return slices.ContainsFunc(in.earlier, func(r RetiredKey) bool {
			return ci.Serial == r.Serial && ci.Slot == r.Slot && bytes.Equal(ci.DecryptionKey, r.PublicKey)
		})
	}
	out := []GenerationStatus{}
	for _, id := range in.ids() {
		cg := in.ceremonies[id]
		var gens []int
		for g := range cg.gens {
			if g < cg.last.Generation {
				gens = append(gens, g)
			}
		}
		sort.Ints(gens)
		for _, g := range gens {
			m := cg.gens[g]
			st := GenerationStatus{CeremonyID: id, Generation: g, Latest: cg.last.Generation, Threshold: m.Threshold, Members: len(m.Custodians), CanOpen: []string{}, Cannot: []string{}}
			for _, e := range m.Custodians {
				if e.Card != nil && gone(e.Card) {
					st.Cannot = append(st.Cannot, e.Name)
				} else {
					st.CanOpen = append(st.CanOpen, e.Name)
				}
			}
			st.Revoked = len(st.CanOpen) < st.Threshold
			out = append(out, st)
		}
	}
	return out
}

// Retire destroys the decryption key in a card's slot and writes a sealed record of it: pins first;
// the card chosen and its slot read; a key that the latest generation of any ceremony given uses
// refused, before liveness and before any PIN; liveness; a witness confirming the custodian and the card;
// the throwaway key generated over the old one, its attestation verified; the report of the older
// generations; the seal, co-signed by the card.
func Retire(ctx context.Context, o RetireOptions) (res *RetireResult, err error) {
	switch {
	case o.Preflight == nil:
		return nil, errors.New("card retire needs its preflight report")
	case !o.Slot.Retired():
		return nil, fmt.Errorf("%w: slot %v is not a retired slot (--slot 1 to 20)", ErrUsage, o.Slot)
	case len(o.Ceremony) == 0 || o.Out == "":
		return nil, fmt.Errorf("%w: --ceremony DIR and --out DIR are required", ErrUsage)
	case o.Cards.Selector == nil:
		return nil, fmt.Errorf("%w: card retire needs the card", ErrUsage)
	case o.Prompter == nil:
		return nil, errors.New("card retire: no prompter for the witness")
	}
	in, err := loadRetireInputs(o.Ceremony, o.Rehearsal)
	if err != nil {
		return nil, err
	}
	if err := in.checkSeals(o.ExpectSeals, o.Rehearsal); err != nil {
		return nil, err
	}
	want, err := in.cards()
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: the ceremonies given have no card custodians", ErrUsage)
	}
	trust, err := attestationTrust(o.Rehearsal)
	if err != nil {
		return nil, err
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	err = o.Cards.Selector.Each(want, 1, func(c *card.Card, e card.Expected) (bool, error) {
		res, err = retireCard(ctx, o, in, trust, c, e)
		return false, err
	})
	if err == nil && res == nil {
		err = fmt.Errorf("card: %w: no card of these ceremonies arrived", card.ErrCardNotFound)
	}
	return res, err
}

// retireCard runs the retirement on the chosen card.
func retireCard(ctx context.Context, o RetireOptions, in *retireInputs, trust *card.Trust, c *card.Card, e card.Expected) (res *RetireResult, err error) {
	old, tomb, err := c.SlotKey(o.Slot)
	switch {
	case err != nil:
		return nil, err
	case tomb:
		return nil, fmt.Errorf("YubiKey %d slot %v holds a tombstone: its key was retired already (%w)", c.Serial(), o.Slot, card.ErrRetired)
	}
	if err := in.refuseCurrent(c.Serial(), o.Slot, old); err != nil {
		return nil, err
	}
	facts := Facts{"rehearsal": o.Rehearsal, "card_serial": int(c.Serial()), "slot": o.Slot.String()}
	last := in.records[len(in.records)-1]
	r, err := startRun("retire", o.Out, last.Seal, facts, o.HostFacts, o.Now, o.AfterStep)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer func() {
		if err != nil {
			err = r.abort(err, 0)
		}
	}()
	oldFP := wrap.FingerprintBytes(old)
	name, used := in.holder(c.Serial(), o.Slot)
	if name == "" {
		name = e.Name
	}
	steps := []step{
		{"preflight", func(context.Context) error { return r.event("preflight", Actor{Role: "custos"}, o.Preflight.Facts()) }},
		{"pins", func(context.Context) error {
			var seals []any
			for _, id := range in.ids() {
				seals = append(seals, in.ceremonies[id].latest.Seal)
			}
			return r.event("pins", Actor{Role: "operator"}, Facts{"latest_seals": seals, "seals_pinned": len(o.ExpectSeals) > 0})
		}},
		{"record", func(context.Context) error {
			for _, vr := range in.records {
				f := Facts{"record": vr.RecordID, "flow": vr.Flow, "seal": vr.Seal, "outcome": vr.Outcome}
				if vr.Manifest != nil {
					f["ceremony_id"], f["generation"] = vr.Manifest.CeremonyID, vr.Manifest.Generation
				}
				if err := r.t.Append("record", Actor{Role: "custos"}, f); err != nil {
					return err
				}
			}
			return r.done("record")
		}},
		{"liveness", func(context.Context) error {
			if err := c.Liveness(e); err != nil {
				return err
			}
			return r.event("liveness", Actor{Role: "card", Name: name, Serial: e.Serial}, Facts{"challenge": card.LiveFormat + " challenge verified", "signing_key": wrap.FingerprintBytes(e.SigningKey)})
		}},
		{"witness", func(context.Context) error {
			w, err := o.Prompter.Witness(r.flow, r.id, name, e.Serial)
			if err != nil {
				return fmt.Errorf("witness for %q: %w", name, err)
			}
			return r.event("witness", Actor{Role: "witness", Name: w}, Facts{"custodian": name, "card_serial": int(e.Serial), "confirmed": true})
		}},
		{"slot", func(context.Context) error {
			return r.event("slot", Actor{Role: "card", Serial: e.Serial}, Facts{"slot": o.Slot.String(), "key": oldFP, "custodian": name, "used_by": used})
		}},
	}
	var ret *card.Retirement
	steps = append(steps,
		step{"destroy", func(context.Context) error {
			prompt := fmt.Sprintf("custos card retire, record %s: PIN of YubiKey %d (custodian %s); the card will destroy the key %s in slot %v by generating a throwaway key over it",
				r.id, e.Serial, name, oldFP, o.Slot)
			var err error
			if ret, err = c.Retire(card.RetireOptions{Slot: o.Slot, OldKey: old, RecordID: r.id, Rehearsal: o.Rehearsal, PIN: o.Cards.PIN, Prompt: prompt, Now: o.Now}); err != nil {
				return err
			}
			return r.event("destroy", Actor{Role: "card", Name: name, Serial: e.Serial}, Facts{"slot": o.Slot.String(), "destroyed_key": oldFP,
				"how": "a throwaway P-256 key (PIN and touch always) generated over it; a tombstone certificate stored", "throwaway_key": wrap.FingerprintBytes(ret.NewKey)})
		}},
		step{"attestation", func(context.Context) error {
			a, err := card.VerifyChain(ret.Attestation, ret.F9, trust)
			if err != nil {
				return err
			}
			if a.Serial != e.Serial || a.Slot != o.Slot || !bytes.Equal(a.PublicKey, ret.NewKey) {
				return fmt.Errorf("%w: the slot's attestation names YubiKey %d slot %v key %s, not the throwaway key", card.ErrAttestation, a.Serial, a.Slot, wrap.FingerprintBytes(a.PublicKey))
			}
			if err := r.out.WriteFile(RetireProofFile, ret.Proof()); err != nil {
				return err
			}
			if err := r.out.WriteFile(RetireTombFile, ret.TombstonePEM()); err != nil {
				return err
			}
			return r.event("attestation", Actor{Role: "card", Serial: e.Serial}, Facts{"slot": o.Slot.String(), "attested_key": wrap.FingerprintBytes(a.PublicKey),
				"chain": "verified under " + map[bool]string{true: "the rehearsal root", false: "Yubico's roots"}[a.Rehearsal], "old_key_gone": true})
		}},
	)
	var rep *RetireReport
	steps = append(steps, step{"report", func(context.Context) error {
		now := RetiredKey{Serial: e.Serial, Slot: o.Slot.String(), PublicKey: old, Fingerprint: oldFP, Record: r.id}
		rep = &RetireReport{Format: RetireReportFormat, RecordID: r.id, Rehearsal: o.Rehearsal, Retired: now, NewKey: wrap.FingerprintBytes(ret.NewKey),
			Earlier: append([]RetiredKey{}, in.earlier...), Generations: in.status(now)}
		b, err := jcs.Marshal(rep)
		if err != nil {
			return err
		}
		if err := r.out.WriteFile(RetireReportFile, append(b, '\n')); err != nil {
			return err
		}
		for _, g := range rep.Generations {
			if err := r.t.Append("report", Actor{Role: "custos"}, Facts{"ceremony_id": g.CeremonyID, "generation": g.Generation, "threshold": g.Threshold,
				"members": g.Members, "can_open": len(g.CanOpen), "revoked": g.Revoked}); err != nil {
				return err
			}
		}
		return r.done("report")
	}})
	if err := r.steps(ctx, steps...); err != nil {
		return nil, err
	}
	r.step = "seal"
	seal, err := r.seal(SealBody{Outcome: OutcomeSuccess}, c.Signer(e))
	if err != nil {
		return nil, err
	}
	return &RetireResult{Dir: o.Out, Seal: seal, Report: rep}, nil
}
