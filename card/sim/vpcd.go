package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// vpcd control messages: a frame whose payload is one byte. Power off, power on and reset answer
// nothing; get ATR answers the ATR. Any longer payload is a command APDU, answered by exactly one
// response frame. vpcd initiates every exchange and serialises them per slot.
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
)

const (
	// Reconnection back-off: vpcd accepts a card on its next presence poll, and a restarting pcscd
	// needs a moment before its ports listen again.
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// ejectWait bounds how long Eject waits for pcscd's presence poll (every 0.4 s).
	ejectWait = 2 * time.Second
)

// ErrLinkTimeout is returned when a link did not reach the awaited state in time.
var ErrLinkTimeout = errors.New("sim: timed out waiting for the vpcd link")

// A Link connects a card to a vpcd reader slot, as the card: vpcd listens on a TCP port per slot and
// the card dials it. Run keeps the card connected while it is inserted, reconnecting whenever the
// connection drops (pcscd restarted, or vpcd closed it). Eject disconnects the card, which pcscd sees
// as a card removal; Insert connects it again.
//
// pcscd learns of a card's arrival and removal only through its presence poll (a get-ATR message
// about every 0.4 s), so the link times both to that poll: Eject returns after a poll that follows
// the one that found the card gone, and a new connection counts as ready only once pcscd has powered
// the card on, read its ATR and sent the next message, by which time pcscd has recorded the card as
// present.
type Link struct {
	addr string
	busy sync.Mutex // held while a message is handled, and by Swap

	mu       sync.Mutex
	cond     *sync.Cond // broadcast on every change below
	card     *Card
	inserted bool
	conn     net.Conn // nil while not connected
	// Progress of pcscd taking in the card on the current connection.
	poweredOn bool // pcscd powered the card on
	atrRead   bool // then read its ATR
	ready     bool // then sent another message
}

// NewLink returns a link that connects card to the vpcd slot listening at addr (host:port) once Run
// is called. The card starts inserted.
func NewLink(addr string, card *Card) *Link {
	l := &Link{addr: addr, card: card, inserted: true}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// Run keeps the card connected while it is inserted, until ctx is done; then it disconnects and
// returns ctx's error.
func (l *Link) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.conn != nil {
			l.conn.Close()
		}
		l.cond.Broadcast()
	})
	defer stop()

	backoff := minBackoff
	var d net.Dialer
	for {
		l.mu.Lock()
		for !l.inserted && ctx.Err() == nil {
			l.cond.Wait()
		}
		l.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}

		conn, err := d.DialContext(ctx, "tcp", l.addr)
		if err == nil {
			if l.attach(conn) {
				l.serve(conn)
				backoff = minBackoff
			}
			l.detach(conn)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attach records conn as the link's connection, unless the card was ejected meanwhile.
func (l *Link) attach(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.inserted {
		return false
	}
	l.conn = conn
	l.poweredOn, l.atrRead, l.ready = false, false, false
	l.cond.Broadcast()
	return true
}

// detach closes conn and resets the card's volatile state: to the card, losing the reader is losing
// power.
func (l *Link) detach(conn net.Conn) {
	conn.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == conn {
		l.conn = nil
		l.poweredOn, l.atrRead, l.ready = false, false, false
	}
	l.card.Reset()
	l.cond.Broadcast()
}

// serve answers vpcd's messages on conn until it fails or is closed (by vpcd, Eject or Run).
func (l *Link) serve(conn net.Conn) {
	var hdr [2]byte
	buf := make([]byte, 0xFFFF)
	for {
		quickACK(conn)
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		msg := buf[:binary.BigEndian.Uint16(hdr[:])]
		if _, err := io.ReadFull(conn, msg); err != nil {
			return
		}
		if !l.handle(conn, msg) {
			return
		}
	}
}

// handle answers one message, and reports whether to go on.
func (l *Link) handle(conn net.Conn, msg []byte) bool {
	l.busy.Lock()
	defer l.busy.Unlock()
	resp, ok := answer(l.track(msg), msg)
	return !ok || writeFrame(conn, resp) == nil
}

// track follows pcscd taking in the card, and returns the card to answer msg.
func (l *Link) track(msg []byte) *Card {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.atrRead && !l.ready {
		l.ready = true
		l.cond.Broadcast()
	}
	if len(msg) == 1 {
		switch msg[0] {
		case vpcdPowerOn:
			l.poweredOn = true
		case vpcdGetATR:
			l.atrRead = l.atrRead || l.poweredOn
		}
	}
	return l.card
}

// answer handles one vpcd message and returns the reply, if the message takes one.
func answer(card *Card, msg []byte) ([]byte, bool) {
	if len(msg) != 1 {
		return card.Transmit(msg), true
	}
	switch msg[0] {
	case vpcdPowerOff, vpcdPowerOn, vpcdReset:
		card.Reset()
	case vpcdGetATR:
		return card.ATR(), true
	}
	// Unknown control bytes take no reply, like the vpcd reference cards.
	return nil, false
}

func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > 0xFFFF {
		return fmt.Errorf("sim: vpcd frame of %d bytes exceeds 65535", len(payload))
	}
	frame := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(frame, uint16(len(payload)))
	copy(frame[2:], payload)
	_, err := w.Write(frame)
	return err
}

// Eject takes the card out of the reader until Insert, and returns once pcscd has recorded the
// removal; the card is then disconnected, and the caller may work on the card's file.
func (l *Link) Eject() {
	l.mu.Lock()
	l.inserted = false
	l.cond.Broadcast()
	if l.conn != nil {
		l.conn.Close()
	}
	for l.conn != nil {
		l.cond.Wait()
	}
	l.mu.Unlock()
	l.awaitPoll()
}

// awaitPoll waits until pcscd has taken note of the card's removal: it connects to the empty slot
// and waits for a presence poll there, which vpcd only makes after the poll that found the card gone
// (vpcd accepts a new connection only while its slot has none). It hangs up without answering, so
// the slot stays empty. When pcscd does not listen there is nothing to wait for.
func (l *Link) awaitPoll() {
	conn, err := net.DialTimeout("tcp", l.addr, time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	if conn.SetDeadline(time.Now().Add(ejectWait)) == nil {
		var hdr [2]byte
		io.ReadFull(conn, hdr[:])
	}
}

// Insert puts the card back into the reader. The link connects on its own; WaitReady waits for pcscd
// to take the card in.
func (l *Link) Insert() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inserted = true
	l.cond.Broadcast()
}

// Swap replaces the card in the reader, without taking it out: it runs load while no message is
// being handled, and the card load returns answers from the next message on. A client that holds
// the card open finds it reset. With the card's file not in use during load, load may rewrite it.
func (l *Link) Swap(load func() (*Card, error)) error {
	l.busy.Lock()
	defer l.busy.Unlock()
	c, err := load()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.card = c
	return nil
}

// Card returns the card in the link.
func (l *Link) Card() *Card {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.card
}

// Inserted reports whether the card is in the reader (it may still be connecting).
func (l *Link) Inserted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inserted
}

// Ready reports whether pcscd has taken in the card on its current connection, so that PC/SC
// clients can connect to it.
func (l *Link) Ready() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil && l.ready
}

// WaitReady waits until the card is Ready, or timeout passes.
func (l *Link) WaitReady(timeout time.Duration) error {
	t := time.AfterFunc(timeout, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.conn == nil || !l.ready {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w at %s after %v", ErrLinkTimeout, l.addr, timeout)
		}
		l.cond.Wait()
	}
	return nil
}

// quickACK asks the kernel to acknowledge conn's next incoming segment at once rather than delay the
// ACK (Linux clears the setting as it goes, so it is set before every read). vpcd writes a frame's
// length and its payload in two sends; with Nagle's algorithm on its side, the payload waits for the
// ACK of the length, and a delayed ACK costs some 40 ms per message.
func quickACK(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
