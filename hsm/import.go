package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// ImportRequest describes one import of a wrapped CA key into the session's token.
type ImportRequest struct {
	KEK      []byte     // the rebuilt KEK; the caller wipes it
	File     *wrap.File // the wrapped CA key
	CAPublic crypto.PublicKey
	// Certificate, if set, is stored beside the key with its CKA_ID after its self-signature and public
	// key are checked.
	Certificate *x509.Certificate
	Label       string
	Transport   string // auto (or empty), rsa-aes, oaep, create
	CAUnwrap    string // kwp (or empty), host-cbcpad
	// AllowHostUnwrap permits host-cbcpad, which unwraps the CA key on the host; it is reported as a
	// deviation.
	AllowHostUnwrap bool
	// Probe is an active probe of this token; nil runs one as the probe step.
	Probe *ProbeResult
	// Trial imports a session copy with a random CKA_ID, proves it through the handle the unwrap
	// returned and destroys it: nothing stays in the token.
	Trial                 bool
	RecordID, ManifestKey string
	// AfterStep, if set, is called after each step completes; a cancelled context takes effect before
	// the next step.
	AfterStep func(step string)
}

// ImportResult is the record of an import.
type ImportResult struct {
	Transport  string   `json:"transport"`
	OAEPHash   string   `json:"oaep_hash,omitempty"`
	CAUnwrap   string   `json:"ca_unwrap"`
	Mechanism  string   `json:"mechanism"`
	Quirk      string   `json:"quirk,omitempty"`
	Deviations []string `json:"deviations,omitempty"`

	KEK          *AttrHistory `json:"kek_read_back,omitempty"`
	TransportKey *AttrHistory `json:"transport_key_read_back,omitempty"`
	SessionKey   AttrHistory  `json:"session_key_read_back"`
	TokenKey     *AttrHistory `json:"token_key_read_back,omitempty"`
	// CopyFallback holds C_CopyObject's error when the key was unwrapped straight to the token instead.
	CopyFallback string `json:"copy_fallback,omitempty"`
	// WrapRefused is the token's answer to C_WrapKey of the imported key.
	WrapRefused string   `json:"wrap_refused"`
	ID          []byte   `json:"id"`
	Label       string   `json:"label"`
	Proof       *Proof   `json:"proof"`
	Steps       []string `json:"steps"`
}

// copyObject is C_CopyObject; tests replace it to exercise the fallback for modules that cannot copy.
var copyObject = func(s *Session, h pkcs11.ObjectHandle, t []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return s.ctx.CopyObject(s.sh, h, t)
}

// Import imports the wrapped CA key: checks in software first (check value, blob, public key), then
// the steps probe, transport, unwrap, harden, copy, prove and destroy (ImportSteps). Every object it
// created is destroyed on every path except success, which keeps only the CA key, its public key and
// certificate objects (none for a trial).
func (s *Session) Import(ctx context.Context, req ImportRequest) (res *ImportResult, err error) {
	// Before any HSM call.
	if !req.File.KEKCheck.Matches(req.KEK) {
		return nil, fmt.Errorf("hsm: %w (%s)", ErrWrongKEK, req.File.KEKCheck)
	}
	alg, err := KeyAlg(req.CAPublic)
	if err != nil {
		return nil, err
	}
	if alg != req.File.KeyAlg {
		return nil, fmt.Errorf("hsm: the file holds a %s key, the pinned CA key is %s", req.File.KeyAlg, alg)
	}
	quirk, err := SoftwareCheck(req.KEK, req.File, req.CAPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBlob, err)
	}
	if c := req.Certificate; c != nil {
		if err := c.CheckSignatureFrom(c); err != nil {
			return nil, fmt.Errorf("hsm: CA certificate self-signature: %w", err)
		}
		if e, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(req.CAPublic) {
			return nil, errors.New("hsm: the CA certificate's public key is not the CA key")
		}
	}
	keyType := uint(pkcs11.CKK_RSA)
	signMech := uint(pkcs11.CKM_RSA_PKCS)
	if _, ok := req.CAPublic.(*ecdsa.PublicKey); ok {
		keyType, signMech = pkcs11.CKK_EC, pkcs11.CKM_ECDSA
	}
	if !s.hasMech(signMech, pkcs11.CKF_SIGN) {
		return nil, fmt.Errorf("hsm: token %s cannot hold a %s CA key (no %s): %w", s.Token, alg, MechName(signMech), ErrUnsupported)
	}

	im := &importer{s: s, req: req, keyType: keyType, objs: &objects{s: s},
		res: &ImportResult{Quirk: string(quirk), Label: req.Label}}
	defer func() {
		clear(im.oneTime)
		if derr := im.objs.destroy(); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			res = nil
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, step := range []struct {
		name string
		run  func(context.Context) error
	}{
		{StepProbe, im.probe}, {StepTransport, im.transport}, {StepUnwrap, im.unwrap}, {StepHarden, im.harden},
		{StepCopy, im.copy}, {StepProve, im.prove}, {StepDestroy, im.destroy},
	} {
		if err := step.run(ctx); err != nil {
			return nil, err
		}
		im.res.Steps = append(im.res.Steps, step.name)
		if req.AfterStep != nil {
			req.AfterStep(step.name)
		}
		// Cancellation takes effect between steps; after the last one the import is complete.
		if err := ctx.Err(); err != nil && step.name != StepDestroy {
			return nil, err
		}
	}
	return im.res, nil
}

// importer holds one import's state from step to step.
type importer struct {
	s       *Session
	req     ImportRequest
	keyType uint
	res     *ImportResult
	objs    *objects // everything created; what is left at the end is destroyed

	p           *ProbeResult
	kek         *KEK          // KEK or one-time key (kwp, host-cbcpad)
	tk          *transportKey // rsa-aes
	payload     []byte        // rsa-aes
	oneTime     []byte        // host-cbcpad
	sessH, keyH pkcs11.ObjectHandle
}

func (im *importer) probe(ctx context.Context) error {
	im.p = im.req.Probe
	if im.p == nil {
		var err error
		if im.p, err = im.s.Probe(ctx, true); err != nil {
			return err
		}
	}
	return im.s.chooseImport(im.p, im.req, im.res)
}

func (im *importer) transport(ctx context.Context) error {
	s, res := im.s, im.res
	var err error
	switch {
	case res.Transport == TransportRSAAES:
		if im.tk, err = s.generateTransportKey(3072, im.objs); err != nil {
			return err
		}
		th, err := s.hardenKey(im.tk.priv, false)
		if err != nil {
			return fmt.Errorf("hsm: transport key: %w", err)
		}
		res.TransportKey, res.OAEPHash = &th, im.p.RSAAESHashes[0]
		im.payload, err = RSAAESPayload(im.tk.pub, res.OAEPHash, im.req.KEK, im.req.File.Blob)
		return err
	case res.CAUnwrap == UnwrapHostCBCPad:
		// A one-time key, never the KEK, carries the CA key to the token.
		im.oneTime = randBytes(32)
		im.kek, err = s.PutKEK(ctx, im.oneTime, res.Transport, im.p, false)
	default:
		im.kek, err = s.PutKEK(ctx, im.req.KEK, res.Transport, im.p, false)
	}
	if err != nil {
		return err
	}
	im.objs.hs = append(im.objs.hs, im.kek.objs.hs...)
	res.KEK, res.TransportKey, res.OAEPHash = &im.kek.ReadBack, im.kek.TransportReadBack, im.kek.OAEPHash
	return nil
}

func (im *importer) unwrap(context.Context) error {
	var err error
	if im.res.ID, err = keyID(im.req.CAPublic); err != nil {
		return err
	}
	if im.req.Trial {
		im.res.ID = randBytes(20)
	}
	im.sessH, err = im.unwrapTo(false)
	return err
}

// unwrapTo unwraps the CA key as a session object, or (token) straight to the token.
func (im *importer) unwrapTo(token bool) (pkcs11.ObjectHandle, error) {
	s, res := im.s, im.res
	tmpl := privateKeyTemplate(im.keyType, token, im.req.Label, res.ID)
	var h pkcs11.ObjectHandle
	var err error
	switch {
	case res.Transport == TransportRSAAES:
		h, err = s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{rsaAESMech(res.OAEPHash)}, im.tk.priv, im.payload, tmpl)
	case res.CAUnwrap == UnwrapHostCBCPad:
		h, err = s.hostCBCPadUnwrap(im.req, im.oneTime, im.kek.h, tmpl)
	default:
		h, err = s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(im.p.KWPMechanism, nil)}, im.kek.h, im.req.File.Blob, tmpl)
	}
	if err != nil {
		return 0, fmt.Errorf("hsm: C_UnwrapKey (%s) of the CA key: %w", res.Mechanism, err)
	}
	return im.objs.add(h), nil
}

func (im *importer) harden(context.Context) error {
	var err error
	if im.res.SessionKey, err = im.s.hardenKey(im.sessH, true); err != nil {
		return fmt.Errorf("hsm: CA key (session copy): %w", err)
	}
	im.keyH = im.sessH
	return nil
}

// copy copies the hardened session key to the token (or, where the module cannot copy and the probe
// showed it keeps unwrap attributes, unwraps it straight to the token), reads it back, and adds the
// public key and certificate objects. A trial import keeps its session copy only.
func (im *importer) copy(context.Context) error {
	if im.req.Trial {
		return nil
	}
	s, res := im.s, im.res
	tokH, err := copyObject(s, im.sessH, []*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true)})
	if err != nil {
		res.CopyFallback = fmt.Sprintf("C_CopyObject: %v", err)
		if !im.p.UnwrapKeepsAttributes {
			return fmt.Errorf("hsm: token %s: C_CopyObject of the CA key failed (%v), and the probe showed that an unwrap there does not keep CKA_SENSITIVE and CKA_EXTRACTABLE, so the key is not unwrapped straight to the token: %w", s.Token, err, ErrUnsupported)
		}
		if tokH, err = im.unwrapTo(true); err != nil {
			return err
		}
	} else {
		im.objs.add(tokH)
	}
	th, err := s.hardenKey(tokH, true)
	if err != nil {
		return fmt.Errorf("hsm: CA key (token copy): %w", err)
	}
	if !th.Final.Token {
		return errors.New("hsm: the CA key's token copy reads CKA_TOKEN false")
	}
	res.TokenKey, im.keyH = &th, tokH
	pt, err := publicKeyTemplate(im.req.CAPublic, true, im.req.Label, res.ID)
	if err != nil {
		return err
	}
	ph, err := s.ctx.CreateObject(s.sh, pt)
	if err != nil {
		return fmt.Errorf("hsm: C_CreateObject (CA public key): %w", err)
	}
	im.objs.add(ph)
	c := im.req.Certificate
	if c == nil {
		return nil
	}
	ch, err := s.ctx.CreateObject(s.sh, []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		attr(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		attr(pkcs11.CKA_TOKEN, true),
		attr(pkcs11.CKA_PRIVATE, false),
		attr(pkcs11.CKA_LABEL, im.req.Label),
		attr(pkcs11.CKA_ID, res.ID),
		attr(pkcs11.CKA_SUBJECT, c.RawSubject),
		attr(pkcs11.CKA_ISSUER, c.RawIssuer),
		attr(pkcs11.CKA_VALUE, c.Raw),
	})
	if err != nil {
		return fmt.Errorf("hsm: C_CreateObject (CA certificate): %w", err)
	}
	im.objs.add(ch)
	return nil
}

// prove signs the proof through the handle of the imported key and shows that it cannot be wrapped out.
func (im *importer) prove(ctx context.Context) error {
	var err error
	if im.res.Proof, err = im.s.prove(im.keyH, im.req.CAPublic, im.req.RecordID, im.req.ManifestKey); err != nil {
		return err
	}
	im.res.WrapRefused, err = im.s.tryWrapOut(ctx, im.keyH, im.p, im.objs)
	return err
}

// destroy destroys everything the import created but the token copy, its public key and certificate.
func (im *importer) destroy(context.Context) error {
	var kept []pkcs11.ObjectHandle
	if !im.req.Trial {
		for _, h := range im.objs.hs {
			if isToken, _ := im.s.getBool(h, pkcs11.CKA_TOKEN); isToken {
				kept = append(kept, h)
			}
		}
	}
	for _, h := range kept {
		im.objs.forget(h)
	}
	err := im.objs.destroy()
	if err != nil {
		im.objs.hs = kept // a failed import leaves nothing
	}
	return err
}

// chooseImport resolves the CA unwrap method and the KEK transport against the active probe.
func (s *Session) chooseImport(p *ProbeResult, req ImportRequest, res *ImportResult) error {
	if !p.Active {
		return errors.New("hsm: an import needs an active probe")
	}
	switch req.CAUnwrap {
	case "", UnwrapKWP:
		if p.KWPMechanism == 0 {
			return fmt.Errorf("hsm: token %s has no RFC 5649 unwrap; it can: %s (host-cbcpad needs --allow-host-unwrap): %w", s.Token, listOrNone(p.CAUnwraps), ErrUnsupported)
		}
		res.CAUnwrap, res.Mechanism = UnwrapKWP, MechName(p.KWPMechanism)
	case UnwrapHostCBCPad:
		if !req.AllowHostUnwrap {
			return errors.New("hsm: --ca-unwrap host-cbcpad unwraps the CA key on the host; it needs --allow-host-unwrap")
		}
		if !p.CBCPadUnwrap {
			return fmt.Errorf("hsm: token %s has no AES-CBC-PAD unwrap; it can: %s: %w", s.Token, listOrNone(p.CAUnwraps), ErrUnsupported)
		}
		res.CAUnwrap, res.Mechanism = UnwrapHostCBCPad, MechName(pkcs11.CKM_AES_CBC_PAD)
		res.Deviations = append(res.Deviations, "host-cbcpad: the CA key was unwrapped on the host and re-encrypted under a one-time AES key for CKM_AES_CBC_PAD (--allow-host-unwrap)")
	default:
		return fmt.Errorf("hsm: unknown CA unwrap method %q (kwp, host-cbcpad)", req.CAUnwrap)
	}
	allowed := []string{TransportRSAAES, TransportCreate, TransportOAEP}
	if res.CAUnwrap == UnwrapHostCBCPad {
		allowed = allowed[1:] // rsa-aes carries RFC 5649 inside
	}
	t, err := chooseTransport(p, req.Transport, allowed...)
	if err != nil {
		return err
	}
	res.Transport = t
	if t == TransportRSAAES {
		res.Mechanism = MechName(pkcs11.CKM_RSA_AES_KEY_WRAP)
	}
	return nil
}

// hostCBCPadUnwrap unwraps the CA key on the host, re-encrypts the PKCS#8 under the one-time key with
// AES-CBC-PAD and unwraps that in the token; the host's plaintext is wiped at once.
func (s *Session) hostCBCPadUnwrap(req ImportRequest, oneTime []byte, h pkcs11.ObjectHandle, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	plain, err := wrap.Unwrap(req.KEK, req.File.Blob)
	if err != nil {
		return 0, err
	}
	defer clear(plain)
	der, _, err := wrap.SplitQuirk(plain)
	if err != nil {
		return 0, err
	}
	iv := randBytes(16)
	ct := cbcPadEncrypt(oneTime, iv, der)
	return s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h, ct, tmpl)
}

// tryWrapOut asks the token to wrap the imported key under a fresh wrapping key and returns its
// refusal; a wrap that succeeds is an error.
func (s *Session) tryWrapOut(ctx context.Context, h pkcs11.ObjectHandle, p *ProbeResult, objs *objects) (string, error) {
	wk := randBytes(32)
	defer clear(wk)
	k, err := s.PutKEK(ctx, wk, TransportAuto, p, true)
	if err != nil {
		return "", err
	}
	objs.hs = append(objs.hs, k.objs.hs...)
	mech := pkcs11.NewMechanism(p.KWPMechanism, nil)
	if p.KWPMechanism == 0 {
		mech = pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, randBytes(16))
	}
	_, err = s.ctx.WrapKey(s.sh, []*pkcs11.Mechanism{mech}, k.h, h)
	if err == nil {
		return "", errors.New("hsm: the imported CA key can be wrapped out of the token")
	}
	return fmt.Sprintf("C_WrapKey (%s): %v", MechName(mech.Mechanism), err), nil
}
