package ceremony

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// ImportOptions are the inputs of the import ceremony.
type ImportOptions struct {
	Ceremony        []string // record directories, oldest first; the last holds the manifest imported from
	ExpectSeal      string   // the last record's seal from the minutes; required in production
	HSM             hsm.Config
	HSMPIN          func() ([]byte, error) // asks for the HSM PIN when the token is opened (not with ProtectedAuth)
	HSMPINSource    string
	Transport       string // auto, rsa-aes, oaep, create
	CAUnwrap        string // kwp, host-cbcpad
	AllowHostUnwrap bool
	Identities      []string // identity files of software custodians in the quorum
	Cards           CardOptions
	Out             string
	Rehearsal       bool
	Preflight       *PreflightReport // run first, before any pin is asked for
	HostFacts       Facts
	Now             func() time.Time
	// AfterStep, when set, is called after each step of ImportSteps (a test seam for interruptions).
	AfterStep func(step string) error
}

// ImportResult is what an import reports.
type ImportResult struct {
	Dir           string            `json:"dir"`
	RecordID      string            `json:"record_id"`
	CAFingerprint string            `json:"ca_fingerprint"`
	Token         string            `json:"token"`
	Seal          string            `json:"seal"`
	Import        *hsm.ImportResult `json:"import"`
}

// importRun is one import ceremony between steps.
type importRun struct {
	*run
	release func() // the cards held
	o       ImportOptions
	records []*VerifiedRecord
	target  string // the target token, for the result
	vr      *VerifiedRecord
	m       *shares.Manifest
	file    *wrap.File
	caPub   crypto.PublicKey
	cert    *x509.Certificate
	keys    []presentKey
	kek     []byte
	mkey    ed25519.PrivateKey
	sess    *hsm.Session
	res     *hsm.ImportResult
}

// Import runs the import ceremony: preflight; pins (the record's seal, the module, the token) before any
// module is loaded or card asked for a PIN; the record verified; the quorum's shares opened and checked
// against the signed manifest; the KEK rebuilt, checked and made to derive the manifest key; then in the
// target token the KEK transported, the CA key unwrapped, hardened, copied and proven, and the KEK
// destroyed; the record sealed, signed by the manifest key and co-signed by the cards.
func Import(ctx context.Context, o ImportOptions) (res *ImportResult, err error) {
	defer clear(o.HSM.PIN)
	pf := o.Preflight
	if pf == nil {
		return nil, errors.New("the flow needs its preflight report")
	}
	if len(o.Ceremony) == 0 {
		return nil, fmt.Errorf("%w: --ceremony DIR names the record to import from", ErrUsage)
	}
	if !o.Rehearsal && (o.ExpectSeal == "" || o.HSM.ExpectModuleSHA256 == "" || o.HSM.TokenSerial == "") {
		return nil, fmt.Errorf("%w: a production import pins the record (--expect-seal), the module (--expect-module-sha256) and the token (--token-serial)", ErrUsage)
	}
	im := &importRun{o: o}
	records, err := VerifyRecords(o.Ceremony, o.ExpectSeal)
	if err != nil {
		return nil, err
	}
	im.vr, im.records = records[len(records)-1], records
	if err := im.load(); err != nil {
		return nil, err
	}
	if err := hsm.CheckModule(o.HSM.Module, o.HSM.ExpectModuleSHA256); err != nil && !o.Rehearsal {
		return nil, err
	}
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	facts := Facts{"rehearsal": o.Rehearsal, "imports_from": im.m.CeremonyID, "generation": im.m.Generation}
	if im.run, err = startRun("import", o.Out, im.vr.Seal, facts, o.HostFacts, o.Now, o.AfterStep); err != nil {
		return nil, err
	}
	defer im.close()
	defer func() {
		if im.release != nil {
			im.release()
		}
		clear(im.kek)
		clear(im.mkey)
		if im.sess != nil {
			im.sess.Close()
		}
		if err != nil {
			err = im.abort(err, im.m.Generation)
		}
	}()
	if err := im.event("preflight", Actor{Role: "custos"}, pf.Facts()); err != nil {
		return nil, err
	}
	if err := im.steps(ctx, step{"pins", im.pins}, step{"record", im.record}, step{"token", im.token}, step{"quorum", im.quorum},
		step{"combine", im.combine}, step{"import", im.importKey}); err != nil {
		return nil, err
	}
	im.step = "seal"
	signers := sealSigners(im.mkey, im.keys)
	seal, err := im.seal(SealBody{Generation: im.m.Generation, Outcome: OutcomeSuccess}, signers...)
	if err != nil {
		return nil, err
	}
	return &ImportResult{Dir: o.Out, RecordID: im.id, CAFingerprint: im.file.Fingerprint, Token: im.target, Seal: seal, Import: im.res}, nil
}

// load reads what the verified record pins: the manifest, the wrapped key, the CA public key and
// certificate, each already covered by the record's seal.
func (im *importRun) load() error {
	vr := im.vr
	if vr.Manifest == nil || vr.Manifest.CA == nil || vr.Outcome != OutcomeSuccess {
		return fmt.Errorf("%s holds no CA key backup to import (it is a %s record, %s)", vr.Dir, vr.Flow, vr.Outcome)
	}
	im.m = vr.Manifest
	switch {
	case im.o.Rehearsal && !im.m.Rehearsal:
		return fmt.Errorf("%s is a production record; rehearsals never use production artifacts", vr.Dir)
	case !im.o.Rehearsal && im.m.Rehearsal:
		return fmt.Errorf("%s is a rehearsal record; production never uses rehearsal artifacts", vr.Dir)
	}
	bk, err := loadBackup(vr.Dir, im.m.CA)
	if err != nil {
		return err
	}
	im.file, im.caPub, im.cert = bk.file, bk.pub, bk.cert
	return nil
}

func (im *importRun) pins(context.Context) error {
	return im.event("pins", Actor{Role: "operator"}, Facts{
		"seal": im.vr.Seal, "seal_pinned": im.o.ExpectSeal != "",
		"module": im.o.HSM.Module, "module_pinned": im.o.HSM.ExpectModuleSHA256 != "",
		"token_serial": im.o.HSM.TokenSerial, "token_label": im.o.HSM.TokenLabel,
	})
}

// record copies the pinned public files into the import's record, so that it stands on its own.
func (im *importRun) record(context.Context) error {
	files := []string{"manifest.json", "ca.pub.pem"}
	if im.cert != nil {
		files = append(files, "ca.crt.pem")
	}
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(im.vr.Dir, rel))
		if err != nil {
			return err
		}
		if err := im.out.WriteFile(rel, b); err != nil {
			return err
		}
	}
	fp, _ := im.m.ManifestKeyFingerprint()
	return im.event("record", Actor{Role: "custos"}, Facts{"record": im.vr.RecordID, "seal": im.vr.Seal, "manifest_key": fp,
		"ca_fingerprint": im.file.Fingerprint, "generation": im.m.Generation, "kek_check": im.file.KEKCheck.String()})
}

// quorum opens the keys present and each one's share, checked against the signed manifest.
func (im *importRun) quorum(context.Context) error {
	keys, err := identityKeys(im.o.Identities)
	if err != nil {
		return err
	}
	if err := staleKey(keys, im.records, im.m); err != nil {
		return err
	}
	if err := unassigned(keys, "ceremony "+im.m.CeremonyID, manifestRecipients(im.m)); err != nil {
		return err
	}
	keys = assign(keys, manifestRecipients(im.m))
	cards, release, err := quorumKeys(im.o.Cards, &loadedManifest{Manifest: im.m, dir: im.vr.Dir}, keys, "import", im.id)
	if err != nil {
		return err
	}
	im.release = release
	im.keys = append(keys, cards...)
	for _, k := range im.keys {
		if err := im.t.Append("quorum", Actor{Role: "custodian", Name: k.name}, Facts{"key": k.source}); err != nil {
			return err
		}
	}
	return im.done("quorum")
}

func (im *importRun) combine(context.Context) error {
	var err error
	if im.kek, im.mkey, err = rebuildKEK(im.m, im.vr.Dir, im.keys); err != nil {
		return err
	}
	if !im.file.KEKCheck.Matches(im.kek) {
		return fmt.Errorf("the rebuilt KEK does not match the wrapped key's check value %s", im.file.KEKCheck)
	}
	return im.event("combine", Actor{Role: "custos"}, Facts{"shares": len(im.keys), "threshold": im.m.Threshold,
		"kek_check": im.m.SecretCheck, "manifest_key_derived": true})
}

// rebuildKEK opens the share of each present key from the record in dir, checks each against the signed
// manifest (invariant 3), combines them, and checks the result against the manifest's check value and
// manifest key. The caller wipes both returned keys.
func rebuildKEK(m *shares.Manifest, dir string, keys []presentKey) ([]byte, ed25519.PrivateKey, error) {
	if len(keys) < m.Threshold {
		return nil, nil, fmt.Errorf("%w: have %d of the %d needed; bring the cards or identities of %d more custodian(s)", shares.ErrTooFewShares, len(keys), m.Threshold, m.Threshold-len(keys))
	}
	lm := &loadedManifest{Manifest: m, dir: dir}
	var split []shares.Share
	var envs []*shares.Envelope
	defer func() {
		for _, e := range envs {
			e.Wipe()
		}
	}()
	for _, k := range keys {
		e, ok := m.Custodian(k.name)
		if !ok {
			return nil, nil, fmt.Errorf("custodian %q is not in the manifest of generation %d", k.name, m.Generation)
		}
		env, err := openShare(lm, e, k.identity)
		if err != nil {
			return nil, nil, err
		}
		envs = append(envs, env)
		split = append(split, env.ShareValue())
	}
	kek, err := shares.Combine(split, m.Threshold)
	if err != nil {
		return nil, nil, err
	}
	if err := checkSecret(m, kek); err != nil {
		clear(kek)
		return nil, nil, err
	}
	mkey, err := shares.DeriveManifestKey(kek, m.CeremonyID)
	if err != nil {
		clear(kek)
		return nil, nil, err
	}
	return kek, mkey, nil
}

// token opens the target token (its serial is a pin) and logs in before any card is asked for a PIN.
func (im *importRun) token(ctx context.Context) error {
	var err error
	if im.sess, err = openToken(ctx, im.o.HSM, im.o.HSMPIN, im.o.Rehearsal); err != nil {
		return err
	}
	return im.event("token", Actor{Role: "hsm", Name: im.sess.Token.Label}, Facts{"token": im.sess.Token, "pin_source": im.o.HSMPINSource})
}

func (im *importRun) importKey(ctx context.Context) error {
	fp, _ := im.m.ManifestKeyFingerprint()
	var afterErr error
	var err error
	im.res, err = im.sess.Import(ctx, hsm.ImportRequest{
		KEK: im.kek, File: im.file, CAPublic: im.caPub, Certificate: im.cert, Label: "custos CA " + im.m.CeremonyID,
		Transport: im.o.Transport, CAUnwrap: im.o.CAUnwrap, AllowHostUnwrap: im.o.AllowHostUnwrap,
		RecordID: im.id, ManifestKey: fp,
		AfterStep: func(step string) {
			im.step = "import/" + step
			if afterErr == nil {
				afterErr = im.done(im.step)
			}
		},
	})
	if err == nil {
		err = afterErr
	}
	if err != nil {
		return err
	}
	if err := im.res.Proof.Verify(im.caPub); err != nil {
		return err
	}
	// The token is done with: log out and close the session before the record is sealed.
	im.target = im.sess.Token.String()
	label := im.sess.Token.Label
	if err := im.sess.Close(); err != nil {
		return err
	}
	im.sess = nil
	return im.t.Append("import", Actor{Role: "hsm", Name: label}, Facts{"import": im.res, "proof_verified": true, "deviations": toAny(im.res.Deviations)})
}

func toAny(xs []string) []any {
	out := []any{}
	for _, x := range xs {
		out = append(out, x)
	}
	return out
}
