package ceremony

import (
	"os"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if genFixture.dir != "" {
		os.RemoveAll(genFixture.dir)
	}
	testenv.RemoveTokenDirs()
	os.Exit(code)
}
