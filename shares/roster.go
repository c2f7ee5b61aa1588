package shares

import (
	"encoding/json"
	"errors"
	"fmt"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/jcs"
)

// RosterFormat is the version string of a roster.
const RosterFormat = "custos-roster-v1"

// Recipient kinds.
const (
	// KindX25519 is a native age X25519 recipient: a software custodian, allowed only with
	// --allow-software and, in production, for fewer than k custodians.
	KindX25519 = "x25519"
	// KindPIVP256 is a YubiKey PIV P-256 recipient (age1yubikey1…), with an enrollment record.
	KindPIVP256 = "piv-p256"
)

// ErrPolicy is returned when a roster breaks a production rule.
var ErrPolicy = errors.New("roster policy")

// Roster is the k-of-n list of custodians a split is made for. Its SHA-256 (of the file, as written)
// goes into the minutes and is pinned by every flow that writes shares.
type Roster struct {
	Format          string   `json:"format"`
	Threshold       int      `json:"threshold"`
	Rehearsal       bool     `json:"rehearsal"`
	AllowSoftware   bool     `json:"allow_software"`
	AllowTouchNever string   `json:"allow_touch_never"`
	Custodians      []Member `json:"custodians"`
}

// Member is one custodian of a roster. Record holds a card custodian's enrollment record (verified by
// the card package); it is null for software recipients.
type Member struct {
	Name      string          `json:"name"`
	Recipient string          `json:"recipient"`
	Kind      string          `json:"kind"`
	Record    json.RawMessage `json:"record"`
}

// Marshal validates the roster and returns the roster file.
func (r *Roster) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := jcs.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseRoster parses and validates a roster file.
func ParseRoster(b []byte) (*Roster, error) {
	var r Roster
	if err := jcs.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the roster's structure: format, k-of-n, names and recipients each once, software
// recipients only when allowed. It does not verify card attestations (the card package does).
func (r *Roster) Validate() error {
	if r.Format != RosterFormat {
		return fmt.Errorf("roster: format %q, want %q", r.Format, RosterFormat)
	}
	if err := CheckThreshold(len(r.Custodians), r.Threshold); err != nil {
		return fmt.Errorf("roster: %w", err)
	}
	names, recipients := map[string]bool{}, map[string]string{}
	for _, m := range r.Custodians {
		if !ValidName(m.Name) {
			return fmt.Errorf("roster: custodian name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", m.Name)
		}
		if names[m.Name] {
			return fmt.Errorf("roster: custodian %q is listed twice", m.Name)
		}
		if other, ok := recipients[m.Recipient]; ok {
			return fmt.Errorf("roster: custodians %q and %q have the same recipient %s", other, m.Name, m.Recipient)
		}
		names[m.Name], recipients[m.Recipient] = true, m.Name
		switch m.Kind {
		case KindX25519:
			if !r.AllowSoftware {
				return fmt.Errorf("roster: custodian %q has a software (X25519) recipient; that needs --allow-software", m.Name)
			}
			if _, err := age.ParseX25519Recipient(m.Recipient); err != nil {
				return fmt.Errorf("roster: custodian %q: %v", m.Name, err)
			}
			if len(m.Record) != 0 && string(m.Record) != "null" {
				return fmt.Errorf("roster: custodian %q: a software recipient has no card record", m.Name)
			}
		case KindPIVP256:
			if len(m.Record) == 0 || string(m.Record) == "null" {
				return fmt.Errorf("roster: custodian %q: a card recipient needs its enrollment record", m.Name)
			}
		default:
			return fmt.Errorf("roster: custodian %q: unknown recipient kind %q", m.Name, m.Kind)
		}
	}
	return nil
}

// Software returns how many custodians have software recipients.
func (r *Roster) Software() int {
	n := 0
	for _, m := range r.Custodians {
		if m.Kind == KindX25519 {
			n++
		}
	}
	return n
}

// CheckProduction applies the production rules: no rehearsal roster, and fewer than k software
// recipients, so that no quorum can form without cards.
func (r *Roster) CheckProduction() error {
	if r.Rehearsal {
		return fmt.Errorf("%w: this is a rehearsal roster; production never uses rehearsal artifacts", ErrPolicy)
	}
	if s := r.Software(); s >= r.Threshold {
		return fmt.Errorf("%w: %d of %d custodians are software recipients, but production allows at most %d (fewer than the threshold), so that no quorum forms without cards", ErrPolicy, s, len(r.Custodians), r.Threshold-1)
	}
	return nil
}
