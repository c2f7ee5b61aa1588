package sim

// Tags of GENERATE and IMPORT ASYMMETRIC KEY.
const (
	tagGenTemplate = 0xAC
	tagAlgorithm   = 0x80
	tagPINPolicy   = 0xAA
	tagTouchPolicy = 0xAB
	tagPublicKey   = 0x7F49
)

// generate implements GENERATE ASYMMETRIC KEY PAIR: AC { 80 alg [AA pin policy] [AB touch policy] }.
// The answer is the public key in 7F 49.
func (c *Card) generate(cmd command) ([]byte, uint16) {
	if !c.s.mgmtAuthed {
		return nil, swSecurityStatus
	}
	if cmd.p1 != 0 {
		return nil, swWrongP1P2
	}
	slot := cmd.p2
	if !isWritableSlot(slot) {
		return nil, swRefNotFound
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil || len(outer) != 1 || outer[0].tag != tagGenTemplate {
		return nil, swIncorrectData
	}
	ts, err := parseTLVs(outer[0].value)
	if err != nil {
		return nil, swIncorrectData
	}
	alg, ok := find(ts, tagAlgorithm)
	if !ok || len(alg) != 1 || !c.st.Profile.supportsAlg(alg[0]) {
		return nil, swIncorrectData
	}
	pin, touch, ok := policies(slot, ts)
	if !ok {
		return nil, swIncorrectData
	}
	priv, err := generateKey(c.rand, alg[0])
	if err != nil {
		return nil, swNoDiagnosis
	}
	pub, err := publicTLVs(priv)
	if err != nil {
		return nil, swNoDiagnosis
	}
	k, err := newSlotKey(alg[0], pin, touch, originGenerated, priv)
	if err != nil {
		return nil, swNoDiagnosis
	}
	c.st.Keys[slot] = k
	c.changed = true
	return appendTLV(nil, tagPublicKey, pub), swOK
}

// policies reads the optional AA and AB policy elements and resolves them for slot.
func policies(slot byte, ts []tlv) (pin, touch byte, ok bool) {
	for _, t := range ts {
		switch t.tag {
		case tagPINPolicy, tagTouchPolicy:
			if len(t.value) != 1 {
				return 0, 0, false
			}
			if t.tag == tagPINPolicy {
				pin = t.value[0]
			} else {
				touch = t.value[0]
			}
		}
	}
	return resolvePolicies(slot, pin, touch)
}

// importKey implements the Yubico IMPORT ASYMMETRIC KEY: P1 algorithm, P2 slot, data the private key
// elements and optional policies.
func (c *Card) importKey(cmd command) ([]byte, uint16) {
	if !c.s.mgmtAuthed {
		return nil, swSecurityStatus
	}
	alg, slot := cmd.p1, cmd.p2
	if !isWritableSlot(slot) {
		return nil, swRefNotFound
	}
	if !c.st.Profile.supportsAlg(alg) {
		return nil, swIncorrectData
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData
	}
	pin, touch, ok := policies(slot, ts)
	if !ok {
		return nil, swIncorrectData
	}
	priv, err := parsePrivateKey(alg, ts)
	if err != nil {
		return nil, swIncorrectData
	}
	k, err := newSlotKey(alg, pin, touch, originImported, priv)
	if err != nil {
		return nil, swIncorrectData
	}
	c.st.Keys[slot] = k
	c.changed = true
	return nil, swOK
}

// moveKey implements MOVE KEY (firmware 5.7): P1 the destination slot or FF to delete, P2 the source.
func (c *Card) moveKey(cmd command) ([]byte, uint16) {
	if !c.s.mgmtAuthed {
		return nil, swSecurityStatus
	}
	to, from := cmd.p1, cmd.p2
	k, ok := c.st.Keys[from]
	if !isWritableSlot(from) || (to != 0xFF && !isWritableSlot(to)) || to == from {
		return nil, swIncorrectData
	}
	if !ok {
		return nil, swRefNotFound
	}
	delete(c.st.Keys, from)
	if to != 0xFF {
		c.st.Keys[to] = k
	}
	c.changed = true
	return nil, swOK
}
