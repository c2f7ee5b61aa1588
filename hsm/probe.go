package hsm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// MechReport is what the token says about one mechanism.
type MechReport struct {
	Number  uint     `json:"number"`
	Name    string   `json:"name"`
	Listed  bool     `json:"listed"`
	Flags   []string `json:"flags,omitempty"`
	MinSize uint     `json:"min_key_size,omitempty"`
	MaxSize uint     `json:"max_key_size,omitempty"`
}

// Check is one known-answer test of an active probe, with its evidence: the lengths and the bytes
// compared, or the token's error.
type Check struct {
	Name      string `json:"name"`
	Mechanism string `json:"mechanism,omitempty"`
	OK        bool   `json:"ok"`
	Evidence  string `json:"evidence"`
}

// ProbeResult is the outcome of Probe. Findings other than the mechanism list come from the active
// known-answer tests; a passive probe lists methods the token only advertises.
type ProbeResult struct {
	Token      TokenRecord  `json:"token"`
	Mechanisms []MechReport `json:"mechanisms"`
	Active     bool         `json:"active"`
	Checks     []Check      `json:"checks,omitempty"`

	// KWPMechanism is the number confirmed to be RFC 5649 for unwrap (0: none).
	KWPMechanism uint `json:"kwp_mechanism,omitempty"`
	// KWPWrapExact: the token's wrap output under KWPMechanism equals tink-go's byte for byte on a
	// payload whose length is not a multiple of 8.
	KWPWrapExact           bool     `json:"kwp_wrap_exact"`
	OAEPHashes             []string `json:"oaep_hashes"`
	RSAAESHashes           []string `json:"rsa_aes_hashes"`
	CreateSecret           bool     `json:"create_secret"`
	CBCPadUnwrap           bool     `json:"cbc_pad_unwrap"`
	WrapExtractablePrivate bool     `json:"wrap_extractable_private"`
	UnwrapKeepsAttributes  bool     `json:"unwrap_keeps_attributes"`

	// Transports and CAUnwraps are the available methods, preferred first: confirmed by the active
	// tests, or only advertised when the probe was passive.
	Transports []string `json:"kek_transports"`
	CAUnwraps  []string `json:"ca_unwraps"`
	// GenerationAlgs are the CA key algorithms the token can serve as a generation HSM for (key pair
	// generation and a confirmed RFC 5649 wrap of an extractable private key); empty if none.
	GenerationAlgs []string `json:"generation_algs"`
}

// CA unwrap methods (--ca-unwrap).
const (
	UnwrapKWP        = "kwp"         // RFC 5649 in the token
	UnwrapHostCBCPad = "host-cbcpad" // blob unwrapped on the host, re-encrypted for AES-CBC-PAD (deviation)
)

// Probe reports the token's relevant mechanisms and, when active, runs the known-answer tests on
// session objects only, all destroyed before it returns.
func (s *Session) Probe(ctx context.Context, active bool) (*ProbeResult, error) {
	r := &ProbeResult{Token: s.Token, Active: active, OAEPHashes: []string{}, RSAAESHashes: []string{}}
	list, err := s.ctx.GetMechanismList(s.Token.Slot)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GetMechanismList: %w", err)
	}
	listed := map[uint]bool{}
	for _, m := range list {
		listed[m.Mechanism] = true
	}
	for _, m := range probedMechs {
		mr := MechReport{Number: m, Name: MechName(m), Listed: listed[m]}
		if mr.Listed {
			info, err := s.ctx.GetMechanismInfo(s.Token.Slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)})
			if err == nil {
				mr.MinSize, mr.MaxSize = info.MinKeySize, info.MaxKeySize
				for _, f := range mechFlagNames {
					if info.Flags&f.flag != 0 {
						mr.Flags = append(mr.Flags, f.name)
					}
				}
			}
		}
		r.Mechanisms = append(r.Mechanisms, mr)
	}
	if active {
		if err := s.activeProbe(ctx, r); err != nil {
			return nil, err
		}
	}
	r.conclude()
	return r, nil
}

func (r *ProbeResult) mech(m uint) MechReport {
	for _, x := range r.Mechanisms {
		if x.Number == m {
			return x
		}
	}
	return MechReport{}
}

func (m MechReport) has(flag string) bool { return m.Listed && slices.Contains(m.Flags, flag) }

// conclude derives the methods and generation algorithms from the findings.
func (r *ProbeResult) conclude() {
	r.Transports, r.CAUnwraps, r.GenerationAlgs = []string{}, []string{}, []string{}
	if r.Active {
		if len(r.RSAAESHashes) > 0 {
			r.Transports = append(r.Transports, TransportRSAAES)
		}
		if r.CreateSecret {
			r.Transports = append(r.Transports, TransportCreate)
		}
		if len(r.OAEPHashes) > 0 {
			r.Transports = append(r.Transports, TransportOAEP)
		}
		if r.KWPMechanism != 0 {
			r.CAUnwraps = append(r.CAUnwraps, UnwrapKWP)
		}
		if r.CBCPadUnwrap {
			r.CAUnwraps = append(r.CAUnwraps, UnwrapHostCBCPad)
		}
	} else {
		if r.mech(pkcs11.CKM_RSA_AES_KEY_WRAP).has("unwrap") {
			r.Transports = append(r.Transports, TransportRSAAES)
		}
		r.Transports = append(r.Transports, TransportCreate)
		if r.mech(pkcs11.CKM_RSA_PKCS_OAEP).has("unwrap") {
			r.Transports = append(r.Transports, TransportOAEP)
		}
		for _, m := range kwpCandidates {
			if r.mech(m).has("unwrap") {
				r.CAUnwraps = append(r.CAUnwraps, UnwrapKWP)
				break
			}
		}
		if r.mech(pkcs11.CKM_AES_CBC_PAD).has("unwrap") {
			r.CAUnwraps = append(r.CAUnwraps, UnwrapHostCBCPad)
		}
	}
	if r.Active && (r.KWPMechanism == 0 || !r.WrapExtractablePrivate) {
		return
	}
	if rsaGen := r.mech(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN); rsaGen.Listed {
		for _, a := range []struct {
			name string
			bits uint
		}{{"rsa4096", 4096}, {"rsa3072", 3072}} {
			if rsaGen.MaxSize == 0 || rsaGen.MaxSize >= a.bits {
				r.GenerationAlgs = append(r.GenerationAlgs, a.name)
			}
		}
	}
	if r.mech(pkcs11.CKM_EC_KEY_PAIR_GEN).Listed {
		r.GenerationAlgs = append(r.GenerationAlgs, "p384", "p256")
	}
}

// activeProbe runs the known-answer tests. Each test appends its Check; a token error is a finding,
// not a failure of the probe. Only cancellation and host errors end it early.
func (s *Session) activeProbe(ctx context.Context, r *ProbeResult) (err error) {
	objs := &objects{s: s}
	defer func() {
		if derr := objs.destroy(); err == nil {
			err = derr
		}
	}()
	add := func(c Check) { r.Checks = append(r.Checks, c) }

	// A throw-away KEK: created, or else delivered by OAEP below.
	kek := randBytes(32)
	defer clear(kek)
	var kekH pkcs11.ObjectHandle
	if h, err := s.createSecret(kek, "custos probe", pkcs11.CKA_ENCRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP); err != nil {
		add(Check{Name: "C_CreateObject of an AES-256 secret key", OK: false, Evidence: err.Error()})
	} else {
		objs.add(h)
		c := s.katAES(h, kek)
		c.Name = "C_CreateObject of an AES-256 secret key"
		add(c)
		if c.OK {
			r.CreateSecret, kekH = true, h
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// OAEP unwrap of an AES key, per hash; then CKM_RSA_AES_KEY_WRAP, per hash.
	if r.mech(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN).Listed {
		tk, err := s.generateTransportKey(2048, objs)
		if err != nil {
			add(Check{Name: "RSA transport key", OK: false, Evidence: err.Error()})
		} else {
			for _, hn := range oaepHashes {
				name := "RSA-OAEP " + hn + " unwrap of an AES-256 key"
				ct, err := oaepEncrypt(tk.pub, hn, kek)
				if err != nil {
					return err
				}
				h, err := s.oaepUnwrapSecret(tk, hn, ct, 32, "custos probe", pkcs11.CKA_ENCRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP)
				if err != nil {
					add(Check{Name: name, Mechanism: MechName(pkcs11.CKM_RSA_PKCS_OAEP), Evidence: err.Error()})
					continue
				}
				objs.add(h)
				c := s.katAES(h, kek)
				c.Name, c.Mechanism = name, MechName(pkcs11.CKM_RSA_PKCS_OAEP)
				c.Evidence = fmt.Sprintf("%d-byte OAEP ciphertext; %s", len(ct), c.Evidence)
				add(c)
				if c.OK {
					r.OAEPHashes = append(r.OAEPHashes, hn)
					if kekH == 0 {
						kekH = h
					}
				}
			}
			for _, hn := range oaepHashes {
				if err := ctx.Err(); err != nil {
					return err
				}
				name := "CKM_RSA_AES_KEY_WRAP " + hn + ": OAEP(KEK) ‖ RFC 5649 blob"
				inner := randBytes(32)
				blob, err := wrap.Wrap(kek, inner)
				if err != nil {
					return fmt.Errorf("hsm: probe: %w", err)
				}
				payload, err := RSAAESPayload(tk.pub, hn, kek, blob)
				if err != nil {
					return err
				}
				h, err := s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{rsaAESMech(hn)}, tk.priv, payload, secretTemplate("custos probe", pkcs11.CKA_ENCRYPT))
				if err != nil {
					add(Check{Name: name, Mechanism: MechName(pkcs11.CKM_RSA_AES_KEY_WRAP), Evidence: fmt.Sprintf("C_UnwrapKey of %d bytes: %v", len(payload), err)})
					continue
				}
				objs.add(h)
				c := s.katAES(h, inner)
				c.Name, c.Mechanism = name, MechName(pkcs11.CKM_RSA_AES_KEY_WRAP)
				c.Evidence = fmt.Sprintf("%d-byte payload; %s", len(payload), c.Evidence)
				add(c)
				if c.OK {
					r.RSAAESHashes = append(r.RSAAESHashes, hn)
				}
			}
		}
	}
	if kekH == 0 {
		add(Check{Name: "AES key-wrap tests", OK: false, Evidence: "not run: no AES key could be put in the token"})
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Which number is RFC 5649 for unwrap: tink-go wraps a random AES key, the token unwraps it and
	// encrypts a zero block with it.
	for _, m := range kwpCandidates {
		name := "RFC 5649 unwrap (tink-go blob of a 32-byte AES key)"
		inner := randBytes(32)
		blob, err := wrap.Wrap(kek, inner)
		if err != nil {
			return fmt.Errorf("hsm: probe: %w", err)
		}
		h, err := s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)}, kekH, blob, secretTemplate("custos probe", pkcs11.CKA_ENCRYPT))
		if err != nil {
			add(Check{Name: name, Mechanism: MechName(m), Evidence: fmt.Sprintf("C_UnwrapKey of %d bytes: %v", len(blob), err)})
			continue
		}
		objs.add(h)
		c := s.katAES(h, inner)
		c.Name, c.Mechanism = name, MechName(m)
		c.Evidence = fmt.Sprintf("%d-byte blob; %s", len(blob), c.Evidence)
		add(c)
		if c.OK && r.KWPMechanism == 0 {
			r.KWPMechanism = m
		}
	}

	// Whether the token's wrap equals tink-go's on a 37-byte payload.
	if r.KWPMechanism != 0 {
		add(s.checkWrapExact(r, kek, kekH, objs))
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// AES-CBC-PAD unwrap of an AES key encrypted on the host.
	{
		inner := randBytes(32)
		iv := randBytes(16)
		ct := cbcPadEncrypt(kek, iv, inner)
		h, err := s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, kekH, ct, secretTemplate("custos probe", pkcs11.CKA_ENCRYPT))
		name := "AES-CBC-PAD unwrap of a 32-byte AES key"
		if err != nil {
			add(Check{Name: name, Mechanism: MechName(pkcs11.CKM_AES_CBC_PAD), Evidence: fmt.Sprintf("C_UnwrapKey of %d bytes: %v", len(ct), err)})
		} else {
			objs.add(h)
			c := s.katAES(h, inner)
			c.Name, c.Mechanism = name, MechName(pkcs11.CKM_AES_CBC_PAD)
			c.Evidence = fmt.Sprintf("%d-byte ciphertext; %s", len(ct), c.Evidence)
			add(c)
			r.CBCPadUnwrap = c.OK
		}
	}

	// Whether a private key unwrap keeps CKA_SENSITIVE true and CKA_EXTRACTABLE false as asked.
	add(s.checkUnwrapAttributes(r, kek, kekH, objs))
	if err := ctx.Err(); err != nil {
		return err
	}
	// Whether an extractable private key may be wrapped at all.
	add(s.checkWrapPrivate(r, kekH, objs))
	return nil
}

// katAES encrypts a zero block with the token's key h and compares it with Go's under want.
func (s *Session) katAES(h pkcs11.ObjectHandle, want []byte) Check {
	zero := make([]byte, 16)
	if err := s.ctx.EncryptInit(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, h); err != nil {
		return Check{Evidence: fmt.Sprintf("C_EncryptInit (CKM_AES_ECB): %v", err)}
	}
	got, err := s.ctx.Encrypt(s.sh, zero)
	if err != nil {
		return Check{Evidence: fmt.Sprintf("C_Encrypt (CKM_AES_ECB): %v", err)}
	}
	b, _ := aes.NewCipher(want)
	exp := make([]byte, 16)
	b.Encrypt(exp, zero)
	ok := bytes.Equal(got, exp)
	return Check{OK: ok, Evidence: fmt.Sprintf("AES-ECB(0^16) under the unwrapped key: token %s, Go %s, %s", hex.EncodeToString(got), hex.EncodeToString(exp), equality(ok))}
}

func equality(ok bool) string {
	if ok {
		return "equal"
	}
	return "DIFFERENT"
}

func (s *Session) checkWrapExact(r *ProbeResult, kek []byte, kekH pkcs11.ObjectHandle, objs *objects) Check {
	c := Check{Name: "RFC 5649 wrap of a 37-byte secret compared with tink-go", Mechanism: MechName(r.KWPMechanism)}
	value := randBytes(37)
	h, err := s.ctx.CreateObject(s.sh, []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_SENSITIVE, false),
		attr(pkcs11.CKA_EXTRACTABLE, true),
		attr(pkcs11.CKA_VALUE, value),
	})
	if err != nil {
		c.Evidence = fmt.Sprintf("C_CreateObject (37-byte generic secret): %v", err)
		return c
	}
	objs.add(h)
	got, err := s.ctx.WrapKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(r.KWPMechanism, nil)}, kekH, h)
	if err != nil {
		c.Evidence = fmt.Sprintf("C_WrapKey: %v", err)
		return c
	}
	tink, err := wrap.Wrap(kek, value)
	if err != nil {
		c.Evidence = err.Error()
		return c
	}
	padded := append(slices.Clone(value), make([]byte, 3)...)
	tinkPadded, _ := wrap.Wrap(kek, padded)
	c.OK = bytes.Equal(got, tink)
	r.KWPWrapExact = c.OK
	c.Evidence = fmt.Sprintf("token %d bytes %s, tink-go %d bytes %s: %s", len(got), hex.EncodeToString(got), len(tink), hex.EncodeToString(tink), equality(c.OK))
	if !c.OK && bytes.Equal(got, tinkPadded) {
		c.Evidence += "; equal to tink-go over the payload zero-padded to 40 bytes (SoftHSM 2.6.1's wrap quirk)"
	}
	return c
}

// probePrivateKey is the small RSA key the attribute and wrap tests unwrap; RSA so that tokens without
// EC (openCryptoki 3.8.1) can run them.
func probePrivateKey() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKCS8PrivateKey(k)
}

func (s *Session) checkUnwrapAttributes(r *ProbeResult, kek []byte, kekH pkcs11.ObjectHandle, objs *objects) Check {
	c := Check{Name: "private key unwrap keeps CKA_SENSITIVE=true CKA_EXTRACTABLE=false as asked"}
	der, err := probePrivateKey()
	if err != nil {
		c.Evidence = err.Error()
		return c
	}
	defer clear(der)
	var mech *pkcs11.Mechanism
	var blob []byte
	switch {
	case r.KWPMechanism != 0:
		mech = pkcs11.NewMechanism(r.KWPMechanism, nil)
		blob, err = wrap.Wrap(kek, der)
	case r.CBCPadUnwrap:
		iv := randBytes(16)
		mech = pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)
		blob = cbcPadEncrypt(kek, iv, der)
	default:
		c.Evidence = "not run: no confirmed unwrap mechanism for a private key"
		return c
	}
	if err != nil {
		c.Evidence = err.Error()
		return c
	}
	c.Mechanism = MechName(mech.Mechanism)
	h, err := s.ctx.UnwrapKey(s.sh, []*pkcs11.Mechanism{mech}, kekH, blob, privateKeyTemplate(pkcs11.CKK_RSA, false, "custos probe", []byte("custos probe")))
	if err != nil {
		c.Evidence = fmt.Sprintf("C_UnwrapKey of a %d-byte RSA PKCS#8: %v", len(der), err)
		return c
	}
	objs.add(h)
	a, err := s.readKeyAttrs(h)
	if err != nil {
		c.Evidence = err.Error()
		return c
	}
	c.OK = a.Sensitive && !a.Extractable && a.Private
	r.UnwrapKeepsAttributes = c.OK
	c.Evidence = fmt.Sprintf("asked SENSITIVE=true EXTRACTABLE=false PRIVATE=true; read back %s", a)
	return c
}

func (s *Session) checkWrapPrivate(r *ProbeResult, kekH pkcs11.ObjectHandle, objs *objects) Check {
	c := Check{Name: "C_WrapKey of an extractable private key generated in the token"}
	mech := pkcs11.NewMechanism(r.KWPMechanism, nil)
	if r.KWPMechanism == 0 {
		if !r.CBCPadUnwrap {
			c.Evidence = "not run: no confirmed wrap mechanism"
			return c
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, randBytes(16))
	}
	c.Mechanism = MechName(mech.Mechanism)
	alg := "rsa2048"
	if r.mech(pkcs11.CKM_EC_KEY_PAIR_GEN).Listed {
		alg = "p256"
	}
	kp, err := s.generateKeyPair(alg, false, true, "custos probe", []byte("custos probe"))
	if err != nil {
		c.Evidence = err.Error()
		return c
	}
	objs.add(kp.pubH)
	objs.add(kp.privH)
	out, err := s.ctx.WrapKey(s.sh, []*pkcs11.Mechanism{mech}, kekH, kp.privH)
	if err != nil {
		c.Evidence = fmt.Sprintf("%s key: C_WrapKey: %v", alg, err)
		return c
	}
	c.OK = true
	r.WrapExtractablePrivate = true
	c.Evidence = fmt.Sprintf("%s key wrapped to %d bytes", alg, len(out))
	return c
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// cbcPadEncrypt is AES-CBC with PKCS#7 padding, what CKM_AES_CBC_PAD unwraps.
func cbcPadEncrypt(key, iv, plain []byte) []byte {
	b, _ := aes.NewCipher(key)
	pad := 16 - len(plain)%16
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf, buf)
	return buf
}

// RunProbe opens the token cfg names, probes it (actively if asked) and closes the session: what
// `custos hsm probe` runs. Render the result with Text or encoding/json.
func RunProbe(ctx context.Context, cfg Config, active bool) (_ *ProbeResult, err error) {
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return s.Probe(ctx, active)
}
