package ceremony

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/wrap"
)

// ComponentDisplay shows secret key components to people, one holder at a time, on the terminal only.
type ComponentDisplay interface {
	// Show asks the next holder for their name, shows them component i of n (WriteGroupedHex) with its
	// check value until they confirm they have it, and clears the screen. It returns the holder's name.
	// It must not keep the component.
	Show(i, n int, component []byte, check string) (holder string, err error)
}

// ExportOptions are the inputs of an emergency export.
type ExportOptions struct {
	Ceremony   []string
	ExpectSeal string
	Components int
	Identities []string
	Cards      CardOptions
	Out        string
	Rehearsal  bool
	Preflight  *PreflightReport
	HostFacts  Facts
	Display    ComponentDisplay
	Now        func() time.Time
}

// ExportResult is what an export reports. It holds no component.
type ExportResult struct {
	Dir        string   `json:"dir"`
	Components int      `json:"components"`
	Holders    []string `json:"holders"`
	KEKCheck   string   `json:"kek_check"`
	Seal       string   `json:"seal"`
}

// ExportSteps are the steps of an export.
var ExportSteps = []string{"preflight", "pins", "record", "quorum", "combine", "components", "seal"}

// Export is the emergency path for an HSM that accepts a key only by component entry: the record pinned,
// a quorum rebuilds and checks the KEK, then each XOR component is shown on the terminal to one holder at
// a time with its check value, the screen cleared between holders. The record says who received which
// component; no component is written anywhere.
func Export(ctx context.Context, o ExportOptions) (res *ExportResult, err error) {
	if o.Preflight == nil || o.Display == nil {
		return nil, errors.New("export needs its preflight report and a terminal display")
	}
	if o.Components < 2 || o.Components > 16 {
		return nil, fmt.Errorf("%w: --components %d: choose 2 to 16 components", ErrUsage, o.Components)
	}
	if len(o.Ceremony) == 0 {
		return nil, fmt.Errorf("%w: --ceremony DIR names the record to export from", ErrUsage)
	}
	if !o.Rehearsal && o.ExpectSeal == "" {
		return nil, fmt.Errorf("%w: a production export pins the record (--expect-seal)", ErrUsage)
	}
	records, err := VerifyRecords(o.Ceremony, o.ExpectSeal)
	if err != nil {
		return nil, err
	}
	vr := records[len(records)-1]
	m := vr.Manifest
	if m == nil || vr.Outcome != OutcomeSuccess {
		return nil, fmt.Errorf("%s holds no current generation of shares", vr.Dir)
	}
	if m.Rehearsal != o.Rehearsal {
		return nil, fmt.Errorf("%s: rehearsal and production never mix", vr.Dir)
	}
	keys, err := identityKeys(o.Identities)
	if err != nil {
		return nil, err
	}
	if err := staleKey(keys, records, m); err != nil {
		return nil, err
	}
	if err := unassigned(keys, "ceremony "+m.CeremonyID, manifestRecipients(m)); err != nil {
		return nil, err
	}
	keys = assign(keys, manifestRecipients(m))
	if err := fsx.CheckNew(o.Out); err != nil {
		return nil, err
	}
	r, err := startRun("export", o.Out, vr.Seal, Facts{"rehearsal": o.Rehearsal, "ceremony_id": m.CeremonyID, "generation": m.Generation, "emergency": true}, o.HostFacts, o.Now, nil)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var kek, mkey []byte
	var parts [][]byte
	defer func() {
		clear(kek)
		clear(mkey)
		for _, p := range parts {
			clear(p)
		}
		if err != nil {
			err = r.abort(err, m.Generation)
		}
	}()
	if err := r.event("preflight", Actor{Role: "custos"}, o.Preflight.Facts()); err != nil {
		return nil, err
	}
	r.step = "pins"
	if err := r.event("pins", Actor{Role: "operator"}, Facts{"seal": vr.Seal, "seal_pinned": o.ExpectSeal != ""}); err != nil {
		return nil, err
	}
	r.step = "record"
	if err := r.event("record", Actor{Role: "custos"}, Facts{"record": vr.RecordID, "generation": m.Generation, "manifest_sha256": vr.Body.Files["manifest.json"]}); err != nil {
		return nil, err
	}
	r.step = "quorum"
	cards, release, err := quorumKeys(o.Cards, &loadedManifest{Manifest: m, dir: vr.Dir}, keys, "export", r.id)
	if err != nil {
		return nil, err
	}
	defer release()
	keys = append(keys, cards...)
	for _, k := range keys {
		if err := r.t.Append("quorum", Actor{Role: "custodian", Name: k.name}, Facts{"key": k.source}); err != nil {
			return nil, err
		}
	}
	r.step = "combine"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if kek, mkey, err = rebuildKEK(m, vr.Dir, keys); err != nil {
		return nil, err
	}
	if err := r.event("combine", Actor{Role: "custos"}, Facts{"shares": len(keys), "kek_check": m.SecretCheck, "manifest_key_derived": true}); err != nil {
		return nil, err
	}
	r.step = "components"
	if parts, err = xorComponents(kek, o.Components); err != nil {
		return nil, err
	}
	res = &ExportResult{Dir: o.Out, Components: o.Components, KEKCheck: m.SecretCheck}
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		kcv, err := wrap.KCV(p)
		if err != nil {
			return nil, err
		}
		holder, err := o.Display.Show(i+1, len(parts), p, kcv.String())
		if err != nil {
			return nil, fmt.Errorf("component %d: %w", i+1, err)
		}
		res.Holders = append(res.Holders, holder)
		if err := r.t.Append("components", Actor{Role: "custodian", Name: holder}, Facts{"component": i + 1, "of": len(parts), "check_value": kcv.String(), "shown_on": "terminal"}); err != nil {
			return nil, err
		}
	}
	r.step = "seal"
	if res.Seal, err = r.seal(SealBody{Generation: m.Generation, Outcome: OutcomeSuccess}, ManifestKeySigner(mkey)); err != nil {
		return nil, err
	}
	return res, nil
}

// WriteGroupedHex writes b as lowercase hex in groups of four, for reading aloud and writing down,
// without making a string of it.
func WriteGroupedHex(w io.Writer, b []byte) error {
	const digits = "0123456789abcdef"
	var buf [5]byte
	for i := 0; i < len(b); i += 2 {
		n := 0
		for _, c := range b[i:min(i+2, len(b))] {
			buf[n], buf[n+1] = digits[c>>4], digits[c&0xf]
			n += 2
		}
		if i+2 < len(b) {
			buf[n] = ' '
			n++
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
	}
	clear(buf[:])
	return nil
}
