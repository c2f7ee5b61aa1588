package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// keyAlgBits maps an algorithm name to its key type and size.
func keyAlgParams(alg string) (keyType uint, bits int, curve elliptic.Curve, oid asn1.ObjectIdentifier, err error) {
	switch alg {
	case "rsa4096":
		return pkcs11.CKK_RSA, 4096, nil, nil, nil
	case "rsa3072":
		return pkcs11.CKK_RSA, 3072, nil, nil, nil
	case "rsa2048":
		return pkcs11.CKK_RSA, 2048, nil, nil, nil
	case "p384":
		return pkcs11.CKK_EC, 0, elliptic.P384(), oidP384, nil
	case "p256":
		return pkcs11.CKK_EC, 0, elliptic.P256(), oidP256, nil
	}
	return 0, 0, nil, nil, fmt.Errorf("hsm: unknown key algorithm %q (rsa4096, rsa3072, p384, p256)", alg)
}

// KeyAlg names the algorithm of a CA public key as wrap's files do ("rsa4096", …).
func KeyAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 4096:
			return "rsa4096", nil
		case 3072:
			return "rsa3072", nil
		case 2048:
			return "rsa2048", nil
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return "p384", nil
		case elliptic.P256():
			return "p256", nil
		}
	}
	return "", fmt.Errorf("hsm: unsupported CA public key %T", pub)
}

// privateKeyTemplate is the template of a private key custos creates or unwraps: private, sensitive,
// usable only to sign. Nothing that comes from the key material itself (CKA_EC_PARAMS, CKA_MODULUS) is
// in it: SoftHSM refuses those in an unwrap template.
func privateKeyTemplate(keyType uint, token bool, label string, id []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		attr(pkcs11.CKA_KEY_TYPE, keyType),
		attr(pkcs11.CKA_TOKEN, token),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false),
		attr(pkcs11.CKA_SIGN, true),
		attr(pkcs11.CKA_DECRYPT, false),
		attr(pkcs11.CKA_UNWRAP, false),
		attr(pkcs11.CKA_DERIVE, false),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_ID, id),
	}
}

// publicKeyTemplate describes pub as a public key object.
func publicKeyTemplate(pub crypto.PublicKey, token bool, label string, id []byte) ([]*pkcs11.Attribute, error) {
	t := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		attr(pkcs11.CKA_TOKEN, token),
		attr(pkcs11.CKA_VERIFY, true),
		attr(pkcs11.CKA_ENCRYPT, false),
		attr(pkcs11.CKA_WRAP, false),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_ID, id),
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return append(t, attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA), attr(pkcs11.CKA_MODULUS, k.N.Bytes()),
			attr(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(k.E)).Bytes())), nil
	case *ecdsa.PublicKey:
		alg, err := KeyAlg(pub)
		if err != nil {
			return nil, err
		}
		_, _, _, oid, _ := keyAlgParams(alg)
		params, _ := asn1.Marshal(oid)
		raw, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("hsm: %w", err)
		}
		point, _ := asn1.Marshal(raw)
		return append(t, attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), attr(pkcs11.CKA_EC_PARAMS, params), attr(pkcs11.CKA_EC_POINT, point)), nil
	}
	return nil, fmt.Errorf("hsm: unsupported public key %T", pub)
}

type keyPair struct {
	pub         crypto.PublicKey
	pubH, privH pkcs11.ObjectHandle
}

// generateKeyPair makes a key pair in the token; the private half is sensitive and, when extractable
// is true, extractable only so that it can be wrapped.
func (s *Session) generateKeyPair(alg string, token, extractable bool, label string, id []byte) (*keyPair, error) {
	keyType, bits, curve, oid, err := keyAlgParams(alg)
	if err != nil {
		return nil, err
	}
	pubT := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, token),
		attr(pkcs11.CKA_VERIFY, true),
		attr(pkcs11.CKA_ENCRYPT, false),
		attr(pkcs11.CKA_WRAP, false),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_ID, id),
	}
	privT := privateKeyTemplate(keyType, token, label, id)[2:] // class and key type come from the mechanism
	privT = append(privT, attr(pkcs11.CKA_EXTRACTABLE, extractable))
	mech := pkcs11.CKM_EC_KEY_PAIR_GEN
	if keyType == pkcs11.CKK_RSA {
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pubT = append(pubT, attr(pkcs11.CKA_MODULUS_BITS, bits), attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
	} else {
		params, _ := asn1.Marshal(oid)
		pubT = append(pubT, attr(pkcs11.CKA_EC_PARAMS, params))
	}
	pubH, privH, err := s.ctx.GenerateKeyPair(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(uint(mech), nil)}, pubT, privT)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GenerateKeyPair (%s): %w", alg, err)
	}
	kp := &keyPair{pubH: pubH, privH: privH}
	if kp.pub, err = s.readPublicKey(pubH, keyType, curve); err != nil {
		s.ctx.DestroyObject(s.sh, privH)
		s.ctx.DestroyObject(s.sh, pubH)
		return nil, err
	}
	return kp, nil
}

// readPublicKey reads a public key object (or the public attributes of a private key object).
func (s *Session) readPublicKey(h pkcs11.ObjectHandle, keyType uint, curve elliptic.Curve) (crypto.PublicKey, error) {
	if keyType == pkcs11.CKK_RSA {
		a, err := s.getAttrs(h, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		n, e := new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS]), new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT])
		if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, fmt.Errorf("hsm: the token returned an invalid RSA public key")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	}
	a, err := s.getAttrs(h, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(a[pkcs11.CKA_EC_POINT], &raw); err != nil || len(rest) != 0 {
		raw = a[pkcs11.CKA_EC_POINT] // some tokens return the bare point
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("hsm: the token returned an invalid EC point: %w", err)
	}
	return pub, nil
}

// keyID is the CKA_ID custos gives a CA key and its public key and certificate objects: the first 20
// bytes of SHA-256 over the SubjectPublicKeyInfo.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	sum := sha256.Sum256(spki)
	return sum[:20], nil
}
