package docs

// This file keeps webtrust.md and threat-model.md honest: webtrust.md covers each step of the paper
// procedure and each of its weak points, quotes the Baseline Requirements verbatim from the shared
// excerpt, cites no WebTrust criterion the excerpt does not summarise, and names a custos command for
// every step; every command either document says exists is a real command of the binary built from
// this tree, with the flags it names; every command they name at all is one DESIGN.md lists; and
// threat-model.md describes every preflight check.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/custos-pki/custos/ceremony"
	"github.com/custos-pki/custos/internal/testenv"
)

// The shared reference folder lies beside the repository; the tests run in docs/.
const (
	brExcerptsPath = "../../shared/reference/br-excerpts.md"
	designPath     = "../../shared/DESIGN.md"
)

// cmdDocs are the documents whose command names are checked.
var cmdDocs = []string{"webtrust.md", "threat-model.md"}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readShared reads a file of the shared reference folder. It is present in CI beside the repository;
// elsewhere its absence skips the test.
func readShared(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		testenv.Missing(t, "%s (the shared reference folder beside the repository): %v", path, err)
	}
	return string(b)
}

// headingLevel returns the level of a Markdown heading line ("### x" is 3), or 0.
func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n > 0 && n < len(line) && line[n] == ' ' {
		return n
	}
	return 0
}

// sections splits Markdown at its headings of one level into heading text → body; deeper headings
// belong to the body, and a heading of a higher level ends the section.
func sections(doc string, level int) (headings []string, bodies map[string]string) {
	bodies = map[string]string{}
	cur := ""
	for _, line := range strings.SplitAfter(doc, "\n") {
		switch lv := headingLevel(line); {
		case lv == level:
			cur = strings.TrimSpace(line[level:])
			headings = append(headings, cur)
		case lv > 0 && lv < level:
			cur = ""
		case cur != "":
			bodies[cur] += line
		}
	}
	return headings, bodies
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// mention is one command a document names in code type: `custos PATH [flags…]`.
type mention struct {
	path    string   // "ceremony generate"
	flags   []string // "--ca-key"
	planned bool     // "(planned" follows the code span
	text    string
}

var commandSpan = regexp.MustCompile("`(custos [^`]*)`(\\s+\\(planned)?")

// mentions returns the commands doc names.
func mentions(doc string) []mention {
	var out []mention
	for _, m := range commandSpan.FindAllStringSubmatch(doc, -1) {
		out = append(out, parseCommand(m[1], m[2] != ""))
	}
	return out
}

var word = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// parseCommand reads a command line: its subcommand path (the leading lower-case words after
// "custos") and the flags it names.
func parseCommand(line string, planned bool) mention {
	m := mention{planned: planned, text: line}
	fields := strings.Fields(line)[1:]
	i := 0
	for ; i < len(fields) && word.MatchString(fields[i]); i++ {
	}
	m.path = strings.Join(fields[:i], " ")
	for _, f := range fields[i:] {
		if strings.HasPrefix(f, "--") {
			name, _, _ := strings.Cut(f, "=")
			m.flags = append(m.flags, strings.Trim(name, "[],"))
		}
	}
	return m
}

var (
	helpOnce sync.Once
	helpTree map[string]string // command path ("" for custos itself) → its --help output
	helpErr  string
)

// commandTree builds cmd/custos once and returns every command path with its help text, walked from
// the root's help through each "Available Commands" list.
func commandTree(t *testing.T) map[string]string {
	t.Helper()
	goCmd := testenv.RequireTool(t, "go")
	helpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "custos-docs-")
		if err != nil {
			helpErr = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "custos")
		if out, err := exec.Command(goCmd, "build", "-o", bin, "../cmd/custos").CombinedOutput(); err != nil {
			helpErr = "go build ../cmd/custos: " + err.Error() + "\n" + string(out)
			return
		}
		helpTree = map[string]string{}
		queue := []string{""}
		for len(queue) > 0 {
			path := queue[0]
			queue = queue[1:]
			out, err := exec.Command(bin, append(strings.Fields(path), "--help")...).CombinedOutput()
			if err != nil {
				helpErr = "custos " + path + " --help: " + err.Error() + "\n" + string(out)
				return
			}
			helpTree[path] = string(out)
			for _, sub := range subcommands(string(out)) {
				queue = append(queue, strings.TrimSpace(path+" "+sub))
			}
		}
	})
	if helpErr != "" {
		t.Fatal(helpErr)
	}
	return helpTree
}

// unlistedFlags returns the flags a command's help does not list.
func unlistedFlags(help string, flags []string) []string {
	var out []string
	for _, f := range flags {
		if !strings.Contains(help, f+" ") && !strings.Contains(help, f+"\n") {
			out = append(out, f)
		}
	}
	return out
}

// subcommands parses the "Available Commands:" list of cobra's help.
func subcommands(help string) []string {
	_, list, ok := strings.Cut(help, "Available Commands:\n")
	if !ok {
		return nil
	}
	var out []string
	for _, line := range strings.Split(list, "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		out = append(out, strings.Fields(line)[0])
	}
	return out
}

func TestWebTrustCoversProcedure(t *testing.T) {
	doc := readFile(t, "webtrust.md")
	headings, bodies := sections(doc, 3)
	var steps []string
	for n := 1; n <= 8; n++ {
		prefix := "Step " + strconv.Itoa(n) + ": "
		i := slices.IndexFunc(headings, func(h string) bool { return strings.HasPrefix(h, prefix) })
		if i < 0 {
			t.Errorf("webtrust.md has no heading \"### %s…\" for step %d of the paper procedure", prefix, n)
			continue
		}
		steps = append(steps, headings[i])
	}
	i := slices.IndexFunc(headings, func(h string) bool { return strings.HasPrefix(h, "Later import") })
	if i < 0 {
		t.Error("webtrust.md has no heading \"### Later import…\" for the import")
	} else {
		steps = append(steps, headings[i])
	}
	for _, h := range steps {
		var existing []string
		for _, m := range mentions(bodies[h]) {
			if !m.planned {
				existing = append(existing, m.text)
			}
		}
		if len(existing) == 0 {
			t.Errorf("webtrust.md %q names no existing custos command that replaces the step", h)
		}
		for _, part := range []string{"*What the criteria ask.*", "*Review.*", "*custos.*"} {
			if !strings.Contains(bodies[h], part) {
				t.Errorf("webtrust.md %q lacks its %s paragraph", h, part)
			}
		}
	}

	// The weak points issue 7 lists, one numbered heading each, each answered by a command.
	weak := []string{"clear components", "wrapping and mac", "kcv disclosure", "right one", "evidence trail",
		"never export", "vendor lock-in", "revoke"}
	for n, key := range weak {
		prefix := strconv.Itoa(n+1) + ". "
		i := slices.IndexFunc(headings, func(h string) bool {
			return strings.HasPrefix(h, prefix) && strings.Contains(strings.ToLower(h), key)
		})
		if i < 0 {
			t.Errorf("webtrust.md has no heading \"### %s…\" naming the weak point %q", prefix, key)
			continue
		}
		if len(mentions(bodies[headings[i]])) == 0 {
			t.Errorf("webtrust.md %q names no custos command", headings[i])
		}
	}
}

var (
	brHeading  = regexp.MustCompile(`^#{2,5} (\d+(?:\.\d+)*) `)
	mdLink     = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	brCitation = regexp.MustCompile(`\bBR (\d+(?:\.\d+)+)`)
	brQuote    = regexp.MustCompile(`^BR (\d+(?:\.\d+)+): (.*)$`)
	quoted     = regexp.MustCompile(`"([^"]+)"`)
	webTrustNo = regexp.MustCompile(`WebTrust (?:for CAs )?(?:criterion )?(\d+(?:\.\d+)*)`)
)

// brSections parses br-excerpts.md into section number → its text (links reduced to their text,
// white space normalised).
func brSections(excerpts string) map[string]string {
	out := map[string]string{}
	cur := ""
	for _, line := range strings.Split(excerpts, "\n") {
		if m := brHeading.FindStringSubmatch(line); m != nil {
			cur = m[1]
			out[cur] = ""
			continue
		}
		if strings.HasPrefix(line, "#") {
			cur = ""
			continue
		}
		if cur != "" {
			out[cur] += mdLink.ReplaceAllString(line, "$1") + "\n"
		}
	}
	for k, v := range out {
		out[k] = normalize(v)
	}
	return out
}

// blockquotes returns the text of each Markdown blockquote of doc, its lines joined.
func blockquotes(doc string) []string {
	var out []string
	cur := ""
	for _, line := range strings.Split(doc+"\n", "\n") {
		if rest, ok := strings.CutPrefix(line, ">"); ok {
			cur += " " + rest
			continue
		}
		if cur != "" {
			out = append(out, normalize(cur))
			cur = ""
		}
	}
	return out
}

func TestWebTrustQuotesBR(t *testing.T) {
	doc := readFile(t, "webtrust.md")
	excerpts := readShared(t, brExcerptsPath)
	br := brSections(excerpts)
	if len(br) < 20 {
		t.Fatalf("parsed %d sections from %s; the parser no longer fits the file", len(br), brExcerptsPath)
	}

	for _, m := range brCitation.FindAllStringSubmatch(doc, -1) {
		if _, ok := br[m[1]]; !ok {
			t.Errorf("webtrust.md cites BR %s, which is not a section of %s", m[1], brExcerptsPath)
		}
	}

	quotedSections := map[string]bool{}
	for _, q := range blockquotes(doc) {
		m := brQuote.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("webtrust.md blockquote %.60q… does not start \"BR SECTION: \"", q)
			continue
		}
		section, rest := m[1], m[2]
		body, ok := br[section]
		if !ok || body == "" {
			t.Errorf("webtrust.md quotes BR %s, which has no text in %s", section, brExcerptsPath)
			continue
		}
		frags := quoted.FindAllStringSubmatch(rest, -1)
		if len(frags) == 0 {
			t.Errorf("webtrust.md quotes BR %s without quotation marks: %.60q", section, rest)
		}
		if left := strings.Trim(quoted.ReplaceAllString(rest, ""), " …"); left != "" {
			t.Errorf("webtrust.md quote of BR %s has unquoted text %q; only quoted fragments and … belong in a quote", section, left)
		}
		for _, f := range frags {
			if !strings.Contains(body, normalize(f[1])) {
				t.Errorf("webtrust.md quotes BR %s as %q, which is not in that section of %s", section, f[1], brExcerptsPath)
			}
		}
		quotedSections[section] = true
	}
	for _, s := range []string{"5.2.2", "5.4.1", "6.1.1.1", "6.2", "6.2.7"} {
		if !quotedSections[s] {
			t.Errorf("webtrust.md does not quote BR %s, which a key backup ceremony touches", s)
		}
	}

	// WebTrust: only criterion 4.1, as the excerpt summarises it, unless marked as not reproduced.
	for _, line := range strings.Split(doc, "\n") {
		for _, m := range webTrustNo.FindAllStringSubmatch(line, -1) {
			if m[1] != "4.1" && !strings.Contains(line, "commonly cited, not reproduced here") {
				t.Errorf("webtrust.md cites WebTrust %s, which br-excerpts.md does not summarise; mark it \"commonly cited, not reproduced here\"", m[1])
			}
		}
	}
	summary := regexp.MustCompile(`"(asks for a key generation script[^"]*)"`).FindStringSubmatch(doc)
	if summary == nil {
		t.Error("webtrust.md does not quote the excerpt's summary of WebTrust 4.1")
	} else if !strings.Contains(normalize(excerpts), normalize(summary[1])) {
		t.Errorf("webtrust.md's summary of WebTrust 4.1 %q is not the excerpt's", summary[1])
	}
}

// designCommands returns the command paths DESIGN.md section 3 lists ("card enroll", "transcript verify").
func designCommands(t *testing.T) map[string]bool {
	t.Helper()
	design := readShared(t, designPath)
	_, block, ok := strings.Cut(design, "Commands (other flags are the implementer's")
	if ok {
		_, block, ok = strings.Cut(block, "```\n")
	}
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatalf("%s: no command list in section 3", designPath)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "custos ") {
			continue
		}
		for i, part := range strings.Split(line, " | ") {
			if i > 0 {
				part = "custos " + part
			}
			if m := parseCommand(part, false); m.path != "" {
				out[m.path] = true
			}
		}
	}
	if len(out) < 15 {
		t.Fatalf("%s: parsed only %d commands from section 3", designPath, len(out))
	}
	return out
}

func TestDocCommandsExist(t *testing.T) {
	tree := commandTree(t)
	if len(tree) < 10 || tree["ceremony generate"] == "" {
		t.Fatalf("the help walk found %d commands; it no longer fits cobra's help output", len(tree))
	}
	for _, name := range cmdDocs {
		doc := readFile(t, name)
		ms := mentions(doc)
		existing := 0
		for _, m := range ms {
			help, real := tree[m.path]
			switch {
			case m.planned && real:
				t.Errorf("%s: `%s` is marked planned but exists now; update the document", name, m.text)
			case m.planned:
			case m.path == "":
				t.Errorf("%s: `%s` names no subcommand", name, m.text)
			case !real:
				t.Errorf("%s: `%s` is named as existing, but 'custos %s' is not a command (mark it \"(planned\")", name, m.text, m.path)
			default:
				existing++
				for _, f := range unlistedFlags(help, m.flags) {
					t.Errorf("%s: `%s` names %s, which 'custos %s --help' does not list", name, m.text, f, m.path)
				}
			}
		}
		if existing < 5 {
			t.Errorf("%s names %d existing custos commands; the parser no longer fits the document", name, existing)
		}
	}
}

func TestDocCommandsAreDesigns(t *testing.T) {
	design := designCommands(t)
	named := map[string]bool{}
	for _, name := range cmdDocs {
		for _, m := range mentions(readFile(t, name)) {
			named[m.path] = true
			if !design[m.path] {
				t.Errorf("%s: `%s` is not a command DESIGN.md section 3 lists", name, m.text)
			}
		}
	}
	// webtrust.md's table names every command of DESIGN.md.
	for path := range design {
		if !strings.Contains(readFile(t, "webtrust.md"), "`custos "+path+"`") {
			t.Errorf("webtrust.md does not name `custos %s` (DESIGN.md section 3), existing or planned", path)
		}
	}
}

func TestThreatModelPreflightChecks(t *testing.T) {
	doc := readFile(t, "threat-model.md")
	for _, c := range []string{ceremony.CheckNetwork, ceremony.CheckSwap, ceremony.CheckCoreDumps,
		ceremony.CheckMemoryLock, ceremony.CheckVPCD, ceremony.CheckEnvironment} {
		if !strings.Contains(doc, "| `"+c+"` |") {
			t.Errorf("threat-model.md has no table row for the preflight check %q", c)
		}
	}
	// The secret copies custos cannot wipe, one numbered item per library or runtime source.
	_, bodies := sections(doc, 2)
	var copies string
	for h, b := range bodies {
		if strings.Contains(h, "cannot wipe") {
			copies = b
		}
	}
	for _, lib := range []string{"hashicorp/vault/shamir", "tink-go", "filippo.io/age", "filippo.io/hpke",
		"crypto/ecdh", "miekg/pkcs11", "encoding/json", "crypto/hkdf", "ed25519", "RequestValue"} {
		if !strings.Contains(copies, lib) {
			t.Errorf("threat-model.md's list of secret copies custos cannot wipe does not mention %s", lib)
		}
	}
}
