package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// AdoptRequest takes over a CA key that a legacy procedure exported as an RFC 5649 blob under an AES key
// of its own (ceremony adopt).
type AdoptRequest struct {
	LegacyKey []byte // AES-128, -192 or -256; the caller wipes it
	Blob      []byte // the legacy blob: RFC 5649 of the CA key's PKCS#8 under LegacyKey
	NewKEK    []byte // the caller wipes it
	CAPublic  crypto.PublicKey
	Transport string // for both keys: auto (or empty), create, oaep
	Probe     *ProbeResult
	// RecordID and ManifestKey go into the proof of possession made through the unwrapped key.
	RecordID, ManifestKey string
}

// AdoptResult is what Adopt did in the token.
type AdoptResult struct {
	Mechanism string      `json:"mechanism"`
	LegacyKey AttrHistory `json:"legacy_key_read_back"`
	NewKEK    AttrHistory `json:"new_kek_read_back"`
	Transport string      `json:"transport"`
	Proof     *Proof      `json:"proof"`
	Quirk     wrap.Quirk  `json:"quirk,omitempty"`
	File      *wrap.File  `json:"-"` // the CA key under the new KEK
}

// Adopt puts the legacy key into the token, unwraps the legacy blob there as an extractable session
// object, proves through that handle that it is the key of CAPublic (an EC private key object carries
// no public point, so a signature verified under the certificate's key is the portable proof), wraps it
// under the new KEK with the confirmed RFC 5649 mechanism and destroys everything it created, on every
// path. The new file is checked in software like a generated one before it is returned. A blob whose key
// is not the CA key is refused with ErrNotProven.
func (s *Session) Adopt(ctx context.Context, req AdoptRequest) (_ *AdoptResult, err error) {
	switch len(req.LegacyKey) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("hsm: a legacy key of %d bytes is not an AES key", len(req.LegacyKey))
	}
	alg, err := KeyAlg(req.CAPublic)
	if err != nil {
		return nil, err
	}
	fp, err := wrap.Fingerprint(req.CAPublic)
	if err != nil {
		return nil, err
	}
	newCheck, err := wrap.KCV(req.NewKEK)
	if err != nil {
		return nil, err
	}
	p := req.Probe
	if p == nil {
		if p, err = s.Probe(ctx, true); err != nil {
			return nil, err
		}
	}
	if p.KWPMechanism == 0 || !p.WrapExtractablePrivate {
		return nil, fmt.Errorf("hsm: token %s cannot adopt in the token (no confirmed RFC 5649 unwrap and wrap of a private key): %w", s.Token, ErrUnsupported)
	}
	objs := &objects{s: s}
	defer func() {
		if derr := objs.destroy(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	legacy, err := s.PutKEK(ctx, req.LegacyKey, req.Transport, p, false)
	if err != nil {
		return nil, fmt.Errorf("hsm: legacy key: %w", err)
	}
	objs.hs = append(objs.hs, legacy.objs.hs...)
	res := &AdoptResult{Mechanism: MechName(p.KWPMechanism), LegacyKey: legacy.ReadBack, Transport: legacy.Transport}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keyType := uint(pkcs11.CKK_RSA)
	if alg == "p256" || alg == "p384" {
		keyType = pkcs11.CKK_EC
	}
	tmpl := privateKeyTemplate(keyType, false, "custos adopt", randBytes(20))
	for i, a := range tmpl {
		if a.Type == pkcs11.CKA_EXTRACTABLE {
			tmpl[i] = attr(pkcs11.CKA_EXTRACTABLE, true)
		}
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(p.KWPMechanism, nil)}
	h, err := s.ctx.UnwrapKey(s.sh, mech, legacy.h, req.Blob, tmpl)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_UnwrapKey (%s) of the legacy blob under the legacy key (a %s key was expected): %w", res.Mechanism, alg, err)
	}
	objs.add(h)
	if res.Proof, err = s.prove(h, req.CAPublic, req.RecordID, req.ManifestKey); err != nil {
		return nil, fmt.Errorf("hsm: the key in the legacy blob is not the CA key %s: %w", fp, err)
	}
	newK, err := s.PutKEK(ctx, req.NewKEK, req.Transport, p, true)
	if err != nil {
		return nil, fmt.Errorf("hsm: new KEK: %w", err)
	}
	objs.hs = append(objs.hs, newK.objs.hs...)
	res.NewKEK = newK.ReadBack
	blob, err := s.ctx.WrapKey(s.sh, mech, newK.h, h)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_WrapKey (%s) under the new KEK: %w", res.Mechanism, err)
	}
	res.File = &wrap.File{KEKCheck: newCheck, Fingerprint: fp, KeyAlg: alg, Mechanism: s.wrapMechanism(p.KWPMechanism), Blob: blob}
	if res.Quirk, err = SoftwareCheck(req.NewKEK, res.File, req.CAPublic); err != nil {
		return nil, fmt.Errorf("hsm: re-wrapped blob: %w", err)
	}
	return res, nil
}
