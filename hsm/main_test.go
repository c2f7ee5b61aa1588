package hsm_test

import (
	"context"
	"os"
	"testing"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveTokenDirs()
	os.Exit(code)
}

// open logs in to tok in rehearsal mode, closing the session when the test ends.
func open(t testing.TB, tok *softtoken.Token) *hsm.Session {
	t.Helper()
	s, err := hsm.Open(context.Background(), hsm.Config{
		Module: tok.Module, TokenSerial: tok.Serial, PIN: []byte(tok.UserPIN), Rehearsal: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// requireNoObjects fails if the token holds any object a new session sees.
func requireNoObjects(t testing.TB, tok *softtoken.Token) {
	t.Helper()
	if objs := testenv.ListObjects(t, tok.Module, tok.Serial, tok.UserPIN); len(objs) != 0 {
		t.Fatalf("objects left on %s: %v", tok.Label, objs)
	}
}
