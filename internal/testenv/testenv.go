// Package testenv holds the test harnesses shared by custos's packages: checks for the external tools
// and services a test needs (which fail rather than skip under CI), a scanner that proves no secret
// reached an output, and the testscript wiring for CLI tests. Later harnesses (virtual cards, software
// tokens) are added here, not beside it.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (the CI variable set to a true value), where a missing
// tool or service is a failure and never a skip.
func InCI() bool {
	switch os.Getenv("CI") {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// RequireTool returns the path of the named executable. When it is missing the test fails under CI
// and is skipped, saying what to install, elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Missing(t, "%s not found on PATH; run 'make deps' (as root) to install the Debian packages", name)
	return ""
}

// Missing reports a missing prerequisite: a failure under CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("missing prerequisite (fails under CI): "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}
