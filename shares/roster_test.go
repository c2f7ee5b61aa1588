package shares

import (
	"encoding/json"
	"errors"
	"testing"

	"filippo.io/age"
)

func softwareMembers(t *testing.T, names ...string) []Member {
	var out []Member
	for _, n := range names {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Member{Name: n, Recipient: id.Recipient().String(), Kind: KindX25519})
	}
	return out
}

func TestRosterProductionRule(t *testing.T) {
	members := softwareMembers(t, "a", "b", "c", "d", "e")
	card := json.RawMessage(`{"serial":1}`)
	for i := 2; i < 5; i++ {
		members[i] = Member{Name: members[i].Name, Recipient: "age1yubikey1" + members[i].Name, Kind: KindPIVP256, Record: card}
	}
	r := &Roster{Format: RosterFormat, Threshold: 3, AllowSoftware: true, Custodians: members}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckProduction(); err != nil {
		t.Fatalf("2 software of 3-of-5: %v", err)
	}
	r.Threshold = 2
	if err := r.CheckProduction(); !errors.Is(err, ErrPolicy) {
		t.Fatalf("2 software of 2-of-5: %v, want ErrPolicy", err)
	}
	r.Threshold = 3
	r.Rehearsal = true
	if err := r.CheckProduction(); !errors.Is(err, ErrPolicy) {
		t.Fatalf("rehearsal roster in production: %v", err)
	}
}

func TestRosterValidate(t *testing.T) {
	base := func() *Roster {
		return &Roster{Format: RosterFormat, Threshold: 2, AllowSoftware: true, Custodians: softwareMembers(t, "a", "b", "c")}
	}
	for name, mut := range map[string]func(*Roster){
		"k > n":           func(r *Roster) { r.Threshold = 4 },
		"k < 2":           func(r *Roster) { r.Threshold = 1 },
		"same recipient":  func(r *Roster) { r.Custodians[1].Recipient = r.Custodians[0].Recipient },
		"same name":       func(r *Roster) { r.Custodians[1].Name = "a" },
		"bad name":        func(r *Roster) { r.Custodians[0].Name = "../a" },
		"no software ok":  func(r *Roster) { r.AllowSoftware = false },
		"bad recipient":   func(r *Roster) { r.Custodians[0].Recipient = "age1xyz" },
		"card, no record": func(r *Roster) { r.Custodians[0].Kind = KindPIVP256 },
		"unknown kind":    func(r *Roster) { r.Custodians[0].Kind = "ssh" },
		"format":          func(r *Roster) { r.Format = "custos-roster-v0" },
	} {
		r := base()
		mut(r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b, err := base().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRoster(b); err != nil {
		t.Fatal(err)
	}
}
