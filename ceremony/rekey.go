package ceremony

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
	"github.com/custos-pki/custos/wrap"
)

// HandoverFormat is the version string of a handover statement, and the domain of its signature.
const HandoverFormat = "custos-handover-v1"

// HandoverFile is the name of the handover statement in a rekey's record.
const HandoverFile = "handover.json"

// Handover is the old manifest key's statement that a rekey handed the CA key backup over to a new KEK
// and manifest key. A pin never moves without new minutes: the statement links, it does not replace
// them.
type Handover struct {
	Format            string `json:"format"`
	CeremonyID        string `json:"ceremony_id"`
	FromGeneration    int    `json:"from_generation"`
	ToGeneration      int    `json:"to_generation"`
	OldManifestKey    string `json:"old_manifest_key"`
	NewManifestKey    string `json:"new_manifest_key"`
	NewManifestSHA256 string `json:"new_manifest_sha256"`
	Signature         []byte `json:"signature"`
}

// HandoverSigningInput is "custos-handover-v1\n" ‖ the canonical JSON of the statement without its
// signature.
func HandoverSigningInput(h *Handover) ([]byte, error) {
	c := *h
	c.Signature = nil
	b, err := jcs.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(HandoverFormat+"\n"), b...), nil
}

// RekeyOptions are the inputs of a rekey.
type RekeyOptions struct {
	NextGeneration
	HSM          hsm.Config
	HSMPIN       func() ([]byte, error)
	HSMPINSource string
	Transport    string
}

// RekeyResult is what a rekey reports.
type RekeyResult struct {
	Dir            string `json:"dir"`
	CeremonyID     string `json:"ceremony_id"`
	Generation     int    `json:"generation"`
	Supersedes     int    `json:"supersedes"`
	RosterSHA256   string `json:"roster_sha256"`
	OldManifestKey string `json:"old_manifest_key"`
	ManifestKey    string `json:"manifest_key"`
	KEKCheck       string `json:"kek_check"`
	Seal           string `json:"seal"`
}

// RekeySteps are the steps of a rekey.
var RekeySteps = concat(
	[]string{"preflight", "pins", "record", "witness", "token", "quorum", "combine", "kek", "rewrap", "software-check"},
	prefixed("trial-import", hsm.ImportSteps),
	[]string{"split", "check-round", "manifest", "handover", "supersede", "minutes", "seal"},
)

// Rekey puts the CA key under a new KEK and gives it to fresh card keys, revoking the old shares: the old
// KEK opens nothing current afterwards. Pins first (seal, new roster, module, token); the new roster must
// use no key of any earlier generation; each new custodian witnessed; a quorum rebuilds the old KEK; a
// new KEK from the HSM's RNG XOR the OS RNG; the CA key re-wrapped inside the HSM; the new blob checked in
// software and by a trial import with proof of possession; new shares and their check round; a new
// manifest signed by the new manifest key and a handover signed by the old one; the old blob and shares
// recorded as superseded, and the destruction of each recorded copy of the old blob witnessed.
func Rekey(ctx context.Context, o RekeyOptions) (res *RekeyResult, err error) {
	defer clear(o.HSM.PIN)
	check := func(g *regen) error {
		if !o.Rehearsal && (o.HSM.ExpectModuleSHA256 == "" || o.HSM.TokenSerial == "") {
			return fmt.Errorf("%w: a production rekey pins the module (--expect-module-sha256) and the token (--token-serial)", ErrUsage)
		}
		if err := hsm.CheckModule(o.HSM.Module, o.HSM.ExpectModuleSHA256); err != nil && !o.Rehearsal {
			return err
		}
		return g.freshKeys()
	}
	g, err := startRegen("rekey", o.NextGeneration, check, Facts{"revokes": true})
	if err != nil {
		return nil, err
	}
	defer g.close()
	var oldKEK, oldMKey, newKEK []byte
	var newMKey ed25519.PrivateKey
	var sess *hsm.Session
	defer func() {
		clear(oldKEK)
		clear(oldMKey)
		clear(newKEK)
		clear(newMKey)
		if sess != nil {
			sess.Close()
		}
		if err != nil {
			err = g.abort(err, g.old.Generation+1, "shares", "checks", "manifest.json", "ca-key.wrapped", HandoverFile)
		}
	}()
	if err := g.begin(Facts{"module": o.HSM.Module, "module_pinned": o.HSM.ExpectModuleSHA256 != "", "token_serial": o.HSM.TokenSerial},
		"ca.pub.pem", "ca.crt.pem"); err != nil {
		return nil, err
	}
	g.step = "token"
	if sess, err = openToken(ctx, o.HSM, o.HSMPIN, o.Rehearsal); err != nil {
		return nil, err
	}
	probe, err := sess.Probe(ctx, true)
	if err != nil {
		return nil, err
	}
	if err := g.event("token", Actor{Role: "hsm", Name: sess.Token.Label}, Facts{"token": sess.Token, "probe": probe, "pin_source": o.HSMPINSource}); err != nil {
		return nil, err
	}
	if oldKEK, oldMKey, err = g.rebuild(ctx); err != nil {
		return nil, err
	}
	oldFile, caPub, err := g.loadWrapped()
	if err != nil {
		return nil, err
	}
	if !oldFile.KEKCheck.Matches(oldKEK) {
		return nil, fmt.Errorf("the rebuilt KEK does not match the wrapped key's check value %s", oldFile.KEKCheck)
	}
	g.step = "kek"
	if newKEK, err = g.freshKEK(sess); err != nil {
		return nil, err
	}
	g.step = "rewrap"
	newFile, quirk, err := sess.Rewrap(ctx, hsm.RewrapRequest{OldKEK: oldKEK, NewKEK: newKEK, File: oldFile, CAPublic: caPub, Transport: o.Transport, Probe: probe})
	if err != nil {
		return nil, err
	}
	nb, err := newFile.Marshal()
	if err != nil {
		return nil, err
	}
	if err := g.out.WriteFile("ca-key.wrapped", nb); err != nil {
		return nil, err
	}
	if err := g.event("rewrap", Actor{Role: "hsm", Name: sess.Token.Label}, Facts{"mechanism": newFile.Mechanism, "old_kek_check": oldFile.KEKCheck.String(),
		"new_kek_check": newFile.KEKCheck.String(), "wrapped_sha256": shares.FileSHA256(nb)}); err != nil {
		return nil, err
	}
	g.step = "software-check"
	if _, err := hsm.SoftwareCheck(newKEK, newFile, caPub); err != nil {
		return nil, err
	}
	if _, err := wrap.Unwrap(oldKEK, newFile.Blob); err == nil {
		return nil, errors.New("the old KEK unwraps the new blob")
	}
	if err := g.event("software-check", Actor{Role: "custos"}, Facts{"public_key_matches": true, "conformance": conformance(quirk), "old_kek_opens_new_blob": false}); err != nil {
		return nil, err
	}
	g.step = "trial-import"
	m := g.nextManifest()
	if newMKey, err = shares.DeriveManifestKey(newKEK, m.CeremonyID); err != nil {
		return nil, err
	}
	kcv, _ := wrap.KCV(newKEK)
	m.SecretCheck, m.ManifestKey = kcv.String(), []byte(newMKey.Public().(ed25519.PublicKey))
	newFP, _ := m.ManifestKeyFingerprint()
	if err := g.trialImport(ctx, sess, probe, newKEK, newFile, caPub, newFP, false); err != nil {
		return nil, err
	}
	if err := g.splitAndCheck(m, newKEK); err != nil {
		return nil, err
	}
	ca := *g.old.CA
	ca.WrappedSHA256 = shares.FileSHA256(nb)
	m.CA = &ca
	mb, err := g.writeManifest(m, newMKey, Facts{"revokes": true})
	if err != nil {
		return nil, err
	}
	g.step = "handover"
	oldFP, _ := g.old.ManifestKeyFingerprint()
	h := &Handover{Format: HandoverFormat, CeremonyID: m.CeremonyID, FromGeneration: g.old.Generation, ToGeneration: m.Generation,
		OldManifestKey: oldFP, NewManifestKey: newFP, NewManifestSHA256: shares.FileSHA256(mb)}
	in, err := HandoverSigningInput(h)
	if err != nil {
		return nil, err
	}
	h.Signature = ed25519.Sign(ed25519.PrivateKey(oldMKey), in)
	hb, err := jcs.Marshal(h)
	if err != nil {
		return nil, err
	}
	if err := g.out.WriteFile(HandoverFile, append(hb, '\n')); err != nil {
		return nil, err
	}
	if err := g.event("handover", Actor{Role: "custos"}, Facts{"old_manifest_key": oldFP, "new_manifest_key": newFP, "signed_by": "old manifest key"}); err != nil {
		return nil, err
	}
	if err := g.supersede(oldFile); err != nil {
		return nil, err
	}
	g.step = "minutes"
	lines := []string{"ceremony id      " + m.CeremonyID, fmt.Sprintf("generation       %d (revokes %d)", m.Generation, g.old.Generation),
		"roster sha256    " + m.RosterSHA, "new manifest key " + newFP, "old manifest key " + oldFP, "CA fingerprint   " + m.CA.Fingerprint, "KEK check value  " + m.SecretCheck}
	g.o.Prompter.Minutes(lines)
	if err := g.event("minutes", Actor{Role: "operator"}, Facts{"shown": toAny(lines)}); err != nil {
		return nil, err
	}
	g.step = "seal"
	seal, err := g.seal(SealBody{Generation: m.Generation, Outcome: OutcomeSuccess}, sealSigners(newMKey, g.quorum, g.newKeys)...)
	if err != nil {
		return nil, err
	}
	return &RekeyResult{Dir: o.Out, CeremonyID: m.CeremonyID, Generation: m.Generation, Supersedes: g.old.Generation,
		RosterSHA256: m.RosterSHA, OldManifestKey: oldFP, ManifestKey: newFP, KEKCheck: m.SecretCheck, Seal: seal}, nil
}

// freshKeys refuses a new roster that reuses a key, or a card slot, of any generation of the records
// given: a rekey revokes only if the old keys can no longer open anything.
func (g *regen) freshKeys() error {
	for _, vr := range g.records {
		if vr.Manifest == nil {
			continue
		}
		for _, e := range vr.Manifest.Custodians {
			for _, mem := range g.roster.Custodians {
				if mem.Recipient == e.Recipient {
					return fmt.Errorf("new custodian %q uses the key %s of generation %d; a rekey needs fresh keys (card enroll --decryption-key-only)", mem.Name, e.Recipient, vr.Manifest.Generation)
				}
				rec, ok := g.cardRecords[mem.Name]
				if ci := e.Card; ok && ci != nil && ci.Serial == rec.Serial && ci.Slot == rec.Decryption.Slot.String() {
					return fmt.Errorf("new custodian %q uses slot %s of YubiKey %d, which generation %d used; a rekey needs a fresh slot (card enroll --decryption-key-only)", mem.Name, ci.Slot, ci.Serial, vr.Manifest.Generation)
				}
			}
		}
	}
	return nil
}

// loadWrapped reads the current generation's wrapped key and CA public key, pinned by its manifest.
func (g *regen) loadWrapped() (*wrap.File, crypto.PublicKey, error) {
	if g.old.CA == nil {
		return nil, nil, fmt.Errorf("%s protects no CA key; a rekey re-wraps one", g.vr.Dir)
	}
	bk, err := loadBackup(g.vr.Dir, g.old.CA)
	if err != nil {
		return nil, nil, err
	}
	return bk.file, bk.pub, nil
}

// trialImport imports a session copy of the CA key under kek and proves possession through it. A token
// without a confirmed RFC 5649 unwrap takes the copy by host-cbcpad only when allowHostUnwrap says the
// flow already accepted that deviation.
func (r *run) trialImport(ctx context.Context, sess *hsm.Session, probe *hsm.ProbeResult, kek []byte, f *wrap.File, caPub crypto.PublicKey, manifestKey string, allowHostUnwrap bool) error {
	unwrap := hsm.UnwrapKWP
	if allowHostUnwrap && probe.KWPMechanism == 0 {
		unwrap = hsm.UnwrapHostCBCPad
	}
	var afterErr error
	res, err := sess.Import(ctx, hsm.ImportRequest{
		KEK: kek, File: f, CAPublic: caPub, Label: "custos trial " + r.id, Trial: true,
		Transport: hsm.TransportAuto, CAUnwrap: unwrap, AllowHostUnwrap: allowHostUnwrap && unwrap == hsm.UnwrapHostCBCPad,
		Probe: probe, RecordID: r.id, ManifestKey: manifestKey,
		AfterStep: func(step string) {
			if afterErr == nil {
				afterErr = r.done("trial-import/" + step)
			}
		},
	})
	if err == nil {
		err = afterErr
	}
	if err != nil {
		return err
	}
	if err := res.Proof.Verify(caPub); err != nil {
		return err
	}
	return r.t.Append("trial-import", Actor{Role: "hsm", Name: sess.Token.Label}, Facts{"import": res, "proof_verified": true})
}

// supersede records the old blob and shares as superseded and has a witness confirm the destruction of
// every recorded copy of the old blob: each record given that holds it.
func (g *regen) supersede(oldFile *wrap.File) error {
	g.step = "supersede"
	var gens []any
	for _, vr := range g.records {
		if vr.Manifest != nil {
			gens = append(gens, vr.Manifest.Generation)
		}
	}
	if err := g.t.Append("supersede", Actor{Role: "custos"}, Facts{"superseded_generations": gens, "old_kek_check": oldFile.KEKCheck.String(),
		"old_wrapped_sha256": g.old.CA.WrappedSHA256}); err != nil {
		return err
	}
	for _, vr := range g.records {
		p := filepath.Join(vr.Dir, "ca-key.wrapped")
		b, err := os.ReadFile(p)
		if err != nil || shares.FileSHA256(b) != g.old.CA.WrappedSHA256 {
			continue
		}
		stmt := fmt.Sprintf("every copy of %s (the old wrapped key, %s) and its backups destroyed", p, oldFile.KEKCheck)
		w, err := g.o.Prompter.Confirm(g.flow, g.id, stmt)
		if err != nil {
			return err
		}
		if err := g.t.Append("supersede", Actor{Role: "witness", Name: w}, Facts{"destroyed": p, "record": vr.RecordID}); err != nil {
			return err
		}
	}
	return g.done("supersede")
}

func conformance(q wrap.Quirk) string {
	if q == wrap.QuirkNone {
		return "exact RFC 5649"
	}
	return string(q)
}
