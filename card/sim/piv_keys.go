package sim

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"io"
	"math/big"
)

// PIV algorithm identifiers.
const (
	alg3DES    = 0x03
	algAES128  = 0x08
	algAES192  = 0x0A
	algAES256  = 0x0C
	algRSA1024 = 0x06
	algRSA2048 = 0x07
	algRSA3072 = 0x05
	algRSA4096 = 0x16
	algP256    = 0x11
	algP384    = 0x14
	algEd25519 = 0xE0
	algX25519  = 0xE1
)

// PIN and touch policies as the card stores them (resolved: never 00) and reports them.
const (
	pinNever    = 0x01
	pinOnce     = 0x02
	pinAlways   = 0x03
	touchNever  = 0x01
	touchAlways = 0x02
	touchCached = 0x03
)

// Key origins reported by GET METADATA.
const (
	originGenerated = 0x01
	originImported  = 0x02
)

var mgmtKeyLen = map[byte]int{alg3DES: 24, algAES128: 16, algAES192: 24, algAES256: 32}

var errKey = errors.New("invalid key or input")

// rsaBits returns the modulus size of an RSA algorithm identifier.
func rsaBits(alg byte) int {
	switch alg {
	case algRSA1024:
		return 1024
	case algRSA2048:
		return 2048
	case algRSA3072:
		return 3072
	case algRSA4096:
		return 4096
	}
	return 0
}

func curveOf(alg byte) elliptic.Curve {
	switch alg {
	case algP256:
		return elliptic.P256()
	case algP384:
		return elliptic.P384()
	}
	return nil
}

// supportsAlg reports whether the profile's firmware has the asymmetric algorithm.
func (p Profile) supportsAlg(alg byte) bool {
	switch alg {
	case algRSA1024, algRSA2048, algP256, algP384:
		return true
	case algRSA3072, algRSA4096, algEd25519, algX25519:
		return p.fw57()
	}
	return false
}

// algOf returns the PIV algorithm identifier of a private key.
func algOf(priv crypto.PrivateKey) (byte, bool) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		for _, a := range []byte{algRSA1024, algRSA2048, algRSA3072, algRSA4096} {
			if k.N.BitLen() == rsaBits(a) {
				return a, true
			}
		}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return algP256, true
		case elliptic.P384():
			return algP384, true
		}
	case ed25519.PrivateKey:
		return algEd25519, true
	case *ecdh.PrivateKey:
		if k.Curve() == ecdh.X25519() {
			return algX25519, true
		}
	}
	return 0, false
}

// isKeySlot reports whether slot holds a key usable with GENERAL AUTHENTICATE.
func isKeySlot(slot byte) bool {
	return slot == 0x9A || slot == 0x9C || slot == 0x9D || slot == 0x9E || (slot >= 0x82 && slot <= 0x95)
}

// isWritableSlot reports whether GENERATE and IMPORT accept slot: the key slots and F9.
func isWritableSlot(slot byte) bool { return isKeySlot(slot) || slot == slotAttestation }

const slotAttestation = 0xF9

// resolvePolicies replaces the default (00) PIN and touch policies by the slot's defaults and rejects
// policies the card does not have (the Bio-only match policies included).
func resolvePolicies(slot, pin, touch byte) (byte, byte, bool) {
	switch pin {
	case 0x00:
		switch slot {
		case 0x9C:
			pin = pinAlways
		case 0x9E:
			pin = pinNever
		default:
			pin = pinOnce
		}
	case pinNever, pinOnce, pinAlways:
	default:
		return 0, 0, false
	}
	switch touch {
	case 0x00:
		touch = touchNever
	case touchNever, touchAlways, touchCached:
	default:
		return 0, 0, false
	}
	return pin, touch, true
}

func generateKey(rand io.Reader, alg byte) (crypto.PrivateKey, error) {
	if bits := rsaBits(alg); bits != 0 {
		return rsa.GenerateKey(rand, bits)
	}
	if curve := curveOf(alg); curve != nil {
		return ecdsa.GenerateKey(curve, rand)
	}
	switch alg {
	case algEd25519:
		_, priv, err := ed25519.GenerateKey(rand)
		return priv, err
	case algX25519:
		return ecdh.X25519().GenerateKey(rand)
	}
	return nil, errKey
}

// publicTLVs encodes the public key of priv as the card does inside 7F 49 and in metadata tag 04:
// 81 modulus ‖ 82 exponent for RSA, 86 point for the others.
func publicTLVs(priv crypto.PrivateKey) ([]byte, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		n := k.N.FillBytes(make([]byte, k.Size()))
		e := big.NewInt(int64(k.E)).Bytes()
		return appendTLV(appendTLV(nil, 0x81, n), 0x82, e), nil
	case *ecdsa.PrivateKey:
		pt, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, err
		}
		return appendTLV(nil, 0x86, pt), nil
	case ed25519.PrivateKey:
		return appendTLV(nil, 0x86, k.Public().(ed25519.PublicKey)), nil
	case *ecdh.PrivateKey:
		return appendTLV(nil, 0x86, k.PublicKey().Bytes()), nil
	}
	return nil, errKey
}

// sign computes the card's answer to a GENERAL AUTHENTICATE with tag 81: an ASN.1 ECDSA signature
// of a digest, an Ed25519 signature of a message, or the raw RSA private operation (signature or
// decryption of an already padded block).
func sign(rand io.Reader, priv crypto.PrivateKey, in []byte) ([]byte, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return rsaRaw(k, in)
	case *ecdsa.PrivateKey:
		if len(in) > (k.Curve.Params().BitSize+7)/8 {
			return nil, errKey
		}
		return ecdsa.SignASN1(rand, k, in)
	case ed25519.PrivateKey:
		return ed25519.Sign(k, in), nil
	}
	return nil, errKey
}

// rsaRaw returns in^d mod n, left-padded to the modulus size.
func rsaRaw(k *rsa.PrivateKey, in []byte) ([]byte, error) {
	c := new(big.Int).SetBytes(in)
	if len(in) > k.Size() || c.Cmp(k.N) >= 0 || len(k.Primes) != 2 {
		return nil, errKey
	}
	p, q := k.Primes[0], k.Primes[1]
	one := big.NewInt(1)
	dp := new(big.Int).Mod(k.D, new(big.Int).Sub(p, one))
	dq := new(big.Int).Mod(k.D, new(big.Int).Sub(q, one))
	qinv := new(big.Int).ModInverse(q, p)
	if qinv == nil {
		return nil, errKey
	}
	m1 := new(big.Int).Exp(c, dp, p)
	m2 := new(big.Int).Exp(c, dq, q)
	h := m1.Sub(m1, m2)
	h.Mul(h, qinv).Mod(h, p)
	m := h.Mul(h, q).Add(h, m2)
	return m.FillBytes(make([]byte, k.Size())), nil
}

// agree computes the card's answer to a GENERAL AUTHENTICATE with tag 85: the raw ECDH shared
// secret (the X coordinate, or the X25519 output) with the peer's public key.
func agree(priv crypto.PrivateKey, peer []byte) ([]byte, error) {
	var k *ecdh.PrivateKey
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		var err error
		if k, err = p.ECDH(); err != nil {
			return nil, err
		}
	case *ecdh.PrivateKey:
		k = p
	default:
		return nil, errKey
	}
	pub, err := k.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	return k.ECDH(pub)
}

// parsePrivateKey rebuilds a private key from the Yubico IMPORT ASYMMETRIC KEY element TLVs, checking that
// every element has the size the algorithm needs and that the elements are consistent.
func parsePrivateKey(alg byte, ts []tlv) (crypto.PrivateKey, error) {
	if bits := rsaBits(alg); bits != 0 {
		return importRSA(bits, ts)
	}
	if curve := curveOf(alg); curve != nil {
		s, ok := find(ts, 0x06)
		if !ok || len(s) != (curve.Params().BitSize+7)/8 {
			return nil, errKey
		}
		return ecdsa.ParseRawPrivateKey(curve, s)
	}
	switch alg {
	case algEd25519:
		seed, ok := find(ts, 0x07)
		if !ok || len(seed) != ed25519.SeedSize {
			return nil, errKey
		}
		return ed25519.NewKeyFromSeed(seed), nil
	case algX25519:
		s, ok := find(ts, 0x08)
		if !ok || len(s) != 32 {
			return nil, errKey
		}
		return ecdh.X25519().NewPrivateKey(s)
	}
	return nil, errKey
}

func importRSA(bits int, ts []tlv) (*rsa.PrivateKey, error) {
	var el [5]*big.Int
	for i := range el {
		v, ok := find(ts, uint32(0x01+i))
		if !ok || len(v) != bits/16 {
			return nil, errKey
		}
		el[i] = new(big.Int).SetBytes(v)
	}
	p, q := el[0], el[1]
	one := big.NewInt(1)
	pm1, qm1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	phi := new(big.Int).Mul(pm1, qm1)
	e := big.NewInt(65537)
	d := new(big.Int).ModInverse(e, phi)
	if d == nil || p.Sign() <= 0 || q.Sign() <= 0 {
		return nil, errKey
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537},
		D:         d,
		Primes:    []*big.Int{p, q},
	}
	if k.N.BitLen() != bits {
		return nil, errKey
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	qinv := new(big.Int).ModInverse(q, p)
	if new(big.Int).Mod(d, pm1).Cmp(el[2]) != 0 || new(big.Int).Mod(d, qm1).Cmp(el[3]) != 0 ||
		qinv == nil || qinv.Cmp(el[4]) != 0 {
		return nil, errKey
	}
	k.Precompute()
	return k, nil
}
