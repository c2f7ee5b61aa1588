package ceremony

import "github.com/custos-pki/custos/hsm"

// Step names of each flow, in order. The transcript records events under these names, the report
// renders them, and the tests walk the same lists (an abort or interruption after each step). HSM
// sub-steps are embedded as "PREFIX/STEP" with hsm's own names.
var (
	GenerateSteps = concat(
		[]string{"preflight", "pins", "witness", "liveness", "token", "kek", "ca-key", "wrap", "software-check"},
		prefixed("trial-import", hsm.ImportSteps),
		[]string{"split", "check-round", "certificate", "manifest", "minutes", "destroy", "seal"},
	)
	ImportSteps = concat(
		[]string{"preflight", "pins", "record", "token", "quorum", "combine"},
		prefixed("import", hsm.ImportSteps),
		[]string{"seal"},
	)
)

func prefixed(prefix string, steps []string) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = prefix + "/" + s
	}
	return out
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
