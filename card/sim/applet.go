package sim

import (
	"bytes"
	"fmt"
	"time"
)

// Status words (ISO 7816-4 and the YubiKey's use of them).
const (
	swOK                  = 0x9000
	swMoreData            = 0x6100
	swWrongPIN            = 0x63C0
	swMemoryFailure       = 0x6581
	swWrongLength         = 0x6700
	swSMNotSupported      = 0x6882
	swLastCommandExpected = 0x6883
	swSecurityStatus      = 0x6982
	swAuthBlocked         = 0x6983
	swConditions          = 0x6985
	swIncorrectData       = 0x6A80
	swNotFound            = 0x6A82
	swNoMemory            = 0x6A84
	swWrongP1P2           = 0x6A86
	swRefNotFound         = 0x6A88
	swINSNotSupported     = 0x6D00
	swCLANotSupported     = 0x6E00
	swNoDiagnosis         = 0x6F00
)

const (
	insGetResponse = 0xC0
	insSelect      = 0xA4

	// maxCommandData is the YubiKey's APDU buffer: the most data one (chained) command may carry.
	maxCommandData = 3072
	// maxResponseChunk is the most data one response APDU carries; the rest follows GET RESPONSE.
	maxResponseChunk = 256
)

type appletID int

const (
	appletPIV appletID = iota
	appletMgmt
)

var (
	aidPIV  = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}
	aidMgmt = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

// session is a card's volatile state, lost on reset and (its security part) on every SELECT.
type session struct {
	applet appletID

	pinVerified bool
	// pinAlways is set by a successful VERIFY and consumed by the next operation with a key whose
	// PIN policy is "always".
	pinAlways  bool
	mgmtAuthed bool
	// chal is the pending management key challenge: the random witness of a mutual authentication
	// (chalKind 0x80) or the challenge of an external authentication (chalKind 0x81).
	chal     []byte
	chalKind byte

	chaining bool
	chainHdr [3]byte // INS P1 P2 of the chain
	chain    []byte

	pending []byte

	// touchedAt is when the user last touched the card, for the cached touch policy.
	touchedAt time.Time
}

// clear resets the session to its power-on state.
func (s *session) clear() {
	s.logout()
	clear(s.chain)
	clear(s.pending)
	*s = session{applet: appletPIV}
}

// logout drops the PIV security state, as every SELECT does on a YubiKey 5.
func (s *session) logout() {
	s.pinVerified, s.pinAlways, s.mgmtAuthed = false, false, false
	clear(s.chal)
	s.chal, s.chalKind = nil, 0
}

// command is a parsed command APDU, after reassembly of chained parts.
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
}

// parseAPDU parses a short or extended command APDU. Le is ignored: responses are always cut into
// chunks of at most 256 bytes.
func parseAPDU(b []byte) (command, bool) {
	if len(b) < 4 {
		return command{}, false
	}
	cmd := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	switch {
	case len(body) <= 1: // case 1, or case 2S
		return cmd, true
	case body[0] != 0: // case 3S or 4S
		n := int(body[0])
		if len(body) != 1+n && len(body) != 2+n {
			return command{}, false
		}
		cmd.data = body[1 : 1+n]
		return cmd, true
	case len(body) == 3: // case 2E, or an extended Lc of 0
		return cmd, true
	case len(body) < 3:
		return command{}, false
	}
	n := int(body[1])<<8 | int(body[2])
	if len(body) != 3+n && len(body) != 5+n {
		return command{}, false
	}
	cmd.data = body[3 : 3+n]
	return cmd, true
}

func response(data []byte, sw uint16) []byte {
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, byte(sw>>8), byte(sw))
}

// Transmit executes one command APDU and returns the response APDU (data ‖ SW1 SW2). It never panics,
// and when the command changed persistent state, the card's file is written before it returns.
func (c *Card) Transmit(apdu []byte) (resp []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if recover() != nil {
			c.panics++
			c.s.clear()
			resp = response(nil, swNoDiagnosis)
		}
	}()
	if len(apdu) >= 2 {
		c.st.Counters.ByINS[apdu[1]]++
	}
	c.changed = false
	data, sw := c.dispatch(apdu)
	if err := c.save(c.changed); err != nil {
		c.s.clear()
		return response(nil, swMemoryFailure)
	}
	if sw == swOK && len(data) > maxResponseChunk {
		c.s.pending = append([]byte(nil), data[maxResponseChunk:]...)
		return response(data[:maxResponseChunk], swMore(len(c.s.pending)))
	}
	return response(data, sw)
}

// swMore is 61 xx, xx being the count of pending bytes, or 00 for 256 and more.
func swMore(left int) uint16 {
	if left > 0xFF {
		left = 0
	}
	return swMoreData | uint16(left)
}

func (c *Card) dispatch(apdu []byte) ([]byte, uint16) {
	cmd, ok := parseAPDU(apdu)
	if !ok {
		c.s.dropChain()
		return nil, swWrongLength
	}
	switch {
	case cmd.cla&0x80 != 0:
		return nil, swCLANotSupported
	case cmd.cla&0x0C != 0:
		return nil, swSMNotSupported
	case cmd.cla&^0x10 != 0:
		return nil, swCLANotSupported
	}

	if cmd.ins == insGetResponse && !c.s.chaining {
		return c.getResponse(apdu)
	}
	clear(c.s.pending)
	c.s.pending = nil

	if cmd.ins == insSelect {
		c.s.dropChain()
		return c.selectApplet(cmd)
	}

	hdr := [3]byte{cmd.ins, cmd.p1, cmd.p2}
	if c.s.chaining && hdr != c.s.chainHdr {
		c.s.dropChain()
		return nil, swLastCommandExpected
	}
	if cmd.cla&0x10 != 0 || c.s.chaining {
		if len(c.s.chain)+len(cmd.data) > maxCommandData {
			c.s.dropChain()
			return nil, swNoMemory
		}
		c.s.chain = append(c.s.chain, cmd.data...)
		c.s.chainHdr = hdr
		c.s.chaining = true
		if cmd.cla&0x10 != 0 {
			return nil, swOK
		}
		cmd.data = c.s.chain
		defer c.s.dropChain()
	}

	switch c.s.applet {
	case appletMgmt:
		return c.mgmt(cmd)
	default:
		return c.piv(cmd)
	}
}

func (s *session) dropChain() {
	clear(s.chain)
	s.chain, s.chaining = nil, false
}

// getResponse returns the next chunk of pending response data.
func (c *Card) getResponse(apdu []byte) ([]byte, uint16) {
	if len(c.s.pending) == 0 {
		return nil, swIncorrectData
	}
	n := maxResponseChunk
	if len(apdu) == 5 && apdu[4] != 0 {
		n = int(apdu[4])
	}
	n = min(n, len(c.s.pending))
	chunk := append([]byte(nil), c.s.pending[:n]...)
	rest := c.s.pending[n:]
	if len(rest) == 0 {
		clear(c.s.pending)
		c.s.pending = nil
		return chunk, swOK
	}
	c.s.pending = rest
	return chunk, swMore(len(rest))
}

// selectApplet implements SELECT by AID. Every SELECT, failed ones included, drops the PIV security
// state, as a YubiKey 5 does; a failed SELECT leaves the current applet selected.
func (c *Card) selectApplet(cmd command) ([]byte, uint16) {
	c.s.logout()
	if cmd.p1 != 0x04 || (cmd.p2 != 0x00 && cmd.p2 != 0x0C) {
		return nil, swWrongP1P2
	}
	aid := cmd.data
	switch {
	case len(aid) >= 5 && bytes.HasPrefix(aidPIV, aid):
		c.s.applet = appletPIV
		if cmd.p2 == 0x0C { // no FCI wanted
			return nil, swOK
		}
		return []byte{0x61, 0x11, 0x4F, 0x06, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
			0x79, 0x07, 0x4F, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08}, swOK
	case bytes.Equal(aid, aidMgmt):
		c.s.applet = appletMgmt
		v := c.st.Profile.firmware()
		return fmt.Appendf(nil, "Virtual mgr - FW version %d.%d.%d", v[0], v[1], v[2]), swOK
	}
	return nil, swNotFound
}
