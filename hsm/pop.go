package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/miekg/pkcs11"
)

// PoPDomain starts every proof-of-possession message.
const PoPDomain = "custos-pop-v1"

// Proof is a proof of possession of the CA key by a token: a signature, made through the key's handle,
// over PoPMessage.
type Proof struct {
	RecordID    string `json:"record_id"`
	ManifestKey string `json:"manifest_key"`
	TokenSHA256 string `json:"token_sha256"` // TokenRecord.Digest, hex
	Nonce       []byte `json:"nonce"`
	Mechanism   string `json:"mechanism"`
	Signature   []byte `json:"signature"`
}

// PoPMessage is "custos-pop-v1" ‖ len16(record id) ‖ record id ‖ len16(manifest key fingerprint) ‖
// manifest key fingerprint ‖ SHA-256 of the token record (32 bytes) ‖ nonce (32 bytes), lengths
// big-endian.
func PoPMessage(recordID, manifestKey string, tokenSHA256 [32]byte, nonce []byte) []byte {
	m := []byte(PoPDomain)
	m = binary.BigEndian.AppendUint16(m, uint16(len(recordID)))
	m = append(m, recordID...)
	m = binary.BigEndian.AppendUint16(m, uint16(len(manifestKey)))
	m = append(m, manifestKey...)
	m = append(m, tokenSHA256[:]...)
	return append(m, nonce...)
}

// popHash is the hash a proof uses with pub: SHA-384 for P-384, SHA-256 otherwise.
func popHash(pub crypto.PublicKey) crypto.Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P384() {
		return crypto.SHA384
	}
	return crypto.SHA256
}

func digest(h crypto.Hash, m []byte) []byte {
	if h == crypto.SHA384 {
		d := sha512.Sum384(m)
		return d[:]
	}
	d := sha256.Sum256(m)
	return d[:]
}

// Verify checks the proof under the pinned CA public key.
func (p *Proof) Verify(pub crypto.PublicKey) error {
	if len(p.Nonce) != 32 {
		return fmt.Errorf("hsm: proof nonce of %d bytes: %w", len(p.Nonce), ErrNotProven)
	}
	raw, err := hex.DecodeString(p.TokenSHA256)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("hsm: proof token digest %q: %w", p.TokenSHA256, ErrNotProven)
	}
	h := popHash(pub)
	d := digest(h, PoPMessage(p.RecordID, p.ManifestKey, [32]byte(raw), p.Nonce))
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, h, d, p.Signature); err != nil {
			return fmt.Errorf("hsm: proof signature: %w", ErrNotProven)
		}
		return nil
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d, p.Signature) {
			return fmt.Errorf("hsm: proof signature: %w", ErrNotProven)
		}
		return nil
	}
	return fmt.Errorf("hsm: proof for %T: %w", pub, ErrNotProven)
}

// prove signs a fresh proof through the private key handle h, using a hash-and-sign mechanism where
// the token has one, else CKM_RSA_PKCS over a DigestInfo built here (or CKM_ECDSA over the digest),
// and verifies it under pub before returning it.
func (s *Session) prove(h pkcs11.ObjectHandle, pub crypto.PublicKey, recordID, manifestKey string) (*Proof, error) {
	nonce := randBytes(32)
	td := s.Token.Digest()
	p := &Proof{RecordID: recordID, ManifestKey: manifestKey, TokenSHA256: hex.EncodeToString(td[:]), Nonce: nonce}
	msg := PoPMessage(recordID, manifestKey, td, nonce)
	hash := popHash(pub)
	g := s.signer(h, pub)
	var err error
	if _, isRSA := pub.(*rsa.PublicKey); isRSA && s.hasMech(pkcs11.CKM_SHA256_RSA_PKCS, pkcs11.CKF_SIGN) {
		p.Mechanism = MechName(pkcs11.CKM_SHA256_RSA_PKCS)
		p.Signature, err = g.raw(pkcs11.CKM_SHA256_RSA_PKCS, msg)
	} else {
		p.Mechanism = MechName(pkcs11.CKM_ECDSA)
		if isRSA {
			p.Mechanism = MechName(pkcs11.CKM_RSA_PKCS) + " over a DigestInfo"
		}
		p.Signature, err = g.Sign(nil, digest(hash, msg), hash)
	}
	if err != nil {
		return nil, err
	}
	if err := p.Verify(pub); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Session) hasMech(m, flag uint) bool {
	info, err := s.ctx.GetMechanismInfo(s.Token.Slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)})
	return err == nil && info.Flags&flag != 0
}
