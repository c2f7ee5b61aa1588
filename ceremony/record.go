package ceremony

import (
	"fmt"
	"path/filepath"

	"github.com/custos-pki/custos/shares"
)

// loadRoster reads a roster, checks it against its pin from the minutes (required in production) and
// applies the production or rehearsal rules. It returns the file as read and the parsed roster.
func loadRoster(path, expectSHA256 string, rehearsal bool) ([]byte, *shares.Roster, error) {
	if !rehearsal && expectSHA256 == "" {
		return nil, nil, fmt.Errorf("%w: --expect-roster-sha256 is required: the roster's SHA-256 from the minutes", ErrUsage)
	}
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return nil, nil, fmt.Errorf("roster: %w", err)
	}
	// The roster's own SHA-256 is not shown on a mismatch, so that it cannot be copied from the screen.
	if expectSHA256 != "" && shares.FileSHA256(b) != expectSHA256 {
		return nil, nil, fmt.Errorf("%w: the SHA-256 of roster %s is not the one in the minutes; use the roster the witnesses recorded", ErrPin, path)
	}
	r, err := parseRoster(path, b, rehearsal)
	return b, r, err
}

// parseRoster parses a roster file and applies the production or rehearsal rules.
func parseRoster(path string, b []byte, rehearsal bool) (*shares.Roster, error) {
	r, err := shares.ParseRoster(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rehearsal && !r.Rehearsal {
		return nil, fmt.Errorf("roster %s is a production roster; rehearsals use rehearsal rosters only", path)
	}
	if !rehearsal {
		if err := r.CheckProduction(); err != nil {
			return nil, fmt.Errorf("roster %s: %w", path, err)
		}
	}
	return r, nil
}

// loadedManifest is a manifest read from a record directory, with its file bytes.
type loadedManifest struct {
	*shares.Manifest
	dir   string
	final string // where a record being built will be; "" for a record read from disk
	file  []byte
}

// loadManifest reads DIR/manifest.json, verifies its signature and its pinned key (required in
// production), and refuses to mix rehearsal and production.
func loadManifest(dir, expectKey string, rehearsal bool) (*loadedManifest, error) {
	if !rehearsal && expectKey == "" {
		return nil, fmt.Errorf("%w: --expect-manifest-key is required: the manifest key fingerprint from the minutes", ErrUsage)
	}
	path := filepath.Join(dir, "manifest.json")
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m, err := shares.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if expectKey != "" {
		if err := m.CheckPin(expectKey); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPin, path, err)
		}
	}
	switch {
	case rehearsal && !m.Rehearsal:
		return nil, fmt.Errorf("%s is a production record; rehearsals never use production artifacts", path)
	case !rehearsal && m.Rehearsal:
		return nil, fmt.Errorf("%s is a rehearsal record; production never uses rehearsal artifacts", path)
	}
	return &loadedManifest{Manifest: m, dir: dir, file: b}, nil
}

// loadSealedManifest reads the manifest of the record in dir pinned by its seal from the minutes: the
// record's transcript and seal verify, the seal is the expected one, and the manifest is the file the
// seal lists.
func loadSealedManifest(dir, expectSeal string, rehearsal bool) (*loadedManifest, error) {
	records, err := VerifyRecords([]string{dir}, expectSeal)
	if err != nil {
		return nil, err
	}
	vr := records[0]
	if vr.Manifest == nil || vr.Outcome != OutcomeSuccess {
		return nil, fmt.Errorf("%s holds no current generation of shares", dir)
	}
	path := filepath.Join(dir, "manifest.json")
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if shares.FileSHA256(b) != vr.Body.Files["manifest.json"] {
		return nil, fmt.Errorf("%w: %s is not the manifest the seal lists", ErrTranscript, path)
	}
	if vr.Manifest.Rehearsal != rehearsal {
		return nil, fmt.Errorf("%s: rehearsal and production never mix", dir)
	}
	return &loadedManifest{Manifest: vr.Manifest, dir: dir, file: b}, nil
}

// path returns the path of a file of the record.
func (lm *loadedManifest) path(rel string) string { return filepath.Join(lm.dir, rel) }

// shown returns the path of a file of the record as messages name it: where the record is, or will be
// once the flow writing it commits.
func (lm *loadedManifest) shown(rel string) string {
	if lm.final != "" {
		return filepath.Join(lm.final, rel)
	}
	return lm.path(rel)
}

// readListed reads a file the manifest lists and checks its SHA-256 against the signed value.
func (lm *loadedManifest) readListed(rel, wantSHA256 string) ([]byte, error) {
	b, err := readSmall(lm.path(rel))
	if err != nil {
		return nil, err
	}
	if shares.FileSHA256(b) != wantSHA256 {
		return nil, fmt.Errorf("%s: its SHA-256 differs from the signed manifest; the file was changed or replaced", lm.shown(rel))
	}
	return b, nil
}
