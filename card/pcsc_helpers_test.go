package card

import (
	"strings"
	"sync"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
)

// The PC/SC tests run on the package's sim (TestMain): four virtual 5.4 cards.
const simFirstSerial = 7000001

// Credentials of enrolled test cards.
const (
	testPIN = "24681012"
	testPUK = "13572468"
)

// testUI is a PINUI that answers with a fixed PIN and records what it was asked.
type testUI struct {
	mu       sync.Mutex
	pin      string
	confirm  bool
	prompts  []string
	messages []string
}

func (u *testUI) PIN(serial uint32, prompt string) ([]byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.prompts = append(u.prompts, prompt)
	return []byte(u.pin), nil
}

func (u *testUI) ConfirmLastTry(serial uint32, prompt string) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.prompts = append(u.prompts, prompt)
	return u.confirm, nil
}

func (u *testUI) Message(msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.messages = append(u.messages, msg)
}

// simVars are the variables that point a process at the package's sim (CUSTOS_SIM_DIR,
// PCSCLITE_CSOCK_NAME).
func simVars(e *testenv.SimEnv) map[string]string {
	vars := map[string]string{}
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return vars
}

// rehearsalEnv is the environment of a rehearsal on the package's sim.
func rehearsalEnv(t testing.TB, e *testenv.SimEnv) Env {
	vars := simVars(e)
	return Env{Rehearsal: true, Getenv: func(k string) string { return vars[k] }}
}

// openSim opens a virtual card through PC/SC; it is closed at the end of the test.
func openSim(t testing.TB, e *testenv.SimEnv, serial uint32) *Card {
	t.Helper()
	env := rehearsalEnv(t, e)
	reader := e.Reader(t, serial)
	if err := env.CheckReader(reader); err != nil {
		t.Fatal(err)
	}
	c, err := Open(reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// enrolledRecords are the records of the cards enrolled in the "enrolled" state, built once per process.
var (
	enrolledMu      sync.Mutex
	enrolledRecords = map[uint32]*Record{}
)

// enrolled puts the card into its enrolled state (made once per process by Enroll: the default PIN
// replaced by testPIN, decryption key in 82 with PIN once and touch always, signing key in 9e) and
// returns its record.
func enrolled(t testing.TB, e *testenv.SimEnv, serial uint32) *Record {
	t.Helper()
	e.UseState(t, serial, "enrolled", func(t testing.TB) {
		c, err := Open(e.Reader(t, serial))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rec, err := Enroll(c, EnrollOptions{
			Name: "custodian-" + strings.TrimPrefix(t.Name(), "Test"), Rehearsal: true,
			PIN:            PINOptions{UI: &testUI{pin: DefaultPIN}},
			NewCredentials: func(uint32) ([]byte, []byte, error) { return []byte(testPIN), []byte(testPUK), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		enrolledMu.Lock()
		enrolledRecords[serial] = rec
		enrolledMu.Unlock()
	})
	enrolledMu.Lock()
	defer enrolledMu.Unlock()
	return enrolledRecords[serial]
}
