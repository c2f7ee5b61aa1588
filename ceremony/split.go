package ceremony

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// SplitOptions are the inputs of a plain split.
type SplitOptions struct {
	Roster             string // path of roster.json
	ExpectRosterSHA256 string // the roster's SHA-256 from the minutes; required in production
	Rehearsal          bool
	Secret             []byte // the secret to split (rehearsal only); nil with Generate
	Generate           int    // generate a random secret of this many bytes (16, 24 or 32)
	Out                string // the new directory
	Deviations         []string
	Host               Facts // the custos binary and host facts the record keeps (version, SHA-256)
	// Cards reaches the card custodians for the check round: every card opens its share and check
	// token from disk before the manifest is signed.
	Cards CardOptions
	Now   func() time.Time
}

// SplitResult is what a split reports.
type SplitResult struct {
	Dir            string `json:"dir"`
	CeremonyID     string `json:"ceremony_id"`
	Threshold      int    `json:"threshold"`
	Custodians     int    `json:"custodians"`
	RosterSHA256   string `json:"roster_sha256"`
	ManifestKey    string `json:"manifest_key"`
	SecretCheck    string `json:"secret_check"`
	ManifestSHA256 string `json:"manifest_sha256"`
	Seal           string `json:"seal"`
}

// Split divides a secret among a roster's custodians: pins first, then the secret, shares and check
// tokens encrypted to each custodian, and a manifest signed by the key derived from the secret, all
// written to a new directory at once.
func Split(o SplitOptions) (*SplitResult, error) {
	rosterBytes, roster, err := loadRoster(o.Roster, o.ExpectRosterSHA256, o.Rehearsal)
	if err != nil {
		return nil, err
	}
	records, err := verifyRosterCards(roster, o.Rehearsal)
	if err != nil {
		return nil, fmt.Errorf("roster %s: %w", o.Roster, err)
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	recipients := make([]age.Recipient, len(roster.Custodians))
	for i, m := range roster.Custodians {
		if recipients[i], err = recipientFor(m); err != nil {
			return nil, err
		}
	}

	secret := o.Secret
	switch {
	case secret != nil && o.Generate != 0:
		return nil, fmt.Errorf("%w: give either a secret file or --generate, not both", ErrUsage)
	case secret == nil && o.Generate == 0:
		return nil, fmt.Errorf("%w: give --secret-file (rehearsal) or --generate 16|24|32", ErrUsage)
	case secret != nil && !o.Rehearsal:
		return nil, fmt.Errorf("%w: a secret read from a file is for rehearsals only (a production secret never touches disk); use --generate", ErrUsage)
	case secret == nil:
		if !shares.ValidSecretSize(o.Generate) {
			return nil, fmt.Errorf("%w: --generate %d: choose 16, 24 or 32 bytes", ErrUsage, o.Generate)
		}
		secret = make([]byte, o.Generate)
		defer clear(secret)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	if !shares.ValidSecretSize(len(secret)) {
		return nil, fmt.Errorf("the secret is %d bytes; custos splits AES keys of 16, 24 or 32 bytes", len(secret))
	}

	r, err := startRun("split", o.Out, "", Facts{"rehearsal": o.Rehearsal}, o.Host, o.Now, nil)
	if err != nil {
		return nil, err
	}
	defer r.close()
	id := r.id
	m := &shares.Manifest{
		Format:     shares.ManifestFormat,
		Kind:       shares.KindSplit,
		CeremonyID: id,
		Generation: 1,
		Created:    now(o.Now),
		Rehearsal:  o.Rehearsal,
		Threshold:  roster.Threshold,
		SecretSize: len(secret),
		RosterSHA:  shares.FileSHA256(rosterBytes),
		Deviations: append([]string{}, o.Deviations...),
	}
	if err := writeShares(r.out, m, roster, recipients, secret); err != nil {
		return nil, err
	}
	pinCards(m, records)
	checked, cosigners, release, err := splitCheckRound(o.Cards, r.out, m, o.Out)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := r.out.WriteFile("roster.json", rosterBytes); err != nil {
		return nil, err
	}
	key, err := manifestKey(m, secret)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	manifestFile, err := m.Sign(key)
	if err != nil {
		return nil, err
	}
	if err := r.out.WriteFile("manifest.json", manifestFile); err != nil {
		return nil, err
	}
	fp, _ := m.ManifestKeyFingerprint()
	source := "generated (OS random)"
	if o.Secret != nil {
		source = "file (rehearsal)"
	}
	custodians := []any{}
	for _, e := range m.Custodians {
		custodians = append(custodians, Facts{"name": e.Name, "recipient": e.Recipient, "kind": e.Kind, "x": e.Share.X,
			"commitment": e.Share.Commitment, "share_file_sha256": e.Share.FileSHA256, "check_file_sha256": e.Check.FileSHA256})
	}
	for _, ev := range []struct {
		step  string
		facts Facts
	}{
		{"pins", Facts{"roster_sha256": m.RosterSHA, "roster_pinned": o.ExpectRosterSHA256 != ""}},
		{"secret", Facts{"source": source, "size": m.SecretSize, "check_value": m.SecretCheck}},
		{"shares", Facts{"threshold": m.Threshold, "custodians": custodians}},
		{"check-round", Facts{"cards": checkedFacts(checked)}},
		{"manifest", Facts{"manifest_sha256": shares.FileSHA256(manifestFile), "manifest_key": fp, "deviations": toAny(m.Deviations)}},
	} {
		if err := r.event(ev.step, Actor{Role: "custos"}, ev.facts); err != nil {
			return nil, err
		}
	}
	// The check round's cards co-sign the seal with the manifest key.
	seal, err := r.seal(SealBody{Generation: m.Generation, Outcome: OutcomeSuccess}, append([]Signer{ManifestKeySigner(key)}, cosigners...)...)
	if err != nil {
		return nil, err
	}
	return &SplitResult{
		Dir: o.Out, CeremonyID: id, Threshold: m.Threshold, Custodians: len(m.Custodians),
		RosterSHA256: m.RosterSHA, ManifestKey: fp, SecretCheck: m.SecretCheck,
		ManifestSHA256: shares.FileSHA256(manifestFile), Seal: seal,
	}, nil
}

// sealedFiles are one custodian's share file and check file.
type sealedFiles struct{ share, check []byte }

// writeShares seals the shares and writes them into the output directory.
func writeShares(out *fsx.Dir, m *shares.Manifest, roster *shares.Roster, recipients []age.Recipient, secret []byte) error {
	files, err := sealShares(m, roster, recipients, secret)
	if err != nil {
		return err
	}
	for i, e := range m.Custodians {
		if err := out.WriteFile(e.Share.File, files[i].share); err != nil {
			return err
		}
		if err := out.WriteFile(e.Check.File, files[i].check); err != nil {
			return err
		}
	}
	return nil
}

// sealShares splits secret among the roster, encrypts each envelope and check token to its custodian
// (in parallel: encryption to many recipients is CPU-bound) and fills m's custodian entries.
func sealShares(m *shares.Manifest, roster *shares.Roster, recipients []age.Recipient, secret []byte) ([]sealedFiles, error) {
	split, err := shares.Split(secret, len(roster.Custodians), roster.Threshold)
	if err != nil {
		return nil, err
	}
	defer func() {
		for i := range split {
			split[i].Wipe()
		}
	}()
	m.Custodians = make([]shares.Entry, len(roster.Custodians))
	results := make([]sealedFiles, len(roster.Custodians))
	errs := make([]error, len(roster.Custodians))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, member := range roster.Custodians {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			entry, share, check, err := sealFor(m, member, recipients[i], split[i])
			m.Custodians[i], results[i], errs[i] = entry, sealedFiles{share, check}, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("custodian %q: %w", roster.Custodians[i].Name, err)
		}
	}
	return results, nil
}

// sealFor makes one custodian's share file and check file and their manifest entry.
func sealFor(m *shares.Manifest, member shares.Member, r age.Recipient, s shares.Share) (shares.Entry, []byte, []byte, error) {
	env := &shares.Envelope{
		Format: shares.EnvelopeFormat, CeremonyID: m.CeremonyID, Generation: m.Generation,
		Custodian: member.Name, Threshold: m.Threshold, X: int(s.X), Share: s.Y,
	}
	plain, err := env.Marshal()
	if err != nil {
		return shares.Entry{}, nil, nil, err
	}
	shareFile, err := encryptArmored(r, plain)
	clear(plain)
	if err != nil {
		return shares.Entry{}, nil, nil, err
	}
	tok, err := shares.NewCheckToken(m.CeremonyID, m.Generation, member.Name)
	if err != nil {
		return shares.Entry{}, nil, nil, err
	}
	defer tok.Wipe()
	plain, err = tok.Marshal()
	if err != nil {
		return shares.Entry{}, nil, nil, err
	}
	checkFile, err := encryptArmored(r, plain)
	clear(plain)
	if err != nil {
		return shares.Entry{}, nil, nil, err
	}
	return shares.Entry{
		Name: member.Name, Recipient: member.Recipient, Kind: member.Kind,
		Share: shares.ShareRef{
			File: "shares/" + member.Name + ".age", X: int(s.X),
			Commitment: shares.Commitment(m.CeremonyID, m.Generation, s.X, s.Y),
			FileSHA256: shares.FileSHA256(shareFile),
		},
		Check: shares.CheckRef{
			File: "checks/" + member.Name + ".age", FileSHA256: shares.FileSHA256(checkFile),
			ValueSHA256: tok.ValueSHA256(),
		},
	}, shareFile, checkFile, nil
}

// manifestKey fills in the secret's check value and the manifest key derived from it, and returns that
// key; the caller wipes it.
func manifestKey(m *shares.Manifest, secret []byte) (ed25519.PrivateKey, error) {
	kcv, err := wrap.KCV(secret)
	if err != nil {
		return nil, err
	}
	m.SecretCheck = kcv.String()
	key, err := shares.DeriveManifestKey(secret, m.CeremonyID)
	if err != nil {
		return nil, err
	}
	m.ManifestKey = []byte(key.Public().(ed25519.PublicKey))
	return key, nil
}

func now(f func() time.Time) string {
	if f == nil {
		f = time.Now
	}
	return f().UTC().Format(time.RFC3339)
}

// splitCheckRound has every card custodian's card open its share and its check token from disk, as
// written, before the manifest is signed (invariant 4), each card after proving liveness. It returns
// what each card showed, for the transcript, and the cards' seal co-signers, usable until release.
// With --one-reader the cards come one after another and do not co-sign.
func splitCheckRound(co CardOptions, out *fsx.Dir, m *shares.Manifest, dest string) (checked []Facts, signers []Signer, release func(), err error) {
	release = func() {}
	want, err := expectedCards(m)
	if err != nil || len(want) == 0 || co.Selector == nil {
		return nil, nil, release, err
	}
	lm := &loadedManifest{Manifest: m, dir: out.TempPath("."), final: dest}
	const purpose = "decrypt its new share and check token (check round), and co-sign the record"
	check := func(k presentKey) (bool, error) {
		e, _ := m.Custodian(k.name)
		env, err := openShare(lm, e, k.identity)
		if err != nil {
			return false, fmt.Errorf("check round: %w", err)
		}
		env.Wipe()
		if _, err := openCheckToken(lm, e, k.identity); err != nil {
			return false, fmt.Errorf("check round: %w", err)
		}
		checked = append(checked, Facts{"name": k.name, "key": k.source, "liveness": "signed " + card.LiveFormat + " challenge verified",
			"share": "opened, commitment matches", "check_token": "opened, value matches"})
		return true, nil
	}
	if co.Selector.OneReader {
		err = withCards(co, want, 0, "split", m.CeremonyID, purpose, check)
	} else {
		var keys []presentKey
		if keys, release, err = holdCards(co, want, "split", m.CeremonyID, purpose); err != nil {
			return nil, nil, func() {}, err
		}
		for _, k := range keys {
			if _, err = check(k); err != nil {
				break
			}
			signers = append(signers, k.signer)
		}
	}
	if err == nil && len(checked) < len(want) {
		err = fmt.Errorf("check round: %d of the %d cards were present; every card opens its share before the manifest is signed", len(checked), len(want))
	}
	if err != nil {
		release()
		return nil, nil, func() {}, err
	}
	return checked, signers, release, nil
}

func checkedFacts(checked []Facts) []any {
	out := []any{}
	for _, c := range checked {
		out = append(out, c)
	}
	return out
}

// pinCards fills the manifest entries of card custodians with what their verified records pin.
func pinCards(m *shares.Manifest, records map[string]*card.Record) {
	for i, e := range m.Custodians {
		if rec, ok := records[e.Name]; ok {
			m.Custodians[i].Card = card.CardInfo(rec)
		}
	}
}
