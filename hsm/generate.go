package hsm

import (
	"context"
	"crypto"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// CAKey is a CA key pair in a token.
type CAKey struct {
	Alg    string
	Label  string
	ID     []byte
	Public crypto.PublicKey

	s           *Session
	privH, pubH pkcs11.ObjectHandle
}

// Signer returns a crypto.Signer over the CA private key in the token.
func (c *CAKey) Signer() crypto.Signer { return c.s.signer(c.privH, c.Public) }

// Random returns n bytes from the token's RNG (C_GenerateRandom); the generation flow XORs them with
// the OS RNG's.
func (s *Session) Random(n int) ([]byte, error) {
	b, err := s.ctx.GenerateRandom(s.sh, n)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GenerateRandom: %w", err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("hsm: C_GenerateRandom returned %d bytes, want %d", len(b), n)
	}
	return b, nil
}

// GenerateCA generates the CA key pair (rsa4096, rsa3072, p384, p256) as token objects; the private key
// is sensitive and extractable only so that it can be wrapped. Nothing here ever destroys it: the
// ceremony calls Lock or Destroy when invariant 7 allows.
func (s *Session) GenerateCA(ctx context.Context, alg, label string) (*CAKey, error) {
	if !validCAAlg(alg) {
		return nil, fmt.Errorf("hsm: CA key algorithm %q is not one of rsa4096, rsa3072, p384, p256", alg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tmpID := randBytes(20)
	kp, err := s.generateKeyPair(alg, true, true, label, tmpID)
	if err != nil {
		return nil, err
	}
	id, err := keyID(kp.pub)
	if err == nil {
		err = s.ctx.SetAttributeValue(s.sh, kp.privH, []*pkcs11.Attribute{attr(pkcs11.CKA_ID, id)})
	}
	if err == nil {
		err = s.ctx.SetAttributeValue(s.sh, kp.pubH, []*pkcs11.Attribute{attr(pkcs11.CKA_ID, id)})
	}
	if err != nil {
		// The token keeps the random CKA_ID; the key pair is still one.
		id = tmpID
	}
	return &CAKey{Alg: alg, Label: label, ID: id, Public: kp.pub, s: s, privH: kp.privH, pubH: kp.pubH}, nil
}

func validCAAlg(alg string) bool {
	for _, a := range wrap.KeyAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

// AttrHistory is what was read back from a key: first as the token made it, then, if that was not
// what custos asked for and custos set the attributes again, after that.
type AttrHistory struct {
	First KeyAttrs `json:"first"`
	Reset bool     `json:"reset"`
	Final KeyAttrs `json:"final"`
}

// KEK is a key-encryption key (or a one-time key) put into the token as a session object.
type KEK struct {
	Transport         string       `json:"transport"`
	OAEPHash          string       `json:"oaep_hash,omitempty"`
	ReadBack          AttrHistory  `json:"read_back"`
	TransportReadBack *AttrHistory `json:"transport_key_read_back,omitempty"`

	s    *Session
	h    pkcs11.ObjectHandle
	objs *objects // the key and its transport key
}

// Destroy destroys the KEK and its transport key.
func (k *KEK) Destroy() error { return k.objs.destroy() }

// chooseTransport resolves want against what an active probe confirmed; allowed limits the methods
// that fit the caller.
func chooseTransport(p *ProbeResult, want string, allowed ...string) (string, error) {
	var can []string
	for _, t := range p.Transports {
		for _, a := range allowed {
			if t == a {
				can = append(can, t)
			}
		}
	}
	if !p.Active {
		return "", fmt.Errorf("hsm: choosing a KEK transport needs an active probe")
	}
	if want == TransportAuto || want == "" {
		if len(can) == 0 {
			return "", fmt.Errorf("hsm: token %s confirmed no KEK transport: %w", p.Token, ErrUnsupported)
		}
		return can[0], nil
	}
	for _, t := range can {
		if t == want {
			return t, nil
		}
	}
	return "", fmt.Errorf("hsm: token %s cannot do KEK transport %q; it can: %s: %w", p.Token, want, listOrNone(can), ErrUnsupported)
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	s := xs[0]
	for _, x := range xs[1:] {
		s += ", " + x
	}
	return s
}

// PutKEK puts key into the token as a session object by transport ("create", "oaep" or "auto"), usable
// only to wrap (forWrap) or only to unwrap, and reads its attributes back, setting them again where the
// token ignored the template. The caller wipes key and destroys the KEK.
func (s *Session) PutKEK(ctx context.Context, key []byte, transport string, p *ProbeResult, forWrap bool) (*KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := chooseTransport(p, transport, TransportCreate, TransportOAEP)
	if err != nil {
		return nil, err
	}
	usage := uint(pkcs11.CKA_UNWRAP)
	if forWrap {
		usage = pkcs11.CKA_WRAP
	}
	k := &KEK{Transport: t, s: s, objs: &objects{s: s}}
	ok := false
	defer func() {
		if !ok {
			k.objs.destroy()
		}
	}()
	switch t {
	case TransportCreate:
		if k.h, err = s.createSecret(key, "custos kek", usage); err != nil {
			return nil, err
		}
		k.objs.add(k.h)
	case TransportOAEP:
		tk, err := s.generateTransportKey(3072, k.objs)
		if err != nil {
			return nil, err
		}
		th, err := s.hardenKey(tk.priv, false)
		if err != nil {
			return nil, fmt.Errorf("hsm: transport key: %w", err)
		}
		k.TransportReadBack = &th
		k.OAEPHash = p.OAEPHashes[0]
		ct, err := oaepEncrypt(tk.pub, k.OAEPHash, key)
		if err != nil {
			return nil, err
		}
		if k.h, err = s.oaepUnwrapSecret(tk, k.OAEPHash, ct, len(key), "custos kek", usage); err != nil {
			return nil, err
		}
		k.objs.add(k.h)
	}
	if k.ReadBack, err = s.hardenKey(k.h, false); err != nil {
		return nil, fmt.Errorf("hsm: KEK: %w", err)
	}
	ok = true
	return k, nil
}

// hardenKey reads the security attributes of h back; where the token did not keep CKA_SENSITIVE true
// and CKA_EXTRACTABLE false (openCryptoki ignores the template) it sets them again and reads again.
// Private keys (isPrivateKey) must also be CKA_PRIVATE.
func (s *Session) hardenKey(h pkcs11.ObjectHandle, isPrivateKey bool) (AttrHistory, error) {
	var hist AttrHistory
	var err error
	if hist.First, err = s.readKeyAttrs(h); err != nil {
		return hist, err
	}
	hist.Final = hist.First
	if !hist.First.Sensitive || hist.First.Extractable {
		hist.Reset = true
		if err := s.ctx.SetAttributeValue(s.sh, h, []*pkcs11.Attribute{attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, false)}); err != nil {
			return hist, fmt.Errorf("C_SetAttributeValue(SENSITIVE=true, EXTRACTABLE=false): %w", err)
		}
		if hist.Final, err = s.readKeyAttrs(h); err != nil {
			return hist, err
		}
	}
	if !hist.Final.Sensitive || hist.Final.Extractable || (isPrivateKey && !hist.Final.Private) {
		return hist, fmt.Errorf("attributes stay %s after setting them", hist.Final)
	}
	return hist, nil
}

// WrapCA wraps the CA private key under the KEK with the RFC 5649 mechanism the active probe confirmed
// and returns it in wrap's file format. kekCheck is the KEK's check value.
func (s *Session) WrapCA(ctx context.Context, k *KEK, c *CAKey, kekCheck wrap.CheckValue, p *ProbeResult) (*wrap.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !p.Active || p.KWPMechanism == 0 {
		return nil, fmt.Errorf("hsm: token %s has no confirmed RFC 5649 mechanism to wrap with: %w", s.Token, ErrUnsupported)
	}
	blob, err := s.ctx.WrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.KWPMechanism, nil)}, k.h, c.privH)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_WrapKey (%s): %w", MechName(p.KWPMechanism), err)
	}
	fp, err := wrap.Fingerprint(c.Public)
	if err != nil {
		return nil, err
	}
	return &wrap.File{
		KEKCheck:    kekCheck,
		Fingerprint: fp,
		KeyAlg:      c.Alg,
		Mechanism:   s.wrapMechanism(p.KWPMechanism),
		Blob:        blob,
	}, nil
}

// SoftwareCheck unwraps f with kek on the host only to compare the key inside with pub and with the
// file's fingerprint; it returns the quirk, if any, the blob has (SoftHSM 2.6.1's zero padding).
func SoftwareCheck(kek []byte, f *wrap.File, pub crypto.PublicKey) (wrap.Quirk, error) {
	fp, err := wrap.Fingerprint(pub)
	if err != nil {
		return wrap.QuirkNone, err
	}
	if subtle.ConstantTimeCompare([]byte(fp), []byte(f.Fingerprint)) != 1 {
		return wrap.QuirkNone, fmt.Errorf("hsm: the file names CA key %s, expected %s", f.Fingerprint, fp)
	}
	key, quirk, err := wrap.UnwrapPKCS8(kek, f)
	if err != nil {
		return wrap.QuirkNone, fmt.Errorf("hsm: software check: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := key.Public().(equaler); !ok || !e.Equal(pub) {
		return wrap.QuirkNone, errors.New("hsm: software check: the wrapped key is not the CA key")
	}
	return quirk, nil
}

// Lock makes the CA private key non-extractable and reads the attribute back.
func (c *CAKey) Lock() (KeyAttrs, error) {
	if err := c.s.ctx.SetAttributeValue(c.s.sh, c.privH, []*pkcs11.Attribute{attr(pkcs11.CKA_EXTRACTABLE, false)}); err != nil {
		return KeyAttrs{}, fmt.Errorf("hsm: lock CA key: C_SetAttributeValue(EXTRACTABLE=false): %w", err)
	}
	a, err := c.s.readKeyAttrs(c.privH)
	if err != nil {
		return a, err
	}
	if a.Extractable {
		return a, fmt.Errorf("hsm: lock CA key: CKA_EXTRACTABLE still reads true")
	}
	return a, nil
}

// Destroy destroys the CA key pair and checks that no object with its CKA_ID is left.
func (c *CAKey) Destroy() error {
	var errs []error
	for _, h := range []pkcs11.ObjectHandle{c.privH, c.pubH} {
		if err := c.s.ctx.DestroyObject(c.s.sh, h); err != nil {
			errs = append(errs, fmt.Errorf("hsm: destroy CA key: C_DestroyObject: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	left, err := c.s.findByID(c.ID)
	if err != nil {
		return err
	}
	if len(left) != 0 {
		return fmt.Errorf("hsm: destroy CA key: %d objects with its CKA_ID remain", len(left))
	}
	return nil
}

// findByID lists the objects with CKA_ID id that this session sees.
func (s *Session) findByID(id []byte) ([]pkcs11.ObjectHandle, error) {
	if err := s.ctx.FindObjectsInit(s.sh, []*pkcs11.Attribute{attr(pkcs11.CKA_ID, id)}); err != nil {
		return nil, fmt.Errorf("hsm: C_FindObjectsInit: %w", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := s.ctx.FindObjects(s.sh, 64)
		if err != nil {
			s.ctx.FindObjectsFinal(s.sh)
			return nil, fmt.Errorf("hsm: C_FindObjects: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := s.ctx.FindObjectsFinal(s.sh); err != nil {
		return nil, fmt.Errorf("hsm: C_FindObjectsFinal: %w", err)
	}
	return all, nil
}

// wrapMechanism names what produced a blob, for the file header: "pkcs11:CKM_AES_KEY_WRAP_PAD(0x210a)
// SoftHSM Implementation of PKCS11 2.6".
func (s *Session) wrapMechanism(m uint) string {
	return fmt.Sprintf("pkcs11:%s %s %s %s", MechName(m), s.Token.LibraryManufacturer, s.Token.LibraryDescription, s.Token.LibraryVersion)
}
