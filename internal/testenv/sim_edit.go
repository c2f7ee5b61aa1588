package testenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// EditCard puts into the card with this serial the state of the card from (itself or another), as it
// is now, changed by edit, which gets the card file's JSON (docs/sim.md): for example a copy of another
// card's keys under this serial ("serial" kept), or another firmware ("profile": "5.2"). The card stays
// in its reader and looks reset to clients.
func (e *SimEnv) EditCard(t testing.TB, serial, from uint32, edit func(state map[string]any)) {
	t.Helper()
	if err := e.s.Snapshot(from, "edit-source"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.dir, "snapshots")
	b, err := os.ReadFile(filepath.Join(dir, strconv.FormatUint(uint64(from), 10)+"-edit-source.card"))
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatal(err)
	}
	state["serial"] = serial
	edit(state)
	if b, err = json.Marshal(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, strconv.FormatUint(uint64(serial), 10)+"-edited.card"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Restore(serial, "edited"); err != nil {
		t.Fatal(err)
	}
}
