package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits of one sim: pcscd 1.9.9 serves at most 16 reader slots, and each vpcd reader entry has two
// slots, so 8 entries hold 16 cards, one card per slot.
const (
	MaxCards    = 16
	slotsPerPCD = 2
	// basePort is CHANNELID of the first vpcd entry; card i listens on basePort+i. The ports exist
	// only in the sim's own network namespace.
	basePort = 0x8C7B
	// DefaultFirstSerial is the serial of a new sim's first card; the others follow it.
	DefaultFirstSerial uint32 = 10000001
)

// Files and directories in a sim directory.
const (
	layoutFile   = "sim.json"
	runFile      = "run.json"
	controlSock  = "control.sock"
	pcscdDir     = "pcscd" // bound over /run/pcscd inside the sim
	pcscdSock    = "pcscd.comm"
	cardsDir     = "cards"
	readerConf   = "reader.conf"
	emptyDrivers = "no-drivers" // bound over /usr/lib/pcsc/drivers inside the sim
	logFile      = "sim.log"
	snapshotsDir = "snapshots"
)

// vpcdDriver is where Debian's vsmartcard-vpcd package installs the vpcd reader driver.
const vpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// ErrNoSim is returned when a directory holds no sim (no custos-sim up ran there).
var ErrNoSim = errors.New("sim: no sim in this directory (run custos-sim up first)")

// layout is the fixed part of a sim, written by the first up and read by every later command: which
// cards exist, in which order. Card i sits in reader slot i.
type layout struct {
	Version int      `json:"version"`
	Profile Profile  `json:"profile"`
	Serials []uint32 `json:"serials"`
}

// readerName is the name pcscd gives card i's reader: the friendly name of its vpcd entry, then
// pcscd's reader index (00: pcscd numbers readers per friendly name, and each entry has its own) and
// the slot. Entries need distinct friendly names, or pcscd gives every entry's slots the same names.
func readerName(i int) string {
	return fmt.Sprintf("%s 00 %02X", friendlyName(i/slotsPerPCD), i%slotsPerPCD)
}

func friendlyName(entry int) string { return fmt.Sprintf("Virtual PCD %d", entry) }

func cardPort(i int) int { return basePort + i }

func cardFile(dir string, serial uint32) string {
	return filepath.Join(dir, cardsDir, strconv.FormatUint(uint64(serial), 10)+".card")
}

// SocketPath returns the pcscd socket of the sim in dir, the value for PCSCLITE_CSOCK_NAME.
func SocketPath(dir string) string { return filepath.Join(dir, pcscdDir, pcscdSock) }

func readLayout(dir string) (*layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, layoutFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoSim, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("sim: read layout: %w", err)
	}
	var l layout
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("sim: parse %s: %w", layoutFile, err)
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("sim: %s has version %d, want 1", layoutFile, l.Version)
	}
	if len(l.Serials) == 0 || len(l.Serials) > MaxCards {
		return nil, fmt.Errorf("sim: %s lists %d cards, want 1 to %d", layoutFile, len(l.Serials), MaxCards)
	}
	return &l, nil
}

func entries(n int) int { return (n + slotsPerPCD - 1) / slotsPerPCD }

// driverCopy is the vpcd driver for reader entry e. The driver keeps its connections in a global
// array indexed by slot, so entries sharing one loaded library would take over each other's slots;
// pcscd and the dynamic loader load one library per file, hence a copy (not a link) per entry. The
// copies live outside /usr/lib/pcsc/drivers, which is empty inside the sim.
func driverCopy(dir string, e int) string {
	return filepath.Join(dir, fmt.Sprintf("libifdvpcd-%d.so", e))
}

// readerConfig returns pcscd's reader configuration for n cards: one vpcd entry per two cards, each
// listening (server mode, "/dev/null:PORT") on two consecutive ports.
func readerConfig(dir string, n int) string {
	var b strings.Builder
	for e := range entries(n) {
		port := cardPort(e * slotsPerPCD)
		fmt.Fprintf(&b, "FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:0x%04X\nLIBPATH %s\nCHANNELID 0x%04X\n\n",
			friendlyName(e), port, driverCopy(dir, e), port)
	}
	return b.String()
}

// readerNames lists every reader the sim's pcscd serves for n cards: both slots of each entry.
func readerNames(n int) []string {
	names := make([]string, entries(n)*slotsPerPCD)
	for i := range names {
		names[i] = readerName(i)
	}
	return names
}
