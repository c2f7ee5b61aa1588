package ceremony

import (
	"fmt"
	"sort"
	"strings"

	"github.com/custos-pki/custos/internal/fsx"
)

// evidence names the Baseline Requirements sections (reference/br-excerpts.md) and WebTrust for CAs
// criteria each step is evidence for. A step not listed evidences the logging of BR 5.4.1 only.
var evidence = map[string]string{
	"begin":          "BR 5.4.1",
	"preflight":      "BR 6.1.1.1 (physically secured environment); WebTrust 4.1 (physical security, deviations)",
	"pins":           "BR 5.4.1; WebTrust 4.1 (approval, activation materials)",
	"witness":        "BR 6.1.1.1 (witnessed generation, multi-person control); BR 5.2.2; WebTrust 4.1 (roles)",
	"liveness":       "BR 6.2.2 (multi-person control): each card present and genuine",
	"token":          "BR 6.1.1.1 (3) and BR 6.2.7 (validated cryptographic module)",
	"kek":            "BR 6.2 (encryption of the private key outside the module)",
	"ca-key":         "BR 6.1.1.1; BR 6.1.5 (key sizes)",
	"wrap":           "BR 6.2; BR 6.2.4 (private key backup)",
	"software-check": "BR 6.1.1.1 (5) (controls on the key's integrity)",
	"trial-import":   "BR 6.1.1.1 (5): the backup imports and the key proves possession",
	"split":          "BR 6.2.2 (n out of m); BR 5.2.2; BR 6.2.4",
	"check-round":    "BR 6.2.2; BR 6.2.4: every custodian opens its share from disk",
	"certificate":    "BR 7.1.2.1 (root certificate profile)",
	"manifest":       "BR 5.4.1; WebTrust 4.1 (post-ceremony storage)",
	"minutes":        "WebTrust 4.1 (sign-off)",
	"destroy":        "BR 6.2.10 (destroying private keys); BR 6.1.1.1 (5)",
	"record":         "BR 5.4.1: the record imported from, pinned by its seal",
	"quorum":         "BR 6.2.2 (multi-person control)",
	"combine":        "BR 6.2.2; BR 6.2.8 (activation by a quorum)",
	"import":         "BR 6.2.6 (transfer into a module); BR 6.2.7",
	"abort":          "WebTrust 4.1 (deviations)",
	"slot":           "BR 6.2.10 (destroying private keys): the retired key overwritten",
	"attestation":    "BR 6.2.10: the slot's fresh attestation proves the old key is gone",
	"report":         "BR 6.2.2: which generations a quorum can still open",
	"legacy":         "BR 6.2.6 (transfer into a module): what the legacy procedure hands over",
	"components":     "BR 6.2.2 (split knowledge): each component checked on its own",
	"legacy-key":     "BR 6.2.2",
	"legacy-mac":     "BR 6.2 (integrity of the encrypted key)",
	"adopt":          "BR 6.2.6; BR 6.2.7",
	"envelopes":      "BR 6.2.10; WebTrust 4.1: the paper envelopes' destruction witnessed",
	"rewrap":         "BR 6.2; BR 6.2.4: the backup under a new KEK",
	"handover":       "BR 5.4.1: the old manifest key hands over to the new one",
	"supersede":      "BR 6.2.10: every recorded copy of the old blob destroyed",
	"seal":           "BR 5.4.1 (tamper-evident log)",
}

// RenderReport renders a verified record for signatures: the step table with the evidence each step
// gives, the deviations, the outcome and seal, and signature lines for the operator, each custodian and
// each witness.
func RenderReport(vr *VerifiedRecord) []byte {
	var b strings.Builder
	title := map[string]string{"generate": "CA key generation ceremony", "import": "CA key import ceremony", "split": "Secret split"}[vr.Flow]
	if title == "" {
		title = vr.Flow
	}
	fmt.Fprintf(&b, "# %s %s\n\n", title, vr.RecordID)
	if rehearsal, _ := vr.Events[0].Facts["rehearsal"].(bool); rehearsal {
		b.WriteString("**REHEARSAL: nothing in this record may be used in production.**\n\n")
	}
	fmt.Fprintf(&b, "| | |\n|---|---|\n| outcome | %s |\n| seal | `%s` |\n", vr.Outcome, vr.Seal)
	if vr.Outcome == OutcomeAborted {
		fmt.Fprintf(&b, "| stopped at | %s |\n| reason | %s |\n", vr.Body.Where, cell(vr.Body.Reason))
	}
	if vr.Link != "" {
		fmt.Fprintf(&b, "| builds on the record sealed | `%s` |\n", vr.Link)
	}
	if vr.Manifest != nil {
		fp, _ := vr.Manifest.ManifestKeyFingerprint()
		fmt.Fprintf(&b, "| ceremony | %s, generation %d, %d of %d |\n| manifest key | `%s` |\n", vr.Manifest.CeremonyID, vr.Manifest.Generation, vr.Manifest.Threshold, len(vr.Manifest.Custodians), fp)
		if vr.Manifest.CA != nil {
			fmt.Fprintf(&b, "| CA key | %s `%s` |\n", vr.Manifest.CA.KeyAlg, vr.Manifest.CA.Fingerprint)
		}
	}
	fmt.Fprintf(&b, "| signed by | %s |\n\n", strings.Join(vr.Signers, ", "))

	b.WriteString("## Steps\n\n| # | time (UTC) | step | by | facts | evidence for | ✓ |\n|---|---|---|---|---|---|---|\n")
	for _, e := range vr.Events {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | ☐ |\n", e.Seq, e.Time, e.Step, actorText(e.Actor), cell(summary(e)), evidence[stepRoot(e.Step)])
	}

	b.WriteString("\n## Deviations\n\n")
	devs := deviations(vr)
	if len(devs) == 0 {
		b.WriteString("None.\n")
	}
	for _, d := range devs {
		fmt.Fprintf(&b, "- %s\n", d)
	}

	b.WriteString("\n## Signatures\n\nBy signing, each participant confirms that the steps above took place as recorded.\n\n")
	for _, p := range participants(vr) {
		fmt.Fprintf(&b, "%s\n\nName: ______________________  Signature: ______________________  Date: __________\n\n", p)
	}
	return []byte(b.String())
}

// WriteReport renders a record's report.md. It never overwrites.
func WriteReport(vr *VerifiedRecord, path string) error {
	return fsx.WriteFile(path, RenderReport(vr))
}

func stepRoot(step string) string {
	root, _, _ := strings.Cut(step, "/")
	return root
}

func actorText(a Actor) string {
	s := a.Role
	if a.Name != "" {
		s += " " + a.Name
	}
	if a.Serial != 0 {
		s += fmt.Sprintf(" (card %d)", a.Serial)
	}
	return s
}

// summary shortens an event's facts to what fits a table cell: scalar facts only, sorted.
func summary(e Event) string {
	var parts []string
	for k, v := range e.Facts {
		switch v := v.(type) {
		case string:
			if v != "" {
				parts = append(parts, k+": "+v)
			}
		case float64:
			// Facts read back from a transcript are JSON numbers; custos writes integers only.
			parts = append(parts, fmt.Sprintf("%s: %d", k, int64(v)))
		case bool, int:
			parts = append(parts, fmt.Sprintf("%s: %v", k, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func cell(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// deviations collects what the record says deviated: preflight checks that failed, flow deviations.
func deviations(vr *VerifiedRecord) []string {
	var out []string
	for _, e := range vr.Events {
		if checks, ok := e.Facts["checks"].([]any); ok && e.Step == "preflight" {
			for _, c := range checks {
				m, _ := c.(map[string]any)
				if ok, _ := m["ok"].(bool); !ok {
					out = append(out, fmt.Sprintf("preflight %v: %v", m["name"], m["detail"]))
				}
			}
		}
		if ds, ok := e.Facts["deviations"].([]any); ok {
			for _, d := range ds {
				out = append(out, fmt.Sprintf("%s: %v", e.Step, d))
			}
		}
		if e.Step == "abort" {
			out = append(out, fmt.Sprintf("aborted at %v: %v", e.Facts["where"], e.Facts["reason"]))
		}
	}
	return out
}

// participants lists who signs: the operator, each custodian and each witness named in the record.
func participants(vr *VerifiedRecord) []string {
	out := []string{"**Operator**"}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, e := range vr.Events {
		if c, ok := e.Facts["custodian"].(string); ok {
			add(fmt.Sprintf("**Custodian** %s", c))
		}
		if e.Actor.Role == "custodian" {
			add(fmt.Sprintf("**Custodian** %s", e.Actor.Name))
		}
	}
	for _, e := range vr.Events {
		if e.Actor.Role == "witness" {
			add(fmt.Sprintf("**Witness** %s", e.Actor.Name))
		}
	}
	return out
}
