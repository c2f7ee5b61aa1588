package card

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"filippo.io/age/plugin"

	"github.com/custos-pki/custos/internal/testenv"
)

// These tests run the age plugin protocol end to end: age (Debian's 1.1.1 CLI, and the Go client of
// filippo.io/age/plugin) starts this test binary through a symlink named age-plugin-yubikey, and
// TestMain turns it into RunPlugin with softwareOpener behind the CardOpener. They test the
// protocol, not card access: the virtual-card version comes with the card package's piv-go opener.

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == PluginBinary {
		os.Exit(RunPlugin(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv, softwareOpener))
	}
	// The PC/SC tests (pcsc_*_test.go) share one sim of four virtual cards.
	os.Exit(testenv.RunWithSim(m, testenv.SimOptions{Cards: 4, FirstSerial: simFirstSerial}))
}

// Software cards for the protocol tests: serial 12345678 holds the reference KAT key in slot 0x82;
// serial 777 holds another key in every slot.
const (
	katSerial   = 12345678
	otherSerial = 777
)

func katKey() *ecdh.PrivateKey     { return seededKey("age-plugin-yubikey KAT static key") }
func anotherKey() *ecdh.PrivateKey { return seededKey("custos card test: another key") }

func seededKey(seed string) *ecdh.PrivateKey {
	scalar := sha256.Sum256([]byte(seed))
	k, err := ecdh.P256().NewPrivateKey(scalar[:])
	if err != nil {
		panic(err) // fixed test seeds, all valid scalars
	}
	return k
}

// pinWantVar, when set in the plugin's environment, makes the software slots ask for a PIN at their
// first ECDH and compare it.
const pinWantVar = "CARDTEST_PIN_WANT"

// softwareSlot behaves as OpenedSlot recommends: PIN at the first ECDH, touch request at each.
type softwareSlot struct {
	key      *ecdh.PrivateKey
	serial   uint32
	ui       PluginUI
	verified bool
}

func (s *softwareSlot) PublicKey() *ecdh.PublicKey { return s.key.PublicKey() }
func (s *softwareSlot) Close() error               { return nil }

func (s *softwareSlot) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if want := os.Getenv(pinWantVar); want != "" && !s.verified {
		pin, err := s.ui.PIN(s.serial, fmt.Sprintf("PIN for YubiKey %d", s.serial))
		if err != nil {
			return nil, err
		}
		defer clear(pin)
		if string(pin) != want {
			return nil, errors.New("wrong PIN")
		}
		s.verified = true
	}
	if err := s.ui.Message("touch the YubiKey"); err != nil {
		return nil, err
	}
	return s.key.ECDH(peer)
}

func softwareOpener(stub Stub, ui PluginUI) (OpenedSlot, error) {
	switch {
	case stub.Serial == katSerial && stub.Slot == 0x82:
		return &softwareSlot{key: katKey(), serial: stub.Serial, ui: ui}, nil
	case stub.Serial == otherSerial:
		return &softwareSlot{key: anotherKey(), serial: stub.Serial, ui: ui}, nil
	}
	return nil, fmt.Errorf("no YubiKey with serial %d and a key in slot 0x%02x is present", stub.Serial, stub.Slot)
}

// pluginPATH returns a directory holding only an age-plugin-yubikey symlink to this test binary.
func pluginPATH(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, PluginBinary)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAge runs Debian's age CLI with PATH holding only the plugin, extra environment entries and stdin.
func runAge(t *testing.T, extraEnv []string, stdin []byte, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	agePath := testenv.RequireTool(t, "age")
	cmd := exec.Command(agePath, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + pluginPATH(t), "HOME=" + cmd.Dir, "TMPDIR=" + os.TempDir()}, extraEnv...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.String(), err
}

func writeIdentityFile(t *testing.T, ids ...string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "identity.txt")
	if err := os.WriteFile(name, []byte("# custos test identity\n"+strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func encryptNative(t *testing.T, plaintext []byte, recipients ...age.Recipient) []byte {
	t.Helper()
	var buf bytes.Buffer
	a := armor.NewWriter(&buf)
	w, err := age.Encrypt(a, recipients...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decryptNative(t *testing.T, file []byte, ids ...age.Identity) ([]byte, error) {
	t.Helper()
	var r io.Reader = bytes.NewReader(file)
	if bytes.HasPrefix(file, []byte(armor.Header)) {
		r = armor.NewReader(r)
	}
	d, err := age.Decrypt(r, ids...)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(d)
}

func katStub(t *testing.T) Stub {
	t.Helper()
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStub(katSerial, 0x82, r)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPluginProtocolRecipientV1AgeCLI: `age -r age1yubikey1…` through plugin mode writes piv-p256
// stanzas that custos's native identity opens with the software key, alone and beside an X25519
// recipient, binary and armored.
func TestPluginProtocolRecipientV1AgeCLI(t *testing.T) {
	key := katKey()
	id, err := NewIdentity(key, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("share bytes for the protocol test\n")
	for _, args := range [][]string{
		{"-r", id.Recipient().String()},
		{"-a", "-r", x25519.Recipient().String(), "-r", id.Recipient().String()},
	} {
		out, stderr, err := runAge(t, nil, plaintext, append([]string{"-e"}, args...)...)
		if err != nil {
			t.Fatalf("age %v: %v\n%s", args, err, stderr)
		}
		got, err := decryptNative(t, out, id)
		if err != nil {
			t.Fatalf("age %v: native decryption: %v", args, err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("age %v: decrypted %q, want %q", args, got, plaintext)
		}
		if !bytes.HasPrefix(out, []byte(armor.Header)) && !bytes.Contains(out, []byte("\n-> piv-p256 1Fo/ow ")) {
			t.Errorf("age %v: header has no piv-p256 stanza with the key's tag", args)
		}
	}

	notAPoint := plugin.EncodeRecipient("yubikey", append([]byte{0x04}, key.PublicKey().Bytes()[1:33]...))
	_, stderr, err := runAge(t, nil, plaintext, "-e", "-r", notAPoint)
	if err == nil || !strings.Contains(stderr, "malformed age1yubikey recipient: key starts with 0x04") {
		t.Errorf("age accepted a recipient that is not a P-256 point (err %v):\n%s", err, stderr)
	}
}

// TestPluginProtocolIdentityV1AgeCLI: `age -d -i AGE-PLUGIN-YUBIKEY-1…` through plugin mode opens
// piv-p256 stanzas (native Recipient) and p256tag stanzas (filippo.io/age/tag) with the software key
// behind the CardOpener, also when other recipients' stanzas come first.
func TestPluginProtocolIdentityV1AgeCLI(t *testing.T) {
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := r.TagRecipient()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewRecipient(anotherKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := writeIdentityFile(t, katStub(t).String())
	plaintext := []byte("decrypted by age through custos's plugin mode\n")
	for name, recipients := range map[string][]age.Recipient{
		"piv-p256":              {r},
		"p256tag":               {tagged},
		"after other stanzas":   {x25519.Recipient(), other, r},
		"p256tag after another": {other, tagged},
	} {
		file := encryptNative(t, plaintext, recipients...)
		out, stderr, err := runAge(t, nil, file, "-d", "-i", idFile)
		if err != nil {
			t.Fatalf("%s: age -d: %v\n%s", name, err, stderr)
		}
		if !bytes.Equal(out, plaintext) {
			t.Fatalf("%s: age -d printed %q, want %q", name, out, plaintext)
		}
		if !strings.Contains(stderr, "yubikey plugin: touch the YubiKey") {
			t.Errorf("%s: the slot's msg did not reach age's user:\n%s", name, stderr)
		}
	}

	// A file for another key: the stub's tag matches no stanza and the card is never opened.
	file := encryptNative(t, plaintext, other)
	if _, stderr, err := runAge(t, nil, file, "-d", "-i", idFile); err == nil || !strings.Contains(stderr, "no identity matched") {
		t.Errorf("age -d of a file for another key: err %v\n%s", err, stderr)
	}
}

// TestPluginProtocolIdentityAsRecipientAgeCLI: `age -e -i AGE-PLUGIN-YUBIKEY-1…` reads the slot's
// public key through the CardOpener (no PIN: the software slot would ask for one only at ECDH) and
// writes piv-p256 stanzas to it.
func TestPluginProtocolIdentityAsRecipientAgeCLI(t *testing.T) {
	key := katKey()
	id, err := NewIdentity(key, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("encrypted to an identity\n")
	out, stderr, err := runAge(t, []string{pinWantVar + "=314159"}, plaintext, "-e", "-i", writeIdentityFile(t, katStub(t).String()))
	if err != nil {
		t.Fatalf("age -e -i: %v\n%s", err, stderr)
	}
	got, err := decryptNative(t, out, id)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("native decryption: %q, %v", got, err)
	}
	// A stub whose slot holds another key is refused rather than encrypted to the wrong key.
	replaced := Stub{Serial: otherSerial, Slot: 0x82, Tag: id.Recipient().Tag()}
	_, stderr, err = runAge(t, nil, plaintext, "-e", "-i", writeIdentityFile(t, replaced.String()))
	if err == nil || !strings.Contains(stderr, "YubiKey 777 slot 0x82: the slot holds another key than the identity names (key tag") {
		t.Errorf("age -e -i with a replaced key: %v\n%s", err, stderr)
	}
}

// TestPluginProtocolCardErrors: what the opener and the stub check reaches age's user as one line.
func TestPluginProtocolCardErrors(t *testing.T) {
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	file := encryptNative(t, []byte("x"), r)
	for _, tc := range []struct {
		name string
		stub Stub
		want string
	}{
		{"absent card", Stub{Serial: 4242, Slot: 0x82, Tag: r.Tag()}, "yubikey plugin: YubiKey 4242 slot 0x82: no YubiKey with serial 4242"},
		{"replaced key", Stub{Serial: otherSerial, Slot: 0x83, Tag: r.Tag()}, "YubiKey 777 slot 0x83: the slot holds another key than the identity names (key tag"},
		// No stanza carries this stub's tag, so its (absent) card is never asked for.
		{"other tag", Stub{Serial: 4242, Slot: 0x82, Tag: [4]byte{1, 2, 3, 4}}, "no identity matched"},
	} {
		_, stderr, err := runAge(t, nil, file, "-d", "-i", writeIdentityFile(t, tc.stub.String()))
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: err %v, stderr does not say %q:\n%s", tc.name, err, tc.want, stderr)
		}
		if tc.name == "other tag" && strings.Contains(stderr, "4242") {
			t.Errorf("the card of a stub matching no stanza was opened:\n%s", stderr)
		}
	}
}

// TestPluginProtocolRehearsalPIN: in plugin mode CUSTOS_PIN is taken only with CUSTOS_SIM_DIR set,
// and its use is shown; outside rehearsal it is refused before any card sees it.
func TestPluginProtocolRehearsalPIN(t *testing.T) {
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("rehearsal share\n")
	file := encryptNative(t, plaintext, r)
	idFile := writeIdentityFile(t, katStub(t).String())

	env := []string{pinWantVar + "=314159", "CUSTOS_PIN=314159", "CUSTOS_SIM_DIR=" + t.TempDir()}
	out, stderr, err := runAge(t, env, file, "-d", "-i", idFile)
	if err != nil || !bytes.Equal(out, plaintext) {
		t.Fatalf("rehearsal decryption: err %v, output %q\n%s", err, out, stderr)
	}
	if !strings.Contains(stderr, "custos rehearsal: PIN for YubiKey 12345678 taken from CUSTOS_PIN") {
		t.Errorf("the rehearsal PIN's use is not shown:\n%s", stderr)
	}

	_, stderr, err = runAge(t, env[:2], file, "-d", "-i", idFile)
	if err == nil || !strings.Contains(stderr, "yubikey plugin: card: ECDH on the card: CUSTOS_PIN is set: CUSTOS_PIN and --pin-file are accepted only in rehearsal") {
		t.Errorf("CUSTOS_PIN outside rehearsal: err %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "314159") {
		t.Errorf("the PIN reached age's output:\n%s", stderr)
	}
}

// TestPluginProtocolGoClient runs plugin mode under filippo.io/age/plugin's client (age ≥ 1.2, which
// also negotiates labels), in both state machines.
func TestPluginProtocolGoClient(t *testing.T) {
	t.Setenv("PATH", pluginPATH(t))
	ui := &plugin.ClientUI{
		DisplayMessage: func(name, message string) error { return nil },
		RequestValue: func(name, prompt string, secret bool) (string, error) {
			return "", errors.New("no PIN in this test")
		},
		Confirm: func(name, prompt, yes, no string) (bool, error) {
			return false, errors.New("no confirmation in this test")
		},
		WaitTimer: func(name string) {},
	}
	key := katKey()
	pr, err := plugin.NewRecipient("age1yubikey1qd4rgdp9fs8df3g8dzzvea2rp3wts08kgzfwr227nkspf2sx7eqh2svc6rh", ui)
	if err != nil {
		t.Fatal(err)
	}
	pi, err := plugin.NewIdentity(katStub(t).String(), ui)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("go client")
	file := encryptNative(t, plaintext, pr, x25519.Recipient())
	id, err := NewIdentity(key, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, ident := range []age.Identity{id, pi} {
		got, err := decryptNative(t, file, ident)
		if err != nil {
			t.Fatalf("%T: %v", ident, err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("%T: decrypted %q", ident, got)
		}
	}
}

// TestRunPluginUsage: plugin mode started by hand says what it is and exits 2.
func TestRunPluginUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"--age-plugin=identity-v1", "extra"}, {"--no-such-flag"}} {
		var stderr bytes.Buffer
		code := RunPlugin(args, strings.NewReader(""), io.Discard, &stderr, func(string) string { return "" }, softwareOpener)
		if code != 2 || stderr.Len() == 0 {
			t.Errorf("RunPlugin(%q) = %d with stderr %q, want 2 and a message", args, code, stderr.String())
		}
	}
}

// TestPluginCardsOpenOnce: in one plugin run each stub's card is asked for once, whether it opened or
// not, and a stub naming a slot with another key is refused.
func TestPluginCardsOpenOnce(t *testing.T) {
	calls := map[uint32]int{}
	cards := &pluginCards{open: func(stub Stub, ui PluginUI) (OpenedSlot, error) {
		calls[stub.Serial]++
		return softwareOpener(stub, ui)
	}}
	good, absent := katStub(t), Stub{Serial: 4242, Slot: 0x82}
	for range 3 {
		if _, err := cards.identity(good); err != nil {
			t.Fatal(err)
		}
		if _, err := cards.identity(absent); err == nil {
			t.Fatal("an absent card opened")
		}
	}
	if calls[katSerial] != 1 || calls[4242] != 1 {
		t.Errorf("opener calls %v, want one per card", calls)
	}
	if len(cards.opened) != 1 {
		t.Errorf("%d slots recorded as opened, want 1", len(cards.opened))
	}
}

// TestPluginSurvivesInterrupt: the SIGINT age sends when it closes the connection does not kill plugin
// mode; it ends by its own path when its input ends, after releasing the cards.
func TestPluginSurvivesInterrupt(t *testing.T) {
	cmd := exec.Command(filepath.Join(pluginPATH(t), PluginBinary), "--age-plugin=identity-v1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r, err := NewRecipient(katKey().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s := wrapOne(t, r, make([]byte, 16))
	phase1 := "-> add-identity " + katStub(t).String() + "\n\n" +
		"-> recipient-stanza 0 " + s.Type + " " + strings.Join(s.Args, " ") + "\n" + b64.EncodeToString(s.Body) + "\n" +
		"-> done\n\n"
	if _, err := io.WriteString(stdin, phase1); err != nil {
		t.Fatal(err)
	}
	// Answer grease until the software slot's "touch the YubiKey" msg: the plugin is then blocked in
	// the card's ECDH, long after its signal handler was installed.
	out := bufio.NewReader(stdout)
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("plugin output ended: %v\n%s", err, stderr.String())
		}
		if strings.HasPrefix(line, "-> msg") {
			break
		}
		if strings.HasPrefix(line, "-> grease") {
			for body := ""; err == nil && (body == "" || len(body) > 64); body, err = out.ReadString('\n') {
			}
			if _, err := io.WriteString(stdin, "-> unsupported\n\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for range 3 {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("plugin mode ended on SIGINT: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stdin.Close()
	err = <-done
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("after its input ended: %v, want exit code 2 (interaction broke)\n%s", err, stderr.String())
	}
}
