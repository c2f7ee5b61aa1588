package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// RewrapRequest re-wraps a CA key from one KEK to another inside the token (rekey, adopt).
type RewrapRequest struct {
	OldKEK, NewKEK []byte // the caller wipes both
	File           *wrap.File
	CAPublic       crypto.PublicKey
	Transport      string // for both KEKs: auto (or empty), create, oaep
	Probe          *ProbeResult
}

// Rewrap puts both KEKs into the token, unwraps the CA key under the old one as an extractable session
// object, wraps it under the new one with the confirmed RFC 5649 mechanism and destroys everything it
// created. The new file is checked in software like a generated one before it is returned.
func (s *Session) Rewrap(ctx context.Context, req RewrapRequest) (_ *wrap.File, _ wrap.Quirk, err error) {
	if !req.File.KEKCheck.Matches(req.OldKEK) {
		return nil, wrap.QuirkNone, fmt.Errorf("hsm: old KEK: %w (%s)", ErrWrongKEK, req.File.KEKCheck)
	}
	if _, err := SoftwareCheck(req.OldKEK, req.File, req.CAPublic); err != nil {
		return nil, wrap.QuirkNone, fmt.Errorf("%w: %w", ErrBadBlob, err)
	}
	newCheck, err := wrap.KCV(req.NewKEK)
	if err != nil {
		return nil, wrap.QuirkNone, err
	}
	p := req.Probe
	if p == nil {
		if p, err = s.Probe(ctx, true); err != nil {
			return nil, wrap.QuirkNone, err
		}
	}
	if p.KWPMechanism == 0 || !p.WrapExtractablePrivate {
		return nil, wrap.QuirkNone, fmt.Errorf("hsm: token %s cannot re-wrap (no confirmed RFC 5649 wrap of a private key): %w", s.Token, ErrUnsupported)
	}
	objs := &objects{s: s}
	defer func() {
		if derr := objs.destroy(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	oldK, err := s.PutKEK(ctx, req.OldKEK, req.Transport, p, false)
	if err != nil {
		return nil, wrap.QuirkNone, err
	}
	objs.hs = append(objs.hs, oldK.objs.hs...)
	newK, err := s.PutKEK(ctx, req.NewKEK, req.Transport, p, true)
	if err != nil {
		return nil, wrap.QuirkNone, err
	}
	objs.hs = append(objs.hs, newK.objs.hs...)
	if err := ctx.Err(); err != nil {
		return nil, wrap.QuirkNone, err
	}
	keyType := uint(pkcs11.CKK_RSA)
	if req.File.KeyAlg == "p256" || req.File.KeyAlg == "p384" {
		keyType = pkcs11.CKK_EC
	}
	tmpl := privateKeyTemplate(keyType, false, "custos rewrap", randBytes(20))
	for i, a := range tmpl {
		if a.Type == pkcs11.CKA_EXTRACTABLE {
			tmpl[i] = attr(pkcs11.CKA_EXTRACTABLE, true)
		}
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(p.KWPMechanism, nil)}
	h, err := s.ctx.UnwrapKey(s.sh, mech, oldK.h, req.File.Blob, tmpl)
	if err != nil {
		return nil, wrap.QuirkNone, fmt.Errorf("hsm: C_UnwrapKey (%s) under the old KEK: %w", MechName(p.KWPMechanism), err)
	}
	objs.add(h)
	blob, err := s.ctx.WrapKey(s.sh, mech, newK.h, h)
	if err != nil {
		return nil, wrap.QuirkNone, fmt.Errorf("hsm: C_WrapKey (%s) under the new KEK: %w", MechName(p.KWPMechanism), err)
	}
	f := &wrap.File{
		KEKCheck:    newCheck,
		Fingerprint: req.File.Fingerprint,
		KeyAlg:      req.File.KeyAlg,
		Mechanism:   s.wrapMechanism(p.KWPMechanism),
		Blob:        blob,
	}
	quirk, err := SoftwareCheck(req.NewKEK, f, req.CAPublic)
	if err != nil {
		return nil, wrap.QuirkNone, fmt.Errorf("hsm: re-wrapped blob: %w", err)
	}
	return f, quirk, nil
}
