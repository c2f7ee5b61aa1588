package sim

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"time"
)

// PIV and Yubico-extension instructions.
const (
	insVerify        = 0x20
	insChangeRef     = 0x24
	insResetRetry    = 0x2C
	insGenerate      = 0x47
	insGenAuth       = 0x87
	insGetData       = 0xCB
	insPutData       = 0xDB
	insMoveKey       = 0xF6
	insGetMetadata   = 0xF7
	insGetSerial     = 0xF8
	insAttest        = 0xF9
	insSetPINRetries = 0xFA
	insReset         = 0xFB
	insGetVersion    = 0xFD
	insImportKey     = 0xFE
	insSetMgmtKey    = 0xFF
)

// Key references.
const (
	refPIN  = 0x80
	refPUK  = 0x81
	refMgmt = 0x9B
	refBio  = 0x96
)

var (
	defaultPIN     = padPIN([]byte("123456"))
	defaultPUK     = padPIN([]byte("12345678"))
	defaultMgmtKey = bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 3)
)

const defaultRetries = 3

func padPIN(p []byte) []byte {
	out := bytes.Repeat([]byte{0xFF}, 8)
	copy(out, p)
	return out
}

// piv executes a command for the PIV applet.
func (c *Card) piv(cmd command) ([]byte, uint16) {
	switch cmd.ins {
	case insGetVersion:
		v := c.st.Profile.firmware()
		return v[:], swOK
	case insGetSerial:
		return binary.BigEndian.AppendUint32(nil, c.st.Serial), swOK
	case insVerify:
		return c.verify(cmd)
	case insChangeRef:
		return c.changeReference(cmd)
	case insResetRetry:
		return c.resetRetryCounter(cmd)
	case insReset:
		return c.reset()
	case insSetPINRetries:
		return c.setPINRetries(cmd)
	case insSetMgmtKey:
		return c.setManagementKey(cmd)
	case insGenAuth:
		return c.generalAuthenticate(cmd)
	case insGenerate:
		return c.generate(cmd)
	case insImportKey:
		return c.importKey(cmd)
	case insGetData:
		return c.getData(cmd)
	case insPutData:
		return c.putData(cmd)
	case insAttest:
		return c.attest(cmd)
	case insGetMetadata:
		if !c.st.Profile.metadata() {
			return nil, swINSNotSupported
		}
		return c.metadata(cmd)
	case insMoveKey:
		if !c.st.Profile.fw57() {
			return nil, swINSNotSupported
		}
		return c.moveKey(cmd)
	}
	return nil, swINSNotSupported
}

// swRetries is 63 Cx with x the remaining tries, capped at 15.
func swRetries(left byte) uint16 { return swWrongPIN | uint16(min(left, 15)) }

// verify implements VERIFY: a PIN check, a retries query (no data) or, with P1 FF, a logout.
func (c *Card) verify(cmd command) ([]byte, uint16) {
	if cmd.p2 != refPIN {
		return nil, swRefNotFound
	}
	switch {
	case cmd.p1 == 0xFF && len(cmd.data) == 0:
		c.s.pinVerified, c.s.pinAlways = false, false
		return nil, swOK
	case cmd.p1 != 0x00:
		return nil, swWrongP1P2
	case len(cmd.data) == 0:
		switch {
		case c.s.pinVerified:
			return nil, swOK
		case c.st.PINLeft == 0:
			return nil, swAuthBlocked
		}
		return nil, swRetries(c.st.PINLeft)
	}
	c.st.Counters.PINVerifies++
	if len(cmd.data) != 8 {
		return nil, swIncorrectData
	}
	sw := c.checkRef(refPIN, cmd.data)
	c.s.pinVerified = sw == swOK
	c.s.pinAlways = c.s.pinVerified
	return nil, sw
}

// checkRef compares a padded PIN or PUK with the stored one and updates its retry counter: 90 00,
// 63 Cx after a mismatch, or 69 83 when blocked (no comparison made).
func (c *Card) checkRef(ref byte, value []byte) uint16 {
	stored, left, maxTries := c.st.PIN, &c.st.PINLeft, c.st.PINMax
	if ref == refPUK {
		stored, left, maxTries = c.st.PUK, &c.st.PUKLeft, c.st.PUKMax
	}
	if *left == 0 {
		return swAuthBlocked
	}
	if subtle.ConstantTimeCompare(stored, value) != 1 {
		*left--
		c.changed = true
		return swRetries(*left)
	}
	if *left != maxTries {
		*left = maxTries
		c.changed = true
	}
	return swOK
}

// validNewRef checks a new padded PIN or PUK: 6 to 8 bytes before the FF padding (and, from
// firmware 5.7, a PUK of ASCII bytes only).
func (c *Card) validNewRef(ref byte, v []byte) uint16 {
	n := len(bytes.TrimRight(v, "\xFF"))
	bad := n < 6
	if ref == refPUK && c.st.Profile.fw57() {
		for _, b := range v[:n] {
			bad = bad || b > 0x7F
		}
	}
	switch {
	case !bad:
		return swOK
	case c.st.Profile.fw57():
		return swConditions
	}
	return swIncorrectData
}

// changeReference implements CHANGE REFERENCE DATA for the PIN (P2 80) and PUK (P2 81).
func (c *Card) changeReference(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 {
		return nil, swWrongP1P2
	}
	if cmd.p2 != refPIN && cmd.p2 != refPUK {
		return nil, swRefNotFound
	}
	if len(cmd.data) != 16 {
		return nil, swIncorrectData
	}
	if sw := c.checkRef(cmd.p2, cmd.data[:8]); sw != swOK {
		if cmd.p2 == refPIN {
			c.s.pinVerified, c.s.pinAlways = false, false
		}
		return nil, sw
	}
	newValue := cmd.data[8:]
	if sw := c.validNewRef(cmd.p2, newValue); sw != swOK {
		return nil, sw
	}
	if cmd.p2 == refPIN {
		copy(c.st.PIN, newValue)
	} else {
		copy(c.st.PUK, newValue)
	}
	c.changed = true
	return nil, swOK
}

// resetRetryCounter implements RESET RETRY COUNTER: a new PIN, authorised by the PUK.
func (c *Card) resetRetryCounter(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 {
		return nil, swWrongP1P2
	}
	if cmd.p2 != refPIN {
		return nil, swRefNotFound
	}
	if len(cmd.data) != 16 {
		return nil, swIncorrectData
	}
	if sw := c.checkRef(refPUK, cmd.data[:8]); sw != swOK {
		return nil, sw
	}
	if sw := c.validNewRef(refPIN, cmd.data[8:]); sw != swOK {
		return nil, sw
	}
	copy(c.st.PIN, cmd.data[8:])
	c.st.PINLeft = c.st.PINMax
	c.changed = true
	return nil, swOK
}

// reset implements the Yubico RESET: allowed only when both PIN and PUK are blocked, it restores the
// factory PIV state but keeps the attestation key and certificate.
func (c *Card) reset() ([]byte, uint16) {
	if c.st.PINLeft != 0 || c.st.PUKLeft != 0 {
		return nil, swConditions
	}
	c.st.resetPIV()
	c.s.clear()
	c.changed = true
	return nil, swOK
}

// resetPIV puts the PIV applet in its factory state, keeping slot F9 and object 5FFF01.
func (st *cardState) resetPIV() {
	st.PIN, st.PUK = bytes.Clone(defaultPIN), bytes.Clone(defaultPUK)
	st.PINMax, st.PINLeft, st.PUKMax, st.PUKLeft = defaultRetries, defaultRetries, defaultRetries, defaultRetries
	st.MgmtAlg, st.MgmtKey, st.MgmtTouch = st.Profile.defaultManagementAlg(), bytes.Clone(defaultMgmtKey), touchNever
	keys := map[byte]*slotKey{}
	if k, ok := st.Keys[slotAttestation]; ok {
		keys[slotAttestation] = k
	}
	st.Keys = keys
	objects := map[uint32][]byte{}
	if o, ok := st.Objects[objAttestation]; ok {
		objects[objAttestation] = o
	}
	st.Objects = objects
}

// setPINRetries implements SET PIN RETRIES: new maximum tries for PIN (P1) and PUK (P2), which also
// restores the default PIN and PUK.
func (c *Card) setPINRetries(cmd command) ([]byte, uint16) {
	if !c.s.mgmtAuthed || !c.s.pinVerified {
		return nil, swSecurityStatus
	}
	if cmd.p1 == 0 || cmd.p2 == 0 {
		return nil, swIncorrectData
	}
	c.st.PIN, c.st.PUK = bytes.Clone(defaultPIN), bytes.Clone(defaultPUK)
	c.st.PINMax, c.st.PINLeft, c.st.PUKMax, c.st.PUKLeft = cmd.p1, cmd.p1, cmd.p2, cmd.p2
	c.s.pinVerified, c.s.pinAlways = false, false
	c.changed = true
	return nil, swOK
}

// setManagementKey implements SET MANAGEMENT KEY: P2 FF (no touch), FE (touch) or FD (cached touch);
// data = algorithm ‖ 9B ‖ length ‖ key.
func (c *Card) setManagementKey(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0xFF || cmd.p2 < 0xFD {
		return nil, swWrongP1P2
	}
	if !c.s.mgmtAuthed {
		return nil, swSecurityStatus
	}
	d := cmd.data
	if len(d) < 3 || d[1] != refMgmt || int(d[2]) != len(d)-3 {
		return nil, swIncorrectData
	}
	alg, key := d[0], d[3:]
	if n, ok := mgmtKeyLen[alg]; !ok || n != len(key) || (alg != alg3DES && !c.st.Profile.aesManagementKeys()) {
		return nil, swIncorrectData
	}
	clear(c.st.MgmtKey)
	c.st.MgmtAlg, c.st.MgmtKey = alg, bytes.Clone(key)
	c.st.MgmtTouch = map[byte]byte{0xFF: touchNever, 0xFE: touchAlways, 0xFD: touchCached}[cmd.p2]
	c.changed = true
	return nil, swOK
}

// touchCache is how long a touch also serves operations under the cached touch policy.
const touchCache = 15 * time.Second

// touched reports whether an operation under the touch policy may proceed: the user touches the
// card unless touch is set to deny, and a touch in the last 15 seconds serves a cached-touch key.
func (c *Card) touched(policy byte) bool {
	now := c.now()
	switch {
	case policy == touchNever:
		return true
	case !c.st.DenyTouch:
		c.s.touchedAt = now
		return true
	}
	return policy == touchCached && !c.s.touchedAt.IsZero() && now.Sub(c.s.touchedAt) < touchCache
}

// pinSatisfied reports whether an operation under the PIN policy may proceed. Every private key
// operation consumes the VERIFY just before it, so that under "always" each one needs its own.
func (c *Card) pinSatisfied(policy byte) bool {
	fresh := c.s.pinAlways
	c.s.pinAlways = false
	switch policy {
	case pinNever:
		return true
	case pinOnce:
		return c.s.pinVerified
	case pinAlways:
		return fresh
	}
	return false
}
