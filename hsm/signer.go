package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Signer is a crypto.Signer whose private key stays in the token: RSA PKCS#1 v1.5 through CKM_RSA_PKCS
// over a DigestInfo built here (which every token has, hash-and-sign mechanisms or not), ECDSA through
// CKM_ECDSA over the digest.
type Signer struct {
	s   *Session
	h   pkcs11.ObjectHandle
	pub crypto.PublicKey
}

// signer returns a Signer for the private key object h whose public key is pub.
func (s *Session) signer(h pkcs11.ObjectHandle, pub crypto.PublicKey) *Signer {
	return &Signer{s: s, h: h, pub: pub}
}

// Public returns the public key.
func (g *Signer) Public() crypto.PublicKey { return g.pub }

// DigestInfo prefixes (RFC 8017 section 9.2, note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// Sign signs digest in the token.
func (g *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, errors.New("hsm: RSA-PSS is not used for CA keys")
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("hsm: digest of %d bytes for %v", len(digest), opts.HashFunc())
	}
	switch g.pub.(type) {
	case *rsa.PublicKey:
		prefix, ok := digestInfoPrefix[opts.HashFunc()]
		if !ok {
			return nil, fmt.Errorf("hsm: no DigestInfo for %v", opts.HashFunc())
		}
		return g.raw(pkcs11.CKM_RSA_PKCS, append(append([]byte{}, prefix...), digest...))
	case *ecdsa.PublicKey:
		rs, err := g.raw(pkcs11.CKM_ECDSA, digest)
		if err != nil {
			return nil, err
		}
		if len(rs)%2 != 0 || len(rs) == 0 {
			return nil, fmt.Errorf("hsm: CKM_ECDSA returned %d bytes", len(rs))
		}
		half := len(rs) / 2
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:half]), new(big.Int).SetBytes(rs[half:])})
	}
	return nil, fmt.Errorf("hsm: unsupported key %T", g.pub)
}

func (g *Signer) raw(mech uint, data []byte) ([]byte, error) {
	if err := g.s.ctx.SignInit(g.s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, g.h); err != nil {
		return nil, fmt.Errorf("hsm: C_SignInit (%s): %w", MechName(mech), err)
	}
	sig, err := g.s.ctx.Sign(g.s.sh, data)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_Sign (%s): %w", MechName(mech), err)
	}
	return sig, nil
}
