package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// The control protocol: the sim's daemon listens on DIR/control.sock (mode 0600; the directory is
// shared with the host, the socket is a path, so it works across the network namespace). A client
// connects, writes one JSON request, reads one JSON reply, and the daemon closes the connection.

// ErrNotRunning is returned when no sim daemon answers on a directory's control socket.
var ErrNotRunning = errors.New("sim: not running (run custos-sim up)")

// ErrNoCard is returned for a serial that is not one of the sim's cards.
var ErrNoCard = errors.New("sim: no such card in this sim")

type request struct {
	Op      string `json:"op"` // status, eject, insert, touch, snapshot, restore, down
	Serial  uint32 `json:"serial,omitempty"`
	Approve bool   `json:"approve,omitempty"`
	Name    string `json:"name,omitempty"`
}

type reply struct {
	Error   string  `json:"error,omitempty"`
	NoCard  bool    `json:"no_card,omitempty"`
	Status  *Status `json:"status,omitempty"`
	Timeout bool    `json:"timeout,omitempty"`
}

// Status is what a running sim reports about itself.
type Status struct {
	Dir     string `json:"dir"`
	Socket  string `json:"pcsclite_csock_name"`
	Profile string `json:"profile"`
	// PCSCDStarts counts how often the daemon started pcscd: 1, plus one per restart after pcscd
	// exited on its own.
	PCSCDStarts int          `json:"pcscd_starts"`
	PCSCDUp     bool         `json:"pcscd_up"`
	Cards       []CardStatus `json:"cards"`
}

// CardStatus is one card's place and state.
type CardStatus struct {
	Serial uint32 `json:"serial"`
	Reader string `json:"reader"`
	// Inserted is false after eject, until insert.
	Inserted bool `json:"inserted"`
	// Ready is true when the card is connected to its reader and pcscd has taken it in, so that
	// PC/SC clients can connect to it.
	Ready bool `json:"ready"`
	// APDUs counts command APDUs by instruction byte (two hex digits), as the card counts them
	// (persistent, so across ups); the readiness check of up adds SELECT, GET VERSION and GET SERIAL.
	APDUs       map[string]uint64 `json:"apdus_by_ins"`
	PINVerifies uint64            `json:"pin_verifies"`
}

// Counters returns the card's counters in the card's own form.
func (cs CardStatus) Counters() Counters {
	c := Counters{ByINS: make(map[byte]uint64, len(cs.APDUs)), PINVerifies: cs.PINVerifies}
	for k, v := range cs.APDUs {
		if ins, err := strconv.ParseUint(k, 16, 8); err == nil {
			c.ByINS[byte(ins)] = v
		}
	}
	return c
}

func cardStatus(serial uint32, i int, l *Link) CardStatus {
	cs := CardStatus{Serial: serial, Reader: readerName(i), Inserted: l.Inserted(), Ready: l.Ready()}
	c := l.Card().Counters()
	cs.PINVerifies = c.PINVerifies
	cs.APDUs = make(map[string]uint64, len(c.ByINS))
	for ins, n := range c.ByINS {
		cs.APDUs[fmt.Sprintf("%02X", ins)] = n
	}
	return cs
}

// call sends one request to the daemon of the sim in dir and returns its reply.
func call(dir string, req request, timeout time.Duration) (*reply, error) {
	conn, err := net.DialTimeout("unix", filepath.Join(dir, controlSock), time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotRunning, dir, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("sim: control socket: %w", err)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("sim: control request %s: %w", req.Op, err)
	}
	var rep reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return nil, fmt.Errorf("sim: control reply to %s: %w", req.Op, err)
	}
	switch {
	case rep.NoCard:
		return nil, fmt.Errorf("%w: serial %d", ErrNoCard, req.Serial)
	case rep.Timeout:
		return nil, fmt.Errorf("%w: %s", ErrLinkTimeout, rep.Error)
	case rep.Error != "":
		return nil, fmt.Errorf("sim: %s: %s", req.Op, rep.Error)
	}
	return &rep, nil
}
