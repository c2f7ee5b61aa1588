package hsm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"math/big"

	"github.com/miekg/pkcs11"
)

// KEK transport methods (--kek-transport).
const (
	TransportAuto   = "auto"
	TransportRSAAES = "rsa-aes" // CKM_RSA_AES_KEY_WRAP: OAEP(KEK) ‖ blob, the CA key in one unwrap
	TransportOAEP   = "oaep"    // RSA transport key in the token, KEK OAEP-encrypted on the host
	TransportCreate = "create"  // C_CreateObject of the KEK as a session object
)

// OAEP hash choices, preferred first.
const (
	OAEPSHA256 = "sha256"
	OAEPSHA1   = "sha1"
)

var oaepHashes = []string{OAEPSHA256, OAEPSHA1}

func oaepParams(h string) *pkcs11.OAEPParams {
	if h == OAEPSHA256 {
		return pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
	}
	return pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)
}

func oaepHash(h string) hash.Hash {
	if h == OAEPSHA256 {
		return sha256.New()
	}
	return sha1.New()
}

// secretTemplate is the template of an AES key custos puts in a token: a private, sensitive,
// non-extractable session object, with only the usages asked for explicitly true (SoftHSM defaults
// several usages to true).
func secretTemplate(label string, usages ...uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false),
		attr(pkcs11.CKA_LABEL, label),
	}
	for _, u := range []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY} {
		on := false
		for _, x := range usages {
			on = on || x == u
		}
		t = append(t, attr(u, on))
	}
	return t
}

// createSecret imports an AES key in plaintext with C_CreateObject.
func (s *Session) createSecret(value []byte, label string, usages ...uint) (pkcs11.ObjectHandle, error) {
	t := append(secretTemplate(label, usages...), attr(pkcs11.CKA_VALUE, value))
	h, err := s.ctx.CreateObject(s.sh, t)
	if err != nil {
		return 0, fmt.Errorf("hsm: C_CreateObject (AES key): %w", err)
	}
	return h, nil
}

// transportKey is an RSA key pair generated in the token as session objects: the private half unwraps,
// the public half leaves the token so the host can encrypt to it.
type transportKey struct {
	pub        *rsa.PublicKey
	pubH, priv pkcs11.ObjectHandle
}

func (s *Session) generateTransportKey(bits int, objs *objects) (*transportKey, error) {
	pubT := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_ENCRYPT, true),
		attr(pkcs11.CKA_WRAP, true),
		attr(pkcs11.CKA_VERIFY, false),
		attr(pkcs11.CKA_MODULUS_BITS, bits),
		attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		attr(pkcs11.CKA_LABEL, "custos transport"),
	}
	privT := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false),
		attr(pkcs11.CKA_UNWRAP, true),
		attr(pkcs11.CKA_DECRYPT, false),
		attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_LABEL, "custos transport"),
	}
	pubH, privH, err := s.ctx.GenerateKeyPair(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GenerateKeyPair (RSA-%d transport key): %w", bits, err)
	}
	objs.add(pubH)
	objs.add(privH)
	a, err := s.getAttrs(pubH, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
	if err != nil {
		return nil, err
	}
	n, e := new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS]), new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT])
	if n.BitLen() != bits || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
		return nil, fmt.Errorf("hsm: transport key: the token returned a %d-bit modulus and exponent %v", n.BitLen(), e)
	}
	return &transportKey{pub: &rsa.PublicKey{N: n, E: int(e.Int64())}, pubH: pubH, priv: privH}, nil
}

// oaepUnwrapSecret unwraps an OAEP-encrypted AES key with the transport key, first without
// CKA_VALUE_LEN (SoftHSM refuses it), then with it (Luna and others want it).
func (s *Session) oaepUnwrapSecret(tk *transportKey, hashName string, ct []byte, keyLen int, label string, usages ...uint) (pkcs11.ObjectHandle, error) {
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, oaepParams(hashName))}
	h, err := s.ctx.UnwrapKey(s.sh, mech, tk.priv, ct, secretTemplate(label, usages...))
	if err == nil {
		return h, nil
	}
	h, err2 := s.ctx.UnwrapKey(s.sh, mech, tk.priv, ct, append(secretTemplate(label, usages...), attr(pkcs11.CKA_VALUE_LEN, keyLen)))
	if err2 == nil {
		return h, nil
	}
	return 0, fmt.Errorf("hsm: C_UnwrapKey (CKM_RSA_PKCS_OAEP %s): %w (with CKA_VALUE_LEN: %v)", hashName, err, err2)
}

// RSAAESPayload builds the CKM_RSA_AES_KEY_WRAP input for an existing blob: RSA-OAEP(KEK) under the
// token's transport key, followed by the RFC 5649 blob itself, so the CA key enters the token in one
// unwrap and never exists in plaintext on the host.
func RSAAESPayload(pub *rsa.PublicKey, hashName string, kek, blob []byte) ([]byte, error) {
	if hashName != OAEPSHA1 && hashName != OAEPSHA256 {
		return nil, fmt.Errorf("hsm: OAEP hash %q", hashName)
	}
	ct, err := oaepEncrypt(pub, hashName, kek)
	if err != nil {
		return nil, err
	}
	return append(ct, blob...), nil
}

func oaepEncrypt(pub *rsa.PublicKey, hashName string, key []byte) ([]byte, error) {
	ct, err := rsa.EncryptOAEP(oaepHash(hashName), rand.Reader, pub, key, nil)
	if err != nil {
		return nil, fmt.Errorf("hsm: RSA-OAEP: %w", err)
	}
	return ct, nil
}

func rsaAESMech(hashName string) *pkcs11.Mechanism {
	return pkcs11.NewMechanism(pkcs11.CKM_RSA_AES_KEY_WRAP, &pkcs11.RSAAESKeyWrapParams{AESKeyBits: 256, OAEPParams: *oaepParams(hashName)})
}
