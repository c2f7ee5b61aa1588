package ceremony

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// Legacy blob formats (--legacy-format), docs/format.md "Legacy inputs of adopt".
const (
	// LegacyKWP is RFC 5649 (AES key wrap with padding) of the CA key's PKCS#8 under the legacy key.
	LegacyKWP = "kwp"
	// LegacyCBCPad is IV (16 bytes) ‖ AES-CBC under the legacy key of the PKCS#7-padded PKCS#8.
	LegacyCBCPad = "cbc-pad"
)

// LegacyComponent is one XOR component of a legacy key, as its holder entered it from the envelope.
type LegacyComponent struct {
	Holder string
	Value  []byte // adopt wipes it
	Check  wrap.CheckValue
}

// ComponentSource asks for a legacy key's components one at a time: the next is asked for only after
// the one before matched its check value.
type ComponentSource interface {
	Component(i, n int) (LegacyComponent, error)
}

// AdoptOptions are the inputs of an adoption.
type AdoptOptions struct {
	Roster             string
	ExpectRosterSHA256 string
	HSM                hsm.Config
	HSMPIN             func() ([]byte, error)
	HSMPINSource       string
	Transport          string // auto, create, oaep

	Components       int             // how many XOR components the legacy key was split into
	Source           ComponentSource // the terminal; a --components-file in rehearsal
	ComponentsSource string          // where the components come from, for the record
	KCV              string          // the whole legacy key's check value, cmac:HEX or ecb:HEX
	LegacyBlob       string          // the legacy wrapped CA key
	LegacyFormat     string          // kwp or cbc-pad
	LegacyMAC        string          // optional: HMAC-SHA256 under the legacy key over the blob file
	CACert           string          // the CA certificate (PEM or DER)
	AllowHostUnwrap  bool            // unwrap the legacy blob on the host (cbc-pad, or a token without RFC 5649)

	Identities []string
	Cards      CardOptions // the new roster's cards, held together for the check round
	Out        string
	Rehearsal  bool
	Preflight  *PreflightReport
	HostFacts  Facts
	Prompter   Prompter
	Now        func() time.Time
	AfterStep  func(step string) error
}

// AdoptResult is what an adoption reports.
type AdoptResult struct {
	Dir           string   `json:"dir"`
	CeremonyID    string   `json:"ceremony_id"`
	RosterSHA256  string   `json:"roster_sha256"`
	ManifestKey   string   `json:"manifest_key"`
	CAFingerprint string   `json:"ca_fingerprint"`
	KEKCheck      string   `json:"kek_check"`
	Unwrapped     string   `json:"unwrapped"` // "token" or "host"
	Deviations    []string `json:"deviations"`
	Seal          string   `json:"seal"`
}

// AdoptSteps are the steps of an adoption.
var AdoptSteps = concat(
	[]string{"preflight", "pins", "legacy", "witness", "liveness", "token", "components", "legacy-key", "legacy-mac", "kek", "adopt", "software-check"},
	prefixed("trial-import", hsm.ImportSteps),
	[]string{"split", "check-round", "manifest", "envelopes", "minutes", "seal"},
)

// legacyInput is what adopt reads before any secret: the blob, its MAC, the certificate.
type legacyInput struct {
	blob, mac []byte
	kcv       wrap.CheckValue
	cert      *x509.Certificate
	certPEM   []byte
	alg, fp   string
}

// adoption is one adoption between steps.
type adoption struct {
	*run
	o          AdoptOptions
	in         legacyInput
	g          *regen // the new roster and its keys, for the split and check round
	legacy     []byte
	checks     []string
	kek        []byte
	mkey       ed25519.PrivateKey
	sess       *hsm.Session
	probe      *hsm.ProbeResult
	file       *wrap.File
	m          *shares.Manifest
	deviations []string
}

// Adopt takes over a CA key from the paper procedure: a legacy AES key held as XOR components in
// envelopes, and the CA key exported wrapped under it. Pins first (roster, module, token); each new
// custodian witnessed; the token opened before any secret is entered; each component entered and
// confirmed by its own check value before the next is asked for; the whole key's check value; the
// blob's HMAC, if given, before anything else uses the blob; the blob unwrapped in the token (or on the
// host with AllowHostUnwrap, a recorded deviation) and proven to hold the key of the CA certificate
// before anything but the transcript is written to the new record; then, because people saw the legacy
// key, a rekey: a fresh KEK (HSM random XOR OS random), the CA key re-wrapped under it, a trial import
// with proof of possession, new shares and their check round, a signed manifest of generation 1 of a new
// ceremony; only then each envelope's destruction witnessed. The legacy key and its components are wiped.
func Adopt(ctx context.Context, o AdoptOptions) (res *AdoptResult, err error) {
	defer clear(o.HSM.PIN)
	if o.Preflight == nil || o.Prompter == nil || o.Source == nil {
		return nil, errors.New("adopt needs its preflight report, a prompter for the witnesses and a component source")
	}
	if o.Roster == "" || o.CACert == "" || o.LegacyBlob == "" {
		return nil, fmt.Errorf("%w: --roster, --ca-cert and --legacy-blob are required", ErrUsage)
	}
	if !o.Rehearsal && (o.ExpectRosterSHA256 == "" || o.HSM.ExpectModuleSHA256 == "" || o.HSM.TokenSerial == "") {
		return nil, fmt.Errorf("%w: a production adoption pins the roster (--expect-roster-sha256), the module (--expect-module-sha256) and the token (--token-serial)", ErrUsage)
	}
	a := &adoption{o: o, g: &regen{}}
	if a.g.rosterBytes, a.g.roster, err = loadRoster(o.Roster, o.ExpectRosterSHA256, o.Rehearsal); err != nil {
		return nil, err
	}
	if err := hsm.CheckModule(o.HSM.Module, o.HSM.ExpectModuleSHA256); err != nil && !o.Rehearsal {
		return nil, err
	}
	if a.in, err = readLegacy(o); err != nil {
		return nil, err
	}
	if a.g.cardRecords, err = verifyRosterCards(a.g.roster, o.Rehearsal); err != nil {
		return nil, err
	}
	if len(a.g.cardRecords) > 0 && (o.Cards.Selector == nil || o.Cards.Selector.OneReader) {
		return nil, fmt.Errorf("%w: the roster's card custodians bring their cards together (not --one-reader)", ErrUsage)
	}
	if a.g.newKeys, err = softwareKeys(o.Identities, rosterRecipients(a.g.roster), "the roster"); err != nil {
		return nil, err
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	if a.run, err = startRun("adopt", o.Out, "", Facts{"rehearsal": o.Rehearsal, "adopts": a.in.fp}, o.HostFacts, o.Now, o.AfterStep); err != nil {
		return nil, err
	}
	a.g.run = a.run
	defer a.g.close() // the cards held, and the record
	defer func() {
		clear(a.legacy)
		clear(a.kek)
		clear(a.mkey)
		if a.sess != nil {
			a.sess.Close()
		}
		if err != nil {
			err = a.abort(err, 1, "shares", "checks", "manifest.json", "ca-key.wrapped")
		}
	}()
	if err := a.event("preflight", Actor{Role: "custos"}, o.Preflight.Facts()); err != nil {
		return nil, err
	}
	if err := a.steps(ctx, step{"pins", a.pins}, step{"legacy", a.legacyFacts}, step{"witness", a.witness}, step{"liveness", a.liveness}, step{"token", a.token},
		step{"components", a.components}, step{"legacy-key", a.legacyKey}, step{"legacy-mac", a.legacyMAC}, step{"kek", a.makeKEK},
		step{"adopt", a.adopt}, step{"software-check", a.softwareCheck}, step{"trial-import", a.trialImport}, step{"split", a.split},
		step{"manifest", a.manifest}, step{"envelopes", a.envelopes}, step{"minutes", a.minutes}); err != nil {
		return nil, err
	}
	a.step = "seal"
	seal, err := a.seal(SealBody{Generation: 1, Outcome: OutcomeSuccess}, sealSigners(a.mkey, a.g.newKeys)...)
	if err != nil {
		return nil, err
	}
	fp, _ := shares.ManifestKeyFingerprint(a.mkey.Public().(ed25519.PublicKey))
	kcv, _ := wrap.KCV(a.kek)
	unwrapped := "token"
	if a.hostUnwrap() {
		unwrapped = "host"
	}
	return &AdoptResult{Dir: o.Out, CeremonyID: a.id, RosterSHA256: shares.FileSHA256(a.g.rosterBytes), ManifestKey: fp,
		CAFingerprint: a.in.fp, KEKCheck: kcv.String(), Unwrapped: unwrapped, Deviations: a.deviations, Seal: seal}, nil
}

// readLegacy reads and checks everything of the legacy procedure that is not secret, before the record
// starts: the format and the host-unwrap rule, the check value, the blob, its MAC, the certificate.
func readLegacy(o AdoptOptions) (in legacyInput, err error) {
	if o.Components < 2 || o.Components > 16 {
		return in, fmt.Errorf("%w: --components %d: a legacy key held in 2 to 16 components", ErrUsage, o.Components)
	}
	switch o.LegacyFormat {
	case LegacyKWP:
	case LegacyCBCPad:
		if !o.AllowHostUnwrap {
			return in, fmt.Errorf("%w: --legacy-format cbc-pad is decrypted on the host, where the CA key exists in plaintext for a moment; that needs --allow-host-unwrap (a recorded deviation)", ErrUsage)
		}
	default:
		return in, fmt.Errorf("%w: --legacy-format %q: kwp or cbc-pad", ErrUsage, o.LegacyFormat)
	}
	if in.kcv, err = wrap.ParseCheckValue(o.KCV); err != nil {
		return in, fmt.Errorf("%w: --kcv: %v", ErrUsage, err)
	}
	if in.blob, err = readLimited(o.LegacyBlob, maxRecordFile); err != nil {
		return in, fmt.Errorf("--legacy-blob: %w", err)
	}
	if o.LegacyMAC != "" {
		b, err := readLimited(o.LegacyMAC, 1024)
		if err != nil {
			return in, fmt.Errorf("--legacy-mac: %w", err)
		}
		if in.mac, err = parseMAC(b); err != nil {
			return in, fmt.Errorf("--legacy-mac %s: %w", o.LegacyMAC, err)
		}
	}
	b, err := readLimited(o.CACert, maxRecordFile)
	if err != nil {
		return in, fmt.Errorf("--ca-cert: %w", err)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "CERTIFICATE" {
		der = blk.Bytes
	}
	if in.cert, err = x509.ParseCertificate(der); err != nil {
		return in, fmt.Errorf("--ca-cert %s: %w", o.CACert, err)
	}
	in.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: in.cert.Raw})
	if in.alg, err = hsm.KeyAlg(in.cert.PublicKey); err != nil || !validKeyAlg(in.alg) {
		return in, fmt.Errorf("--ca-cert %s: the CA key must be one of %v (it is %s)", o.CACert, wrap.KeyAlgs, in.alg)
	}
	in.fp, err = wrap.Fingerprint(in.cert.PublicKey)
	return in, err
}

// parseMAC reads an HMAC-SHA256 value: 32 raw bytes, or 64 hex digits and an optional newline.
func parseMAC(b []byte) ([]byte, error) {
	if len(b) == sha256.Size {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	out := make([]byte, sha256.Size)
	if len(t) != 2*sha256.Size {
		return nil, fmt.Errorf("%d bytes: want an HMAC-SHA256 as 32 raw bytes or 64 hex digits", len(b))
	}
	if _, err := hex.Decode(out, t); err != nil {
		return nil, fmt.Errorf("not 64 hex digits: %w", err)
	}
	return out, nil
}

// ParseComponent decodes a component as typed or written: hex digits, in either case, with spaces
// between groups allowed. It makes no string of the value, and its errors do not show it.
func ParseComponent(typed []byte) ([]byte, error) {
	digits := make([]byte, 0, len(typed))
	for _, c := range typed {
		if c != ' ' && c != '\t' {
			digits = append(digits, c)
		}
	}
	defer clear(digits)
	out := make([]byte, len(digits)/2)
	if _, err := hex.Decode(out, digits); err != nil || len(digits)%2 != 0 {
		clear(out)
		return nil, errors.New("a component is hex digits (spaces between groups allowed)")
	}
	switch len(out) {
	case 16, 24, 32:
		return out, nil
	}
	clear(out)
	return nil, fmt.Errorf("a component of %d bytes is not an AES-128, -192 or -256 key", len(out))
}

func (a *adoption) pins(context.Context) error {
	return a.event("pins", Actor{Role: "operator"}, Facts{
		"roster_sha256": shares.FileSHA256(a.g.rosterBytes), "roster_pinned": a.o.ExpectRosterSHA256 != "",
		"module": a.o.HSM.Module, "module_pinned": a.o.HSM.ExpectModuleSHA256 != "",
		"token_serial": a.o.HSM.TokenSerial, "token_label": a.o.HSM.TokenLabel,
	})
}

// legacyFacts records what the legacy procedure hands over, before any of it is used.
func (a *adoption) legacyFacts(context.Context) error {
	return a.event("legacy", Actor{Role: "operator"}, Facts{
		"format": a.o.LegacyFormat, "blob": a.o.LegacyBlob, "blob_sha256": shares.FileSHA256(a.in.blob), "blob_size": len(a.in.blob),
		"mac_given": a.in.mac != nil, "kcv": a.in.kcv.String(), "components": a.o.Components, "components_source": a.o.ComponentsSource,
		"ca_certificate_sha256": shares.FileSHA256(a.in.cert.Raw), "ca_subject": a.in.cert.Subject.String(),
		"ca_fingerprint": a.in.fp, "ca_key_alg": a.in.alg, "allow_host_unwrap": a.o.AllowHostUnwrap,
	})
}

// liveness brings the new custodians' cards together, each proving its liveness, and checks that every
// custodian is present for the check round.
func (a *adoption) liveness(context.Context) error {
	held, release, err := holdCards(a.o.Cards, rosterCards(a.g.roster, a.g.cardRecords), "adopt", a.id, "decrypt its new share and check token (check round), and co-sign the record")
	if err != nil {
		return err
	}
	a.g.release = release
	a.g.newKeys = append(a.g.newKeys, held...)
	if _, err := allPresent(a.g.newKeys, a.g.roster); err != nil {
		return err
	}
	return a.event("liveness", Actor{Role: "custos"}, Facts{"cards": len(held)})
}

func (a *adoption) witness(context.Context) error {
	return a.witnessRoster(a.o.Prompter, a.g.roster, a.g.cardRecords)
}

// components asks for each component and checks it against its own check value before asking for the
// next; the legacy key is their XOR.
func (a *adoption) components(context.Context) error {
	for i := 1; i <= a.o.Components; i++ {
		c, err := a.o.Source.Component(i, a.o.Components)
		if err != nil {
			return fmt.Errorf("component %d of %d: %w", i, a.o.Components, err)
		}
		ok := c.Check.Matches(c.Value)
		if ok && a.legacy != nil && len(c.Value) != len(a.legacy) {
			clear(c.Value)
			return fmt.Errorf("component %d of %d has %d bytes, component 1 has %d", i, a.o.Components, len(c.Value), len(a.legacy))
		}
		if !ok {
			clear(c.Value)
			return fmt.Errorf("component %d of %d does not match its check value %s; check the envelope and start the adoption again", i, a.o.Components, c.Check)
		}
		if a.legacy == nil {
			a.legacy = make([]byte, len(c.Value))
		}
		subtle.XORBytes(a.legacy, a.legacy, c.Value)
		clear(c.Value)
		a.checks = append(a.checks, c.Check.String())
		if err := a.t.Append("components", Actor{Role: "custodian", Name: c.Holder}, Facts{"component": i, "of": a.o.Components,
			"check_value": c.Check.String(), "matches": true, "source": a.o.ComponentsSource}); err != nil {
			return err
		}
	}
	return a.done("components")
}

func (a *adoption) legacyKey(context.Context) error {
	if !a.in.kcv.Matches(a.legacy) {
		return fmt.Errorf("the XOR of the %d components does not match --kcv %s, though each matched its own check value; check the envelopes belong to this key", a.o.Components, a.in.kcv)
	}
	return a.event("legacy-key", Actor{Role: "custos"}, Facts{"bits": 8 * len(a.legacy), "kcv": a.in.kcv.String(), "matches": true})
}

// legacyMAC checks the blob's HMAC under the legacy key before anything else uses the blob.
func (a *adoption) legacyMAC(context.Context) error {
	if a.in.mac == nil {
		return a.event("legacy-mac", Actor{Role: "custos"}, Facts{"mac": "none given"})
	}
	m := hmac.New(sha256.New, a.legacy)
	m.Write(a.in.blob)
	if !hmac.Equal(m.Sum(nil), a.in.mac) {
		return fmt.Errorf("the HMAC-SHA256 in %s does not match %s under the legacy key; the blob or the MAC was changed, or they belong to another key", a.o.LegacyMAC, a.o.LegacyBlob)
	}
	return a.event("legacy-mac", Actor{Role: "custos"}, Facts{"mac": "HMAC-SHA256 under the legacy key over the blob file", "verified": true})
}

func (a *adoption) token(ctx context.Context) error {
	var err error
	if a.sess, err = openToken(ctx, a.o.HSM, a.o.HSMPIN, a.o.Rehearsal); err != nil {
		return err
	}
	if a.probe, err = a.sess.Probe(ctx, true); err != nil {
		return err
	}
	return a.event("token", Actor{Role: "hsm", Name: a.sess.Token.Label}, Facts{"token": a.sess.Token, "probe": a.probe, "pin_source": a.o.HSMPINSource})
}

func (a *adoption) makeKEK(context.Context) error {
	var err error
	if a.kek, err = a.freshKEK(a.sess); err != nil {
		return err
	}
	a.mkey, err = shares.DeriveManifestKey(a.kek, a.id)
	return err
}

// hostUnwrap says whether the legacy blob is opened on the host: cbc-pad always, kwp only on a token
// without a confirmed RFC 5649 mechanism and with --allow-host-unwrap.
func (a *adoption) hostUnwrap() bool {
	return a.o.LegacyFormat == LegacyCBCPad || (a.o.AllowHostUnwrap && a.probe != nil && a.probe.KWPMechanism == 0)
}

// adopt opens the legacy blob, proves it holds the CA certificate's key and re-wraps it under the new
// KEK; only then is anything but the transcript written to the new record.
func (a *adoption) adopt(ctx context.Context) error {
	fp, _ := shares.ManifestKeyFingerprint(a.mkey.Public().(ed25519.PublicKey))
	facts := Facts{"format": a.o.LegacyFormat}
	if a.hostUnwrap() {
		d := fmt.Sprintf("host unwrap: the legacy %s blob was opened on the host and the CA key re-wrapped there under the new KEK (--allow-host-unwrap)", a.o.LegacyFormat)
		a.deviations = append(a.deviations, d)
		f, err := hostAdopt(a.legacy, a.in, a.o.LegacyFormat, a.kek)
		if err != nil {
			return err
		}
		a.file = f
		facts["unwrapped"], facts["deviation"], facts["public_key_matches"] = "host", d, true
	} else {
		res, err := a.sess.Adopt(ctx, hsm.AdoptRequest{LegacyKey: a.legacy, Blob: a.in.blob, NewKEK: a.kek, CAPublic: a.in.cert.PublicKey,
			Transport: a.o.Transport, Probe: a.probe, RecordID: a.id, ManifestKey: fp})
		if err != nil {
			if errors.Is(err, hsm.ErrUnsupported) {
				err = fmt.Errorf("%w (--allow-host-unwrap opens the blob on the host instead, a recorded deviation)", err)
			}
			return err
		}
		if err := res.Proof.Verify(a.in.cert.PublicKey); err != nil {
			return err
		}
		a.file = res.File
		facts["unwrapped"], facts["adopt"], facts["proof_verified"] = "token", res, true
	}
	clear(a.legacy)
	nb, err := a.file.Marshal()
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(a.in.cert.PublicKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		rel string
		b   []byte
	}{{"ca-key.wrapped", nb}, {"ca.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})}, {"ca.crt.pem", a.in.certPEM}} {
		if err := a.out.WriteFile(f.rel, f.b); err != nil {
			return err
		}
	}
	facts["mechanism"], facts["new_kek_check"], facts["wrapped_sha256"] = a.file.Mechanism, a.file.KEKCheck.String(), shares.FileSHA256(nb)
	return a.event("adopt", Actor{Role: "hsm", Name: a.sess.Token.Label}, facts)
}

// hostAdopt opens the legacy blob on the host, checks the key inside against the certificate and wraps
// it under the new KEK; the plaintext is wiped at once.
func hostAdopt(legacy []byte, in legacyInput, format string, kek []byte) (*wrap.File, error) {
	var plain []byte
	var err error
	if format == LegacyCBCPad {
		plain, err = cbcPadDecrypt(legacy, in.blob)
	} else {
		plain, err = wrap.Unwrap(legacy, in.blob)
	}
	if err != nil {
		return nil, fmt.Errorf("the legacy blob does not open under the legacy key: %w", err)
	}
	defer clear(plain)
	der, _, err := wrap.SplitQuirk(plain)
	if err != nil {
		return nil, fmt.Errorf("the legacy blob: %w", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the legacy blob holds no PKCS#8 private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if e, eok := in.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eok || !e.Equal(s.Public()) {
		return nil, fmt.Errorf("the key in the legacy blob is not the CA key %s of the certificate", in.fp)
	}
	blob, err := wrap.Wrap(kek, der)
	if err != nil {
		return nil, err
	}
	kcv, err := wrap.KCV(kek)
	if err != nil {
		return nil, err
	}
	return &wrap.File{KEKCheck: kcv, Fingerprint: in.fp, KeyAlg: in.alg, Mechanism: "host:RFC 5649 (tink-go), ceremony adopt --allow-host-unwrap", Blob: blob}, nil
}

// cbcPadDecrypt opens a cbc-pad blob: IV (16 bytes) ‖ AES-CBC of the PKCS#7-padded plaintext.
func cbcPadDecrypt(key, blob []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(blob) < 2*aes.BlockSize || len(blob)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("a cbc-pad blob of %d bytes is not IV ‖ whole AES blocks", len(blob))
	}
	out := slices.Clone(blob[aes.BlockSize:])
	cipher.NewCBCDecrypter(b, blob[:aes.BlockSize]).CryptBlocks(out, out)
	p := int(out[len(out)-1])
	if p < 1 || p > aes.BlockSize || subtle.ConstantTimeCompare(out[len(out)-p:], bytes.Repeat([]byte{byte(p)}, p)) != 1 {
		clear(out)
		return nil, errors.New("bad PKCS#7 padding (wrong key or corrupted blob)")
	}
	clear(out[len(out)-p:])
	return out[:len(out)-p], nil
}

func (a *adoption) softwareCheck(context.Context) error {
	quirk, err := hsm.SoftwareCheck(a.kek, a.file, a.in.cert.PublicKey)
	if err != nil {
		return err
	}
	return a.event("software-check", Actor{Role: "custos"}, Facts{"public_key_matches": true, "conformance": conformance(quirk)})
}

func (a *adoption) trialImport(ctx context.Context) error {
	fp, _ := shares.ManifestKeyFingerprint(a.mkey.Public().(ed25519.PublicKey))
	return a.run.trialImport(ctx, a.sess, a.probe, a.kek, a.file, a.in.cert.PublicKey, fp, a.o.AllowHostUnwrap)
}

func (a *adoption) split(context.Context) error {
	m := a.manifestBody()
	if err := a.g.splitAndCheck(m, a.kek); err != nil {
		return err
	}
	a.m = m
	return nil
}

// manifestBody starts generation 1 of the new ceremony.
func (a *adoption) manifestBody() *shares.Manifest {
	kcv, _ := wrap.KCV(a.kek)
	return &shares.Manifest{
		Format: shares.ManifestFormat, Kind: shares.KindCeremony, CeremonyID: a.id, Generation: 1,
		Created: now(a.o.Now), Rehearsal: a.o.Rehearsal, Threshold: a.g.roster.Threshold, SecretSize: wrap.KEKSize,
		SecretCheck: kcv.String(), ManifestKey: []byte(a.mkey.Public().(ed25519.PublicKey)),
		RosterSHA: shares.FileSHA256(a.g.rosterBytes), Deviations: append(a.o.Preflight.Deviations(), a.deviations...),
	}
}

func (a *adoption) manifest(context.Context) error {
	m := a.m
	hash := func(rel string) string {
		b, _ := readLimited(a.out.TempPath(rel), maxRecordFile)
		return shares.FileSHA256(b)
	}
	m.CA = &shares.CAInfo{KeyAlg: a.in.alg, Fingerprint: a.in.fp, WrappedSHA256: hash("ca-key.wrapped"),
		PublicKeySHA256: hash("ca.pub.pem"), CertificateSHA256: hash("ca.crt.pem")}
	b, err := m.Sign(a.mkey)
	if err != nil {
		return err
	}
	if err := a.out.WriteFile("manifest.json", b); err != nil {
		return err
	}
	fp, _ := m.ManifestKeyFingerprint()
	return a.event("manifest", Actor{Role: "custos"}, Facts{"manifest_sha256": shares.FileSHA256(b), "manifest_key": fp,
		"legacy": Facts{"format": a.o.LegacyFormat, "blob_sha256": shares.FileSHA256(a.in.blob), "kcv": a.in.kcv.String(),
			"component_checks": toAny(a.checks), "mac_verified": a.in.mac != nil}})
}

// envelopes has a witness confirm the destruction of each legacy component's envelope, now that the
// signed manifest is on disk (invariant 7).
func (a *adoption) envelopes(context.Context) error {
	for i, c := range a.checks {
		stmt := fmt.Sprintf("the envelope of legacy component %d of %d (check value %s) and every copy of it destroyed", i+1, len(a.checks), c)
		w, err := a.o.Prompter.Confirm(a.flow, a.id, stmt)
		if err != nil {
			return err
		}
		if err := a.t.Append("envelopes", Actor{Role: "witness", Name: w}, Facts{"component": i + 1, "check_value": c, "destroyed": true}); err != nil {
			return err
		}
	}
	return a.done("envelopes")
}

func (a *adoption) minutes(context.Context) error {
	m := a.m
	fp, _ := m.ManifestKeyFingerprint()
	lines := []string{"ceremony id      " + m.CeremonyID, "generation       1 (adopted from legacy " + a.o.LegacyFormat + " blob " + shares.FileSHA256(a.in.blob) + ")",
		"roster sha256    " + m.RosterSHA, "manifest key     " + fp, "CA fingerprint   " + m.CA.Fingerprint, "KEK check value  " + m.SecretCheck}
	a.o.Prompter.Minutes(lines)
	return a.event("minutes", Actor{Role: "operator"}, Facts{"shown": toAny(lines)})
}
