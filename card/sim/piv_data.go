package sim

// Data objects.
const (
	objDiscovery   = 0x7E
	objBIT         = 0x7F61
	objAttestation = 0x5FFF01

	tagObjectList = 0x5C
	tagObjectData = 0x53

	// maxObject is the largest object value a YubiKey stores.
	maxObject = 3063
)

// pinProtectedObjects can be read only after VERIFY: printed information (which holds the
// PIN-protected management key), facial image, fingerprints and iris images.
var pinProtectedObjects = map[uint32]bool{0x5FC109: true, 0x5FC108: true, 0x5FC103: true, 0x5FC121: true}

// discovery is the synthesised Discovery Object: the PIV AID and PIN usage policy.
var discovery = []byte{0x7E, 0x12, 0x4F, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01,
	0x00, 0x5F, 0x2F, 0x02, 0x40, 0x00}

// objectTag parses a tag list element 5C naming one object: 7E, 7F 61, or 5F xx xx.
func objectTag(t tlv) (uint32, bool) {
	if t.tag != tagObjectList {
		return 0, false
	}
	v := t.value
	switch {
	case len(v) == 1 && v[0] == objDiscovery:
		return objDiscovery, true
	case len(v) == 2 && v[0] == 0x7F && v[1] == 0x61:
		return objBIT, true
	case len(v) == 3 && v[0] == 0x5F:
		return uint32(v[0])<<16 | uint32(v[1])<<8 | uint32(v[2]), true
	}
	return 0, false
}

// getData implements GET DATA: 5C names the object; the answer is 53 L value (the Discovery Object
// is answered as is).
func (c *Card) getData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return nil, swWrongP1P2
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil || len(ts) != 1 {
		return nil, swIncorrectData
	}
	tag, ok := objectTag(ts[0])
	if !ok {
		return nil, swIncorrectData
	}
	if tag == objDiscovery {
		return append([]byte(nil), discovery...), swOK
	}
	if pinProtectedObjects[tag] && !c.s.pinVerified {
		return nil, swSecurityStatus
	}
	v, ok := c.st.Objects[tag]
	if !ok {
		return nil, swNotFound
	}
	return appendTLV(nil, tagObjectData, v), swOK
}

// putData implements PUT DATA: 5C names the object, 53 holds its new value; an empty value deletes
// the object. The card stores values verbatim.
func (c *Card) putData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return nil, swWrongP1P2
	}
	if !c.s.mgmtAuthed {
		return nil, swSecurityStatus
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil || len(ts) != 2 || ts[1].tag != tagObjectData {
		return nil, swIncorrectData
	}
	tag, ok := objectTag(ts[0])
	if !ok || tag == objDiscovery || tag == objBIT {
		return nil, swIncorrectData
	}
	v := ts[1].value
	if len(v) > maxObject {
		return nil, swNoMemory
	}
	if len(v) == 0 {
		delete(c.st.Objects, tag)
	} else {
		c.st.Objects[tag] = append([]byte(nil), v...)
	}
	c.changed = true
	return nil, swOK
}

// metadata implements GET METADATA for the PIN, the PUK, the management key and key slots.
func (c *Card) metadata(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 {
		return nil, swWrongP1P2
	}
	var out []byte
	switch ref := cmd.p2; ref {
	case refPIN, refPUK:
		v, maxTries, left, def := c.st.PIN, c.st.PINMax, c.st.PINLeft, defaultPIN
		if ref == refPUK {
			v, maxTries, left, def = c.st.PUK, c.st.PUKMax, c.st.PUKLeft, defaultPUK
		}
		out = appendTLV(out, 0x01, []byte{0xFF})
		out = appendTLV(out, 0x05, []byte{boolByte(string(v) == string(def))})
		out = appendTLV(out, 0x06, []byte{maxTries, left})
	case refMgmt:
		out = appendTLV(out, 0x01, []byte{c.st.MgmtAlg})
		out = appendTLV(out, 0x02, []byte{0x00, c.st.MgmtTouch})
		out = appendTLV(out, 0x05, []byte{boolByte(string(c.st.MgmtKey) == string(defaultMgmtKey))})
	default:
		k, ok := c.st.Keys[ref]
		if !ok {
			return nil, swRefNotFound
		}
		pub, err := publicTLVs(k.priv)
		if err != nil {
			return nil, swNoDiagnosis
		}
		out = appendTLV(out, 0x01, []byte{k.Alg})
		out = appendTLV(out, 0x02, []byte{k.PIN, k.Touch})
		out = appendTLV(out, 0x03, []byte{k.Origin})
		out = appendTLV(out, 0x04, pub)
	}
	return out, swOK
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
