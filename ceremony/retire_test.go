package ceremony

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/shares"
)

// retireFixture is one ceremony whose generation 1 (2 of 3: cards 1 and 2 in slot 82, software s) was
// superseded by generation 2 (the same cards in slot 83, and s).
func retireFixture() *retireInputs {
	entry := func(name string, serial uint32, slot string, key byte) shares.Entry {
		if serial == 0 {
			return shares.Entry{Name: name, Kind: "x25519"}
		}
		return shares.Entry{Name: name, Kind: "piv-p256", Card: &shares.CardInfo{Serial: serial, Slot: slot, DecryptionKey: []byte{key}}}
	}
	g1 := &shares.Manifest{CeremonyID: "c", Generation: 1, Threshold: 2, Custodians: []shares.Entry{entry("a", 1, "82", 1), entry("b", 2, "82", 2), entry("s", 0, "", 0)}}
	g2 := &shares.Manifest{CeremonyID: "c", Generation: 2, Threshold: 2, Custodians: []shares.Entry{entry("a2", 1, "83", 3), entry("b2", 2, "83", 4), entry("s", 0, "", 0)}}
	return &retireInputs{ceremonies: map[string]*ceremonyGens{"c": {
		gens: map[int]*shares.Manifest{1: g1, 2: g2}, latest: &VerifiedRecord{Seal: "SHA256:g2"}, last: g2,
	}}}
}

// TestRetireStatus: an older generation is called revoked only when fewer than k members can open their
// shares; a software member always can; an earlier retirement counts only for the key it destroyed, and
// only when its card co-signed it; a key of the latest generation is refused by its card and slot, or by
// the key itself.
func TestRetireStatus(t *testing.T) {
	in := retireFixture()
	now := RetiredKey{Serial: 1, Slot: "82", PublicKey: []byte{1}}
	st := in.status(now)
	if len(st) != 1 || st[0].Generation != 1 || st[0].Latest != 2 || st[0].Revoked || !slices.Equal(st[0].CanOpen, []string{"b", "s"}) || !slices.Equal(st[0].Cannot, []string{"a"}) {
		t.Fatalf("one card retired: %+v", st)
	}
	in.earlier = []RetiredKey{{Serial: 2, Slot: "82", PublicKey: []byte{9}}}
	if st := in.status(now); st[0].Revoked {
		t.Fatalf("an earlier retirement of another key in b's slot revoked generation 1: %+v", st)
	}
	in.earlier[0].PublicKey = []byte{2}
	if st := in.status(now); !st[0].Revoked || !slices.Equal(st[0].CanOpen, []string{"s"}) {
		t.Fatalf("two cards retired: %+v", st)
	}

	in = retireFixture()
	in.ceremonies["c"].gens[1].Custodians[1].Card.SigningKey = []byte{42}
	b := RetiredKey{Serial: 2, Slot: "82", PublicKey: []byte{2}}
	in.pending = []earlierRetirement{{dir: "forged", key: b, signer: []byte{43}}}
	if err := in.checkEarlier(); !errors.Is(err, ErrTranscript) || !strings.Contains(err.Error(), "retire record forged is co-signed as YubiKey 2 by a key other than") {
		t.Fatalf("a retire record not signed by the card: %v", err)
	}
	in.pending = []earlierRetirement{{dir: "other card", key: RetiredKey{Serial: 7, Slot: "82"}, signer: []byte{42}}, {dir: "b", key: b, signer: []byte{42}}}
	if err := in.checkEarlier(); err != nil || len(in.earlier) != 1 || in.earlier[0].Serial != 2 {
		t.Fatalf("earlier retirements kept: %v, %+v", err, in.earlier)
	}

	if err := in.refuseCurrent(1, 0x83, []byte{7}); !errors.Is(err, ErrCurrentRecipient) || !strings.Contains(err.Error(), `custodian "a2" in generation 2, the latest of ceremony c`) {
		t.Fatalf("latest generation's slot: %v", err)
	}
	if err := in.refuseCurrent(5, 0x82, []byte{4}); !errors.Is(err, ErrCurrentRecipient) || !strings.Contains(err.Error(), `"b2"`) {
		t.Fatalf("latest generation's key in another slot: %v", err)
	}
	if err := in.refuseCurrent(1, 0x82, []byte{1}); err != nil {
		t.Fatalf("an old generation's key: %v", err)
	}
}

// TestRetireRecords: the records are verified and grouped by ceremony, a superseded manifest kept in a
// later record counting as its generation; production needs the latest record of each ceremony pinned by
// its seal; rehearsal and production never mix; ceremonies without cards leave nothing to retire.
func TestRetireRecords(t *testing.T) {
	dir := t.TempDir()
	roster, ids := softwareRoster(t, dir, 3, 2)
	gen1 := filepath.Join(dir, "gen1")
	sres, err := Split(SplitOptions{Roster: roster, Rehearsal: true, Generate: 32, Out: gen1})
	if err != nil {
		t.Fatal(err)
	}
	gen2 := filepath.Join(dir, "gen2")
	rres, err := Reshare(context.Background(), NextGeneration{Ceremony: []string{gen1}, Roster: roster, Identities: ids, Out: gen2, Rehearsal: true,
		Preflight: rehearsalPreflight(t), Prompter: &rehearsalWitness{name: "wanda"}})
	if err != nil {
		t.Fatal(err)
	}

	in, err := loadRetireInputs([]string{gen2}, true)
	if err != nil {
		t.Fatal(err)
	}
	cg := in.ceremonies[sres.CeremonyID]
	if cg == nil || len(cg.gens) != 2 || cg.last.Generation != 2 || cg.latest.Seal != rres.Seal {
		t.Fatalf("generations found: %+v", cg)
	}
	if _, err := loadRetireInputs([]string{gen1, gen2}, false); err == nil || !strings.Contains(err.Error(), "never mix") {
		t.Fatalf("rehearsal records in production: %v", err)
	}
	in, err = loadRetireInputs([]string{gen1, gen2}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.checkSeals(nil, false); !errors.Is(err, ErrUsage) {
		t.Fatalf("production without --expect-seal: %v", err)
	}
	if err := in.checkSeals([]string{sres.Seal}, true); !errors.Is(err, ErrPin) || !strings.Contains(err.Error(), "a record of a later generation may be missing") {
		t.Fatalf("only the superseded record pinned: %v", err)
	}
	if err := in.checkSeals([]string{"SHA256:AAAA"}, true); !errors.Is(err, ErrPin) {
		t.Fatalf("a seal of no record given: %v", err)
	}
	if err := in.checkSeals([]string{rres.Seal}, false); err != nil {
		t.Fatal(err)
	}
	_, err = Retire(context.Background(), RetireOptions{Slot: 0x82, Ceremony: []string{gen1, gen2}, Out: filepath.Join(dir, "r"), Rehearsal: true,
		Preflight: rehearsalPreflight(t), Prompter: &rehearsalWitness{name: "wanda"}, Cards: CardOptions{Selector: &card.Selector{}}})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "no card custodians") {
		t.Fatalf("software ceremonies: %v", err)
	}
}
