package ceremony

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
)

// RosterOptions are the inputs of roster create.
type RosterOptions struct {
	Threshold  int
	Recipients []string // NAME=age1… software (X25519) recipients
	Records    []string // custodian record files (card enroll -o) of card custodians
	// AllowTouchNever is the reason, recorded in the roster, for accepting decryption keys whose touch
	// policy is not always in production; empty when none.
	AllowTouchNever string
	AllowSoftware   bool
	Rehearsal       bool
	Out             string
}

// RosterResult is what roster create and roster verify report.
type RosterResult struct {
	Path       string   `json:"path"`
	SHA256     string   `json:"sha256"`
	Threshold  int      `json:"threshold"`
	Custodians []string `json:"custodians"`
	Software   int      `json:"software"`
	Rehearsal  bool     `json:"rehearsal"`
}

// CreateRoster builds a k-of-n roster and writes it; its SHA-256 goes into the minutes.
func CreateRoster(o RosterOptions) (*RosterResult, error) {
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	r := &shares.Roster{Format: shares.RosterFormat, Threshold: o.Threshold, Rehearsal: o.Rehearsal, AllowSoftware: o.AllowSoftware, AllowTouchNever: o.AllowTouchNever}
	for _, path := range o.Records {
		b, err := readLimited(path, maxRecordFile)
		if err != nil {
			return nil, fmt.Errorf("custodian record: %w", err)
		}
		rec, err := card.ParseRecord(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		canon, err := rec.Marshal()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r.Custodians = append(r.Custodians, shares.Member{Name: rec.Name, Recipient: rec.Recipient, Kind: shares.KindPIVP256, Record: bytes.TrimSpace(canon)})
	}
	for _, spec := range o.Recipients {
		name, rcpt, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("%w: --recipient %q: write NAME=age1…", ErrUsage, spec)
		}
		if _, err := age.ParseX25519Recipient(rcpt); err != nil {
			return nil, fmt.Errorf("--recipient %s: %v (only native age X25519 recipients are accepted here)", name, err)
		}
		r.Custodians = append(r.Custodians, shares.Member{Name: name, Recipient: rcpt, Kind: shares.KindX25519})
	}
	sort.Slice(r.Custodians, func(i, j int) bool { return r.Custodians[i].Name < r.Custodians[j].Name })
	if !o.Rehearsal {
		if err := r.CheckProduction(); err != nil {
			return nil, err
		}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if _, err := verifyRosterCards(r, o.Rehearsal); err != nil {
		return nil, err
	}
	b, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	if err := fsx.WriteFile(o.Out, b); err != nil {
		return nil, err
	}
	return rosterResult(o.Out, b, r), nil
}

// VerifyRoster checks a roster file: structure, and the production rules unless rehearsal. It reports the
// SHA-256 to compare with the minutes.
func VerifyRoster(path string, rehearsal bool) (*RosterResult, error) {
	b, err := readLimited(path, maxRecordFile)
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	r, err := parseRoster(path, b, rehearsal)
	if err != nil {
		return nil, err
	}
	if _, err := verifyRosterCards(r, rehearsal); err != nil {
		return nil, fmt.Errorf("roster %s: %w", path, err)
	}
	return rosterResult(path, b, r), nil
}

func rosterResult(path string, b []byte, r *shares.Roster) *RosterResult {
	res := &RosterResult{Path: path, SHA256: shares.FileSHA256(b), Threshold: r.Threshold, Software: r.Software(), Rehearsal: r.Rehearsal}
	for _, m := range r.Custodians {
		res.Custodians = append(res.Custodians, m.Name)
	}
	return res
}
