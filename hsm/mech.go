package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// Mechanism numbers miekg/pkcs11 does not define.
const (
	ckmAESKeyWrapKWP      = 0x210B     // PKCS#11 3.0 CKM_AES_KEY_WRAP_KWP (RFC 5649)
	ckmAESKeyWrapPKCS7    = 0x210C     // PKCS#11 3.0 CKM_AES_KEY_WRAP_PKCS7
	ckmOldAESKeyWrap      = 0x1090     // pre-2.40 draft number
	ckmOldAESKeyWrapPad   = 0x1091     // pre-2.40 draft number
	ckmLunaAESKWP         = 0x80000171 // Thales Luna CKM_AES_KWP (RFC 5649)
	ckmCloudHSMAESZeroPad = 0x8000216F // AWS CloudHSM CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD (RFC 5649)
)

var mechNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:              "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_PKCS_OAEP:         "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_SHA256_RSA_PKCS:       "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:       "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_RSA_AES_KEY_WRAP:      "CKM_RSA_AES_KEY_WRAP",
	pkcs11.CKM_EC_KEY_PAIR_GEN:       "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                 "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256:          "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:          "CKM_ECDSA_SHA384",
	pkcs11.CKM_AES_KEY_GEN:           "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_ECB:               "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC_PAD:           "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_KEY_WRAP:          "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:      "CKM_AES_KEY_WRAP_PAD",
	ckmAESKeyWrapKWP:                 "CKM_AES_KEY_WRAP_KWP",
	ckmAESKeyWrapPKCS7:               "CKM_AES_KEY_WRAP_PKCS7",
	ckmOldAESKeyWrap:                 "CKM_AES_KEY_WRAP (pre-2.40)",
	ckmOldAESKeyWrapPad:              "CKM_AES_KEY_WRAP_PAD (pre-2.40)",
	ckmLunaAESKWP:                    "CKM_AES_KWP (Luna)",
	ckmCloudHSMAESZeroPad:            "CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD",
}

// probedMechs are the mechanisms a passive probe reports, in this order.
var probedMechs = []uint{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_OAEP,
	pkcs11.CKM_SHA256_RSA_PKCS, pkcs11.CKM_SHA384_RSA_PKCS, pkcs11.CKM_RSA_AES_KEY_WRAP,
	pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_ECDSA_SHA256, pkcs11.CKM_ECDSA_SHA384,
	pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_ECB, pkcs11.CKM_AES_CBC_PAD,
	pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD, ckmAESKeyWrapKWP, ckmAESKeyWrapPKCS7,
	ckmOldAESKeyWrap, ckmOldAESKeyWrapPad, ckmLunaAESKWP, ckmCloudHSMAESZeroPad,
}

// kwpCandidates are the numbers that are RFC 5649 on some token, in the order an active probe tries
// them: the standard one first, then the vendor ones, then 0x210A, which is RFC 5649 only on some.
var kwpCandidates = []uint{ckmAESKeyWrapKWP, ckmLunaAESKWP, ckmCloudHSMAESZeroPad, pkcs11.CKM_AES_KEY_WRAP_PAD}

// MechName returns a mechanism's name and number, "CKM_AES_KEY_WRAP_PAD(0x210a)".
func MechName(m uint) string {
	if n, ok := mechNames[m]; ok {
		return fmt.Sprintf("%s(%#x)", n, m)
	}
	return fmt.Sprintf("%#x", m)
}

// Mechanism flags reported by a probe.
var mechFlagNames = []struct {
	flag uint
	name string
}{
	{pkcs11.CKF_HW, "hw"}, {pkcs11.CKF_ENCRYPT, "encrypt"}, {pkcs11.CKF_DECRYPT, "decrypt"},
	{pkcs11.CKF_DIGEST, "digest"}, {pkcs11.CKF_SIGN, "sign"}, {pkcs11.CKF_VERIFY, "verify"},
	{pkcs11.CKF_GENERATE, "generate"}, {pkcs11.CKF_GENERATE_KEY_PAIR, "generate_key_pair"},
	{pkcs11.CKF_WRAP, "wrap"}, {pkcs11.CKF_UNWRAP, "unwrap"}, {pkcs11.CKF_DERIVE, "derive"},
}
