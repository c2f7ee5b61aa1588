package sim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"io"
)

// Tags inside the dynamic authentication template 7C.
const (
	tagDynAuth   = 0x7C
	tagWitness   = 0x80
	tagChallenge = 0x81
	tagResponse  = 0x82
	tagExponent  = 0x85
)

// generalAuthenticate implements GENERAL AUTHENTICATE: management key authentication (P2 9B) or a
// private key operation in a key slot.
func (c *Card) generalAuthenticate(cmd command) ([]byte, uint16) {
	outer, err := parseTLVs(cmd.data)
	if err != nil || len(outer) != 1 || outer[0].tag != tagDynAuth {
		return nil, swIncorrectData
	}
	inner, err := parseTLVs(outer[0].value)
	if err != nil {
		return nil, swIncorrectData
	}
	if cmd.p2 == refMgmt {
		return c.authenticateMgmt(cmd.p1, inner)
	}
	return c.privateKeyOp(cmd.p1, cmd.p2, inner)
}

// mgmtBlock returns the block cipher of the stored management key.
func (c *Card) mgmtBlock() (cipher.Block, error) {
	if c.st.MgmtAlg == alg3DES {
		return des.NewTripleDESCipher(c.st.MgmtKey)
	}
	return aes.NewCipher(c.st.MgmtKey)
}

// authenticateMgmt runs the management key protocols: mutual authentication (witness 80 requested,
// then 80 decrypted witness ‖ 81 host challenge) and single authentication (challenge 81 requested,
// then 82 encrypted challenge).
func (c *Card) authenticateMgmt(alg byte, inner []tlv) ([]byte, uint16) {
	if alg != c.st.MgmtAlg {
		return nil, swIncorrectData
	}
	block, err := c.mgmtBlock()
	if err != nil {
		return nil, swIncorrectData
	}
	bs := block.BlockSize()
	pendingChal, pendingKind := c.s.chal, c.s.chalKind
	c.s.chal, c.s.chalKind = nil, 0
	defer clear(pendingChal)

	witness, hasWitness := find(inner, tagWitness)
	chal, hasChal := find(inner, tagChallenge)
	resp, hasResp := find(inner, tagResponse)
	switch {
	case hasWitness && len(witness) == 0: // step 1 of mutual authentication
		return c.newMgmtChallenge(block, tagWitness)
	case hasChal && len(chal) == 0: // step 1 of single authentication
		return c.newMgmtChallenge(block, tagChallenge)
	case hasWitness && hasChal && len(witness) == bs && len(chal) == bs && (!hasResp || len(resp) == 0):
		if pendingKind != tagWitness {
			return nil, swIncorrectData
		}
		if subtle.ConstantTimeCompare(witness, pendingChal) != 1 || !c.touched(c.st.MgmtTouch) {
			return nil, swSecurityStatus
		}
		c.s.mgmtAuthed = true
		out := make([]byte, bs)
		block.Encrypt(out, chal)
		return appendTLV(nil, tagDynAuth, appendTLV(nil, tagResponse, out)), swOK
	case hasResp && len(resp) == bs && !hasWitness && !hasChal:
		if pendingKind != tagChallenge {
			return nil, swIncorrectData
		}
		want := make([]byte, bs)
		block.Encrypt(want, pendingChal)
		if subtle.ConstantTimeCompare(resp, want) != 1 || !c.touched(c.st.MgmtTouch) {
			return nil, swSecurityStatus
		}
		c.s.mgmtAuthed = true
		return nil, swOK
	}
	return nil, swIncorrectData
}

// newMgmtChallenge draws a random block and keeps it pending. For the mutual protocol's witness the
// card sends it encrypted, for the single protocol's challenge in the clear.
func (c *Card) newMgmtChallenge(block cipher.Block, kind byte) ([]byte, uint16) {
	r := make([]byte, block.BlockSize())
	if _, err := io.ReadFull(c.rand, r); err != nil {
		return nil, swNoDiagnosis
	}
	c.s.chal, c.s.chalKind = r, kind
	out := r
	if kind == tagWitness {
		out = make([]byte, len(r))
		block.Encrypt(out, r)
	}
	return appendTLV(nil, tagDynAuth, appendTLV(nil, uint32(kind), out)), swOK
}

// privateKeyOp signs (81), decrypts (81, RSA) or agrees on a key (85) with the key in slot, after
// checking its PIN and touch policies.
func (c *Card) privateKeyOp(alg, slot byte, inner []tlv) ([]byte, uint16) {
	k, ok := c.st.Keys[slot]
	if !isKeySlot(slot) || !ok || k.Alg != alg {
		return nil, swIncorrectData
	}
	resp, hasResp := find(inner, tagResponse)
	in, isSign := find(inner, tagChallenge)
	peer, isAgree := find(inner, tagExponent)
	if !hasResp || len(resp) != 0 || isSign == isAgree {
		return nil, swIncorrectData
	}
	if !c.pinSatisfied(k.PIN) || !c.touched(k.Touch) {
		return nil, swSecurityStatus
	}
	var out []byte
	var err error
	if isSign {
		out, err = sign(c.rand, k.priv, in)
	} else {
		out, err = agree(k.priv, peer)
	}
	if err != nil {
		return nil, swIncorrectData
	}
	defer clear(out)
	return appendTLV(nil, tagDynAuth, appendTLV(nil, tagResponse, out)), swOK
}
