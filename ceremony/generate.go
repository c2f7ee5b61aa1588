package ceremony

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// Prompter asks the people in the room. The terminal implements it in production; a rehearsal answers
// with the names given on the command line, and the record says so.
type Prompter interface {
	// Witness has a witness confirm a custodian's identity and, for a card, the serial printed on it.
	// It returns the witness's name.
	Witness(flow, recordID, custodian string, serial uint32) (string, error)
	// Confirm has a witness confirm that something was done in the room (an envelope or a copy of an
	// old blob destroyed). It returns the witness's name.
	Confirm(flow, recordID, statement string) (string, error)
	// Minutes shows what the witnesses write into the minutes.
	Minutes(lines []string)
}

// GenerateOptions are the inputs of the generation ceremony.
type GenerateOptions struct {
	Roster             string
	ExpectRosterSHA256 string
	HSM                hsm.Config             // module, pins, token and login; HSM.Rehearsal follows Rehearsal
	HSMPIN             func() ([]byte, error) // asks for the HSM PIN when the token is opened (not with ProtectedAuth)
	HSMPINSource       string                 // where the HSM PIN comes from, for the record
	CAKey              string                 // rsa4096, rsa3072, p384, p256
	Subject            string                 // RFC 4514 DN of the root certificate; empty for none
	Validity           time.Duration
	KeepCAKey          bool     // lock the CA key (not extractable) instead of destroying it
	Identities         []string // identity files of software custodians (for the check round)
	Cards              CardOptions
	Out                string
	Rehearsal          bool
	Preflight          *PreflightReport // run first, before any pin is asked for
	HostFacts          Facts            // version and hashes of the binary
	Prompter           Prompter
	Now                func() time.Time
	// AfterStep, when set, is called after each step of GenerateSteps (a test seam for aborts).
	AfterStep func(step string) error
}

// GenerateResult is what generation reports.
type GenerateResult struct {
	Dir           string `json:"dir"`
	CeremonyID    string `json:"ceremony_id"`
	RosterSHA256  string `json:"roster_sha256"`
	ManifestKey   string `json:"manifest_key"`
	CAFingerprint string `json:"ca_fingerprint"`
	KEKCheck      string `json:"kek_check"`
	Seal          string `json:"seal"`
	Quirk         string `json:"quirk,omitempty"`
	CAKeyKept     bool   `json:"ca_key_kept"`
}

// generation is the state of one generation ceremony between steps.
type generation struct {
	*run
	records     map[string]*card.Record // the roster's verified card custodians
	cardWant    []card.Expected
	release     func() // the cards held together
	o           GenerateOptions
	pf          *PreflightReport
	roster      *shares.Roster
	rosterBytes []byte
	keys        []presentKey

	sess      *hsm.Session
	probe     *hsm.ProbeResult
	ca        *hsm.CAKey
	kekObj    *hsm.KEK
	kek       []byte
	mkey      ed25519.PrivateKey
	file      *wrap.File
	m         *shares.Manifest
	cert      *x509.Certificate
	destroyed bool
}

// Generate runs the generation ceremony (DESIGN.md invariants 4, 6 and 7): preflight; pins; witnesses
// and liveness; the token recorded and probed; KEK = HSM random XOR OS random; the CA key pair; the blob
// written; the software check; a trial import with proof of possession; shares and check tokens; the
// check round; the root certificate; the signed manifest; the minutes; only then the KEK destroyed and
// the CA key destroyed or locked; the record sealed. A failure before destruction aborts: the source
// token keeps nothing of the ceremony, and the record says where and why.
func Generate(ctx context.Context, o GenerateOptions) (res *GenerateResult, err error) {
	defer clear(o.HSM.PIN)
	pf := o.Preflight
	if pf == nil {
		return nil, errors.New("the flow needs its preflight report")
	}
	if !o.Rehearsal && (o.ExpectRosterSHA256 == "" || o.HSM.ExpectModuleSHA256 == "" || o.HSM.TokenSerial == "") {
		return nil, fmt.Errorf("%w: production generation pins the roster (--expect-roster-sha256), the module (--expect-module-sha256) and the token (--token-serial)", ErrUsage)
	}
	g := &generation{o: o, pf: pf}
	if g.rosterBytes, g.roster, err = loadRoster(o.Roster, o.ExpectRosterSHA256, o.Rehearsal); err != nil {
		return nil, err
	}
	if err := hsm.CheckModule(o.HSM.Module, o.HSM.ExpectModuleSHA256); err != nil && !o.Rehearsal {
		return nil, err
	}
	if !validKeyAlg(o.CAKey) {
		return nil, fmt.Errorf("%w: --ca-key %q: choose rsa4096, rsa3072, p384 or p256", ErrUsage, o.CAKey)
	}
	if o.Prompter == nil {
		return nil, errors.New("generate: no prompter for the witnesses")
	}
	if err := g.presentKeys(); err != nil {
		return nil, err
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	if g.run, err = startRun("generate", o.Out, "", Facts{"rehearsal": o.Rehearsal, "ca_key": o.CAKey}, o.HostFacts, o.Now, o.AfterStep); err != nil {
		return nil, err
	}
	defer g.close()
	defer func() {
		if err != nil && !g.destroyed {
			err = g.abort(err)
		}
		g.wipe()
	}()
	if err := g.event("preflight", Actor{Role: "custos"}, pf.Facts()); err != nil {
		return nil, err
	}
	if err := g.steps(ctx, step{"pins", g.pins}, step{"witness", g.witness}, step{"liveness", g.liveness}, step{"token", g.token},
		step{"kek", g.makeKEK}, step{"ca-key", g.caKey}, step{"wrap", g.wrap}, step{"software-check", g.softwareCheck},
		step{"trial-import", g.trialImport}, step{"split", g.split}, step{"check-round", g.checkRound},
		step{"certificate", g.certificate}, step{"manifest", g.manifest}, step{"minutes", g.minutes}, step{"destroy", g.destroy}); err != nil {
		return nil, err
	}
	g.step = "seal"
	signers := sealSigners(g.mkey, g.keys)
	seal, err := g.seal(SealBody{Generation: 1, Outcome: OutcomeSuccess}, signers...)
	if err != nil {
		return nil, err
	}
	fp, _ := g.m.ManifestKeyFingerprint()
	return &GenerateResult{Dir: o.Out, CeremonyID: g.id, RosterSHA256: g.m.RosterSHA, ManifestKey: fp,
		CAFingerprint: g.file.Fingerprint, KEKCheck: g.m.SecretCheck, Seal: seal, CAKeyKept: o.KeepCAKey}, nil
}

// presentKeys verifies the roster's card custodians and reads the software custodians' identities. The
// check round needs every custodian: the cards are brought at the liveness step.
func (g *generation) presentKeys() error {
	var err error
	if g.records, err = verifyRosterCards(g.roster, g.o.Rehearsal); err != nil {
		return err
	}
	g.cardWant = rosterCards(g.roster, g.records)
	if len(g.cardWant) > 0 && g.o.Cards.Selector == nil {
		return fmt.Errorf("%w: the roster has card custodians; bring their cards", ErrUsage)
	}
	g.keys, err = softwareKeys(g.o.Identities, rosterRecipients(g.roster), "the roster")
	return err
}

func (g *generation) pins(context.Context) error {
	return g.event("pins", Actor{Role: "operator"}, Facts{
		"roster_sha256": shares.FileSHA256(g.rosterBytes), "roster_pinned": g.o.ExpectRosterSHA256 != "",
		"module": g.o.HSM.Module, "module_pinned": g.o.HSM.ExpectModuleSHA256 != "",
		"token_serial": g.o.HSM.TokenSerial, "token_label": g.o.HSM.TokenLabel,
	})
}

func (g *generation) witness(context.Context) error {
	return g.witnessRoster(g.o.Prompter, g.roster, g.records)
}

// liveness brings the card custodians' cards together, each proving its liveness before any PIN, and
// checks that every custodian is present. With --one-reader each card proves it at its turn in the check
// round instead.
func (g *generation) liveness(context.Context) error {
	var cards []any
	if len(g.cardWant) > 0 && !g.o.Cards.Selector.OneReader {
		held, release, err := holdCards(g.o.Cards, g.cardWant, "generate", g.id, "decrypt its new share and check token (check round), and co-sign the record")
		if err != nil {
			return err
		}
		g.release = release
		for _, k := range held {
			cards = append(cards, Facts{"custodian": k.name, "key": k.source, "liveness": "signed " + card.LiveFormat + " challenge verified"})
		}
		g.keys = append(g.keys, held...)
	}
	mode := "together"
	if len(g.cardWant) > 0 && g.o.Cards.Selector.OneReader {
		mode = "one reader: each card proves liveness at its turn in the check round"
	} else if _, err := allPresent(g.keys, g.roster); err != nil {
		return err
	}
	return g.event("liveness", Actor{Role: "custos"}, Facts{"cards": cards, "mode": mode, "software_custodians": len(g.keys) - len(cards)})
}

func (g *generation) token(ctx context.Context) error {
	var err error
	if g.sess, err = openToken(ctx, g.o.HSM, g.o.HSMPIN, g.o.Rehearsal); err != nil {
		return err
	}
	if g.probe, err = g.sess.Probe(ctx, true); err != nil {
		return err
	}
	if !slices.Contains(g.probe.GenerationAlgs, g.o.CAKey) {
		return fmt.Errorf("token %s cannot serve for generating a %s CA key (it can for: %s)", g.sess.Token, g.o.CAKey, listOrNone(g.probe.GenerationAlgs))
	}
	return g.event("token", Actor{Role: "hsm", Name: g.sess.Token.Label}, Facts{"token": g.sess.Token, "probe": g.probe, "pin_source": g.o.HSMPINSource})
}

func (g *generation) makeKEK(context.Context) error {
	var err error
	g.kek, err = g.run.freshKEK(g.sess)
	return err
}

func (g *generation) caKey(ctx context.Context) error {
	var err error
	if g.ca, err = g.sess.GenerateCA(ctx, g.o.CAKey, "custos CA "+g.id); err != nil {
		return err
	}
	fp, err := wrap.Fingerprint(g.ca.Public)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(g.ca.Public)
	if err != nil {
		return err
	}
	if err := g.out.WriteFile("ca.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})); err != nil {
		return err
	}
	return g.event("ca-key", Actor{Role: "hsm", Name: g.sess.Token.Label}, Facts{"alg": g.o.CAKey, "fingerprint": fp, "label": g.ca.Label, "id": g.ca.ID})
}

func (g *generation) wrap(ctx context.Context) error {
	kcv, err := wrap.KCV(g.kek)
	if err != nil {
		return err
	}
	if g.kekObj, err = g.sess.PutKEK(ctx, g.kek, hsm.TransportAuto, g.probe, true); err != nil {
		return err
	}
	if g.file, err = g.sess.WrapCA(ctx, g.kekObj, g.ca, kcv, g.probe); err != nil {
		return err
	}
	b, err := g.file.Marshal()
	if err != nil {
		return err
	}
	if err := g.out.WriteFile("ca-key.wrapped", b); err != nil {
		return err
	}
	return g.event("wrap", Actor{Role: "hsm", Name: g.sess.Token.Label}, Facts{"mechanism": g.file.Mechanism, "kek_transport": g.kekObj.Transport,
		"kek_read_back": g.kekObj.ReadBack, "wrapped_sha256": shares.FileSHA256(b)})
}

func (g *generation) softwareCheck(context.Context) error {
	quirk, err := hsm.SoftwareCheck(g.kek, g.file, g.ca.Public)
	if err != nil {
		return err
	}
	conformance := "exact RFC 5649"
	if quirk != wrap.QuirkNone {
		conformance = string(quirk)
	}
	return g.event("software-check", Actor{Role: "custos"}, Facts{"public_key_matches": true, "conformance": conformance})
}

func (g *generation) trialImport(ctx context.Context) error {
	var err error
	if g.mkey, err = shares.DeriveManifestKey(g.kek, g.id); err != nil {
		return err
	}
	fp, err := shares.ManifestKeyFingerprint(g.mkey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	return g.run.trialImport(ctx, g.sess, g.probe, g.kek, g.file, g.ca.Public, fp, false)
}

func (g *generation) split(context.Context) error {
	recipients := make([]age.Recipient, len(g.roster.Custodians))
	for i, m := range g.roster.Custodians {
		var err error
		if recipients[i], err = recipientFor(m); err != nil {
			return err
		}
	}
	g.m = &shares.Manifest{
		Format: shares.ManifestFormat, Kind: shares.KindCeremony, CeremonyID: g.id, Generation: 1,
		Created: now(g.o.Now), Rehearsal: g.o.Rehearsal, Threshold: g.roster.Threshold, SecretSize: wrap.KEKSize,
		RosterSHA: shares.FileSHA256(g.rosterBytes), Deviations: []string{},
	}
	if err := writeShares(g.out, g.m, g.roster, recipients, g.kek); err != nil {
		return err
	}
	pinCards(g.m, g.records)
	if err := g.out.WriteFile("roster.json", g.rosterBytes); err != nil {
		return err
	}
	kcv, _ := wrap.KCV(g.kek)
	g.m.SecretCheck = kcv.String()
	g.m.ManifestKey = []byte(g.mkey.Public().(ed25519.PublicKey))
	var entries []any
	for _, e := range g.m.Custodians {
		entries = append(entries, Facts{"name": e.Name, "x": e.Share.X, "commitment": e.Share.Commitment, "share_file_sha256": e.Share.FileSHA256, "check_file_sha256": e.Check.FileSHA256})
	}
	return g.event("split", Actor{Role: "custos"}, Facts{"threshold": g.m.Threshold, "custodians": entries})
}

// checkRound has every custodian open its share and check token from disk: the keys present, and with
// --one-reader the cards one after another.
func (g *generation) checkRound(context.Context) error {
	if len(g.cardWant) == 0 || !g.o.Cards.Selector.OneReader {
		return g.run.checkRound(g.m, g.keys)
	}
	checked := 0
	err := withCards(g.o.Cards, g.cardWant, 0, "generate", g.id, "decrypt its new share and check token (check round)", func(k presentKey) (bool, error) {
		checked++
		return true, g.run.checkRound(g.m, []presentKey{k})
	})
	if err != nil {
		return err
	}
	if checked < len(g.cardWant) {
		return fmt.Errorf("check round: %d of the %d cards came; every card opens its share before the manifest is signed", checked, len(g.cardWant))
	}
	return g.run.checkRound(g.m, g.keys)
}

func (g *generation) certificate(context.Context) error {
	if g.o.Subject == "" {
		return g.event("certificate", Actor{Role: "custos"}, Facts{"certificate": "none asked for"})
	}
	dn, err := hsm.ParseDN(g.o.Subject)
	if err != nil {
		return fmt.Errorf("%w: --subject: %v", ErrUsage, err)
	}
	if g.o.Rehearsal && !strings.Contains(g.o.Subject, "REHEARSAL") {
		dn = append(dn, []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "REHEARSAL"}})
	}
	t := time.Now()
	if g.o.Now != nil {
		t = g.o.Now()
	}
	if g.cert, err = hsm.RootCertificate(g.ca.Signer(), dn, g.o.Validity, t); err != nil {
		return err
	}
	if err := hsm.CheckRoot(g.cert, t); err != nil {
		return err
	}
	if err := g.out.WriteFile("ca.crt.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.cert.Raw})); err != nil {
		return err
	}
	return g.event("certificate", Actor{Role: "hsm", Name: g.sess.Token.Label}, Facts{"subject": g.cert.Subject.String(),
		"serial": g.cert.SerialNumber.Text(16), "not_before": g.cert.NotBefore.UTC().Format(time.RFC3339),
		"not_after": g.cert.NotAfter.UTC().Format(time.RFC3339), "sha256": shares.FileSHA256(g.cert.Raw), "br_7_1_2_1": "passed"})
}

func (g *generation) manifest(context.Context) error {
	hash := func(rel string) (string, error) {
		b, err := os.ReadFile(g.out.TempPath(rel))
		if err != nil {
			return "", err
		}
		return shares.FileSHA256(b), nil
	}
	wrapped, err := hash("ca-key.wrapped")
	if err != nil {
		return err
	}
	pub, err := hash("ca.pub.pem")
	if err != nil {
		return err
	}
	crt := ""
	if g.cert != nil {
		if crt, err = hash("ca.crt.pem"); err != nil {
			return err
		}
	}
	g.m.CA = &shares.CAInfo{KeyAlg: g.o.CAKey, Fingerprint: g.file.Fingerprint, WrappedSHA256: wrapped, PublicKeySHA256: pub, CertificateSHA256: crt}
	g.m.Deviations = append(g.m.Deviations, g.pf.Deviations()...)
	b, err := g.m.Sign(g.mkey)
	if err != nil {
		return err
	}
	if err := g.out.WriteFile("manifest.json", b); err != nil {
		return err
	}
	fp, _ := g.m.ManifestKeyFingerprint()
	return g.event("manifest", Actor{Role: "custos"}, Facts{"manifest_sha256": shares.FileSHA256(b), "manifest_key": fp})
}

func (g *generation) minutes(context.Context) error {
	fp, _ := g.m.ManifestKeyFingerprint()
	lines := []string{
		"ceremony id     " + g.id,
		"roster sha256   " + g.m.RosterSHA,
		"manifest key    " + fp,
		"CA fingerprint  " + g.file.Fingerprint,
		"KEK check value " + g.m.SecretCheck,
	}
	g.o.Prompter.Minutes(lines)
	return g.event("minutes", Actor{Role: "operator"}, Facts{"shown": lines})
}

// destroy is the first step that destroys anything in the source token (invariant 7).
func (g *generation) destroy(context.Context) error {
	if err := g.kekObj.Destroy(); err != nil {
		return err
	}
	facts := Facts{"kek": "destroyed"}
	if g.o.KeepCAKey {
		attrs, err := g.ca.Lock()
		if err != nil {
			return err
		}
		facts["ca_key"] = "locked (not extractable)"
		facts["ca_key_read_back"] = attrs
	} else {
		if err := g.ca.Destroy(); err != nil {
			return err
		}
		facts["ca_key"] = "destroyed"
	}
	g.destroyed = true
	// The token is done with: log out and close the session before the record is sealed.
	label := g.sess.Token.Label
	if err := g.sess.Close(); err != nil {
		return err
	}
	g.sess = nil
	return g.event("destroy", Actor{Role: "hsm", Name: label}, facts)
}

// abort removes everything the ceremony created in the source token (invariant 7) and on disk except
// the record of what happened, which is sealed as aborted and kept at --out.
func (g *generation) abort(cause error) error {
	var errs []error
	if g.kekObj != nil {
		errs = append(errs, g.kekObj.Destroy())
	}
	if g.ca != nil {
		errs = append(errs, g.ca.Destroy())
	}
	err := g.run.abort(cause, 1, "shares", "checks", "ca-key.wrapped", "manifest.json", "ca.crt.pem")
	if cerr := errors.Join(errs...); cerr != nil {
		return fmt.Errorf("%w (and destroying the ceremony's objects in the source token failed: %v)", err, cerr)
	}
	return err
}

func (g *generation) wipe() {
	if g.release != nil {
		g.release()
	}
	clear(g.kek)
	clear(g.mkey)
	if g.sess != nil {
		g.sess.Close()
	}
}

func validKeyAlg(alg string) bool {
	for _, a := range wrap.KeyAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// openToken opens the flow's token, asking for the HSM PIN only now, after every pin has been checked.
func openToken(ctx context.Context, cfg hsm.Config, pin func() ([]byte, error), rehearsal bool) (*hsm.Session, error) {
	cfg.Rehearsal = rehearsal
	if !cfg.ProtectedAuth && cfg.PIN == nil {
		if pin == nil {
			return nil, errors.New("no HSM PIN source")
		}
		var err error
		if cfg.PIN, err = pin(); err != nil {
			return nil, err
		}
	}
	return hsm.Open(ctx, cfg)
}
