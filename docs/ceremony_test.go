package docs

// This file keeps ceremony.md true: every custos command line in its code blocks is a real command of
// the binary built from this tree, with flags its --help lists, production flags only, and the pins
// each flow takes; each script names its flow's steps in the order the flow runs them; and every
// numbered step has an expected result and a witness tick box.

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-pki/custos/ceremony"
)

// commandLines returns the lines typed in ceremony.md's code blocks that run custos ("$ custos …"),
// each with its continuation lines (ending in " \") joined and the "$ " removed.
func commandLines(doc string) []string {
	var out []string
	inBlock, cont := false, false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock, cont = !inBlock, false
			continue
		}
		if !inBlock {
			continue
		}
		text := strings.TrimSpace(line)
		switch {
		case cont:
			out[len(out)-1] += " " + strings.TrimSpace(strings.TrimSuffix(text, `\`))
		case strings.HasPrefix(text, "$ custos "):
			out = append(out, strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(text, "$ "), `\`)))
		default:
			continue
		}
		cont = strings.HasSuffix(text, `\`)
	}
	return out
}

// rehearsalOnly are the flags production refuses; the scripts are production scripts.
var rehearsalOnly = []string{"--rehearsal", "--witness", "--pin-file", "--hsm-pin-file", "--components-file"}

// scriptPins are the pins each production command of the scripts must carry.
var scriptPins = map[string][]string{
	"ceremony generate": {"--expect-roster-sha256", "--expect-module-sha256", "--token-serial"},
	"ceremony import":   {"--expect-seal", "--expect-module-sha256", "--token-serial"},
	"ceremony reshare":  {"--expect-seal", "--expect-roster-sha256"},
	"ceremony rekey":    {"--expect-seal", "--expect-roster-sha256", "--expect-module-sha256", "--token-serial"},
	"ceremony export":   {"--expect-seal"},
	"ceremony adopt":    {"--expect-roster-sha256", "--expect-module-sha256", "--token-serial"},
	"share check":       {"--expect-seal"},
	"hsm probe":         {"--expect-module-sha256", "--token-serial"},
}

func TestCeremonyCommands(t *testing.T) {
	doc := readFile(t, "ceremony.md")
	tree := commandTree(t)
	lines := commandLines(doc)
	if len(lines) < 20 {
		t.Fatalf("ceremony.md: found %d custos command lines; the parser no longer fits the document", len(lines))
	}
	used := map[string]bool{}
	for _, line := range lines {
		m := parseCommand(line, false)
		// Lower-case arguments ("transcript verify generation import-1") are not part of the path.
		for _, ok := tree[m.path]; !ok && strings.Contains(m.path, " "); _, ok = tree[m.path] {
			m.path = m.path[:strings.LastIndex(m.path, " ")]
		}
		help, ok := tree[m.path]
		if m.path == "" || !ok {
			t.Errorf("ceremony.md: `%s`: 'custos %s' is not a command", line, m.path)
			continue
		}
		used[m.path] = true
		for _, f := range unlistedFlags(help, m.flags) {
			t.Errorf("ceremony.md: `%s` names %s, which 'custos %s --help' does not list", line, f, m.path)
		}
		for _, f := range m.flags {
			if slices.Contains(rehearsalOnly, f) {
				t.Errorf("ceremony.md: `%s` uses the rehearsal flag %s in a production script", line, f)
			}
		}
		for _, pin := range scriptPins[m.path] {
			if !slices.Contains(m.flags, pin) {
				t.Errorf("ceremony.md: `%s` lacks the pin %s", line, pin)
			}
		}
	}
	for _, path := range []string{"version", "preflight", "card list", "card enroll", "roster create", "roster verify",
		"transcript verify", "ceremony generate", "ceremony import", "ceremony reshare", "ceremony rekey",
		"ceremony export", "ceremony adopt", "share check", "hsm probe"} {
		if !used[path] {
			t.Errorf("ceremony.md has no script step that runs `custos %s`", path)
		}
	}
}

// scriptSteps are the flows' step lists and the script (a "## Script N: TITLE" heading) that names them.
var scriptSteps = []struct {
	title string
	steps []string
}{
	{"Generation", ceremony.GenerateSteps},
	{"Health check (share check)", nil},
	{"Import", ceremony.ImportSteps},
	{"Reshare", ceremony.ReshareSteps},
	{"Rekey", ceremony.RekeySteps},
	{"Export (emergency)", ceremony.ExportSteps},
	{"Adopt", ceremony.AdoptSteps},
}

// stepRow is a table row that starts with a step name in code type.
var stepRow = regexp.MustCompile("(?m)^\\| `([a-z/-]+)` \\|")

func TestCeremonyStepLists(t *testing.T) {
	headings, bodies := sections(readFile(t, "ceremony.md"), 2)
	for _, s := range scriptSteps {
		i := slices.IndexFunc(headings, func(h string) bool { return strings.HasSuffix(h, ": "+s.title) && strings.HasPrefix(h, "Script ") })
		if i < 0 {
			t.Errorf("ceremony.md has no heading \"## Script N: %s\"", s.title)
			continue
		}
		body := bodies[headings[i]]
		// Every step of the flow, in order.
		pos := 0
		for _, step := range s.steps {
			j := strings.Index(body[pos:], "`"+step+"`")
			if j < 0 {
				t.Errorf("ceremony.md %q does not name the step `%s` after the ones before it (flow order: %s)",
					headings[i], step, strings.Join(s.steps, ", "))
				break
			}
			pos += j + len(step) + 2
		}
		// A step table lists exactly the flow's steps.
		var rows []string
		for _, m := range stepRow.FindAllStringSubmatch(body, -1) {
			rows = append(rows, m[1])
		}
		if rows != nil && !slices.Equal(rows, s.steps) {
			t.Errorf("ceremony.md %q: the step table lists\n  %s\nbut the flow runs\n  %s", headings[i],
				strings.Join(rows, ", "), strings.Join(s.steps, ", "))
		}
	}
}

var stepNumber = regexp.MustCompile(`^(H|\d+\.)(\d+)\.? `)

func TestCeremonyStepsTicked(t *testing.T) {
	doc := readFile(t, "ceremony.md")
	headings, bodies := sections(doc, 2)
	for _, want := range []string{"Roles", "Equipment inventory", "Host preparation", "Deviations",
		"What is stored where afterwards", "Every use of the CA key"} {
		if !slices.Contains(headings, want) {
			t.Errorf("ceremony.md has no section \"## %s\"", want)
		}
	}
	scripts := 0
	for n, h := range headings {
		prefix := ""
		switch {
		case h == "Host preparation":
			prefix = "H"
		case strings.HasPrefix(h, "Script "):
			scripts++
			num, _, _ := strings.Cut(strings.TrimPrefix(h, "Script "), ":")
			if num != strconv.Itoa(scripts) {
				t.Errorf("ceremony.md: \"## %s\" is script %d", h, scripts)
			}
			prefix = num + "."
		default:
			continue
		}
		steps, stepBodies := sections(bodies[h], 3)
		if len(steps) == 0 {
			t.Errorf("ceremony.md %q has no numbered steps", h)
		}
		for i, step := range steps {
			m := stepNumber.FindStringSubmatch(step)
			if m == nil || m[1] != prefix || m[2] != strconv.Itoa(i+1) {
				t.Errorf("ceremony.md %q: step heading %q should be numbered %s%d", headings[n], step, prefix, i+1)
			}
			if !strings.Contains(stepBodies[step], "☐") {
				t.Errorf("ceremony.md step %q has no witness tick box ☐", step)
			}
			if !strings.Contains(stepBodies[step], "Expected") {
				t.Errorf("ceremony.md step %q says nothing Expected", step)
			}
		}
	}
	if scripts != 8 {
		t.Errorf("ceremony.md has %d scripts; want enrollment, generation, check, import, reshare, rekey, export and adopt", scripts)
	}
	// The roles a key generation script names (WebTrust 4.1).
	for _, role := range []string{"operator", "custodians", "witnesses", "auditor"} {
		if !strings.Contains(bodies["Roles"], "| "+role+" |") {
			t.Errorf("ceremony.md's roles table has no row for the %s", role)
		}
	}
}
