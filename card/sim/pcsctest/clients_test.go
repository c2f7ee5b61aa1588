package pcsctest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// tool runs a third-party client against the sim (it inherits PCSCLITE_CSOCK_NAME) and returns its
// standard output; a failure ends the test with its output.
func tool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	path := testenv.RequireTool(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

func parsePEM(t *testing.T, b []byte, typ string) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		t.Fatalf("no %s PEM block in:\n%s", typ, b)
	}
	return blk.Bytes
}

// TestYubicoPIVTool: yubico-piv-tool 2.2.0 on a 5.4 card reads status (version, serial, PIN tries),
// verifies the PIN, generates a key with the default management key, attests it and reads a
// certificate, agreeing with piv-go on serial and public keys.
func TestYubicoPIVTool(t *testing.T) {
	e := testenv.Sim(t)
	s := e.Serials()[0]
	e.Fresh(t, s)
	r := e.Reader(t, s)

	status := string(tool(t, "yubico-piv-tool", "-r", r, "-a", "status"))
	for _, want := range []string{"Version:\t5.4.3", "Serial Number:\t" + strconv.FormatUint(uint64(s), 10), "PIN tries left:\t3"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	before := e.Counters(t, s).PINVerifies
	tool(t, "yubico-piv-tool", "-r", r, "-a", "verify-pin", "-P", piv.DefaultPIN)
	if n := e.Counters(t, s).PINVerifies - before; n != 1 {
		t.Errorf("verify-pin reached the card as %d PIN verifies, want 1", n)
	}

	pubDER := parsePEM(t, tool(t, "yubico-piv-tool", "-r", r, "-a", "generate", "-s", "9a", "-A", "ECCP256"), "PUBLIC KEY")
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatal(err)
	}
	yk := open(t, e, s)
	info, err := yk.KeyInfo(piv.SlotAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.(*ecdsa.PublicKey).Equal(info.PublicKey) {
		t.Fatal("yubico-piv-tool and piv-go see different public keys in 9a")
	}
	cert := certFor(t, pub, "yubico-piv-tool read-certificate")
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotAuthentication, cert); err != nil {
		t.Fatal(err)
	}
	yk.Close()

	attDER := parsePEM(t, tool(t, "yubico-piv-tool", "-r", r, "-a", "attest", "-s", "9a"), "CERTIFICATE")
	att, err := x509.ParseCertificate(attDER)
	if err != nil {
		t.Fatal(err)
	}
	yk = open(t, e, s)
	f9, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	yk.Close()
	a, err := (&piv.Verifier{Roots: e.Roots(t)}).Verify(f9, att)
	if err != nil {
		t.Fatalf("attestation from yubico-piv-tool does not verify: %v", err)
	}
	if a.Serial != s || !pub.(*ecdsa.PublicKey).Equal(att.PublicKey) || a.Slot != piv.SlotAuthentication {
		t.Errorf("attestation: serial %d, slot %v, key match %v", a.Serial, a.Slot, pub.(*ecdsa.PublicKey).Equal(att.PublicKey))
	}

	got := parsePEM(t, tool(t, "yubico-piv-tool", "-r", r, "-a", "read-certificate", "-s", "9a"), "CERTIFICATE")
	if !bytes.Equal(got, cert.Raw) {
		t.Error("read-certificate returned another certificate than piv-go stored")
	}

	// test-signature has the card sign a digest and checks it against the certificate's key.
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.RequireTool(t, "yubico-piv-tool"), "-r", r, "-P", piv.DefaultPIN,
		"-a", "verify-pin", "-a", "test-signature", "-s", "9a", "-i", certFile)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Successful ECDSA verification") {
		t.Errorf("test-signature: %v\n%s", err, out)
	}
	e.Fresh(t, s)
}

// TestOpenSC: opensc-tool names the card a PIV card, pkcs15-tool lists its certificate, and
// pkcs11-tool with OpenSC's PKCS#11 module signs with a key generated on the card; the signature
// verifies with Go's crypto.
func TestOpenSC(t *testing.T) {
	e := testenv.Sim(t)
	s := e.Serials()[1]
	e.Fresh(t, s)
	r := e.Reader(t, s)
	module := "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
	if _, err := os.Stat(module); err != nil {
		testenv.Missing(t, "OpenSC's PKCS#11 module %s (Debian opensc-pkcs11): %v", module, err)
	}

	yk := open(t, e, s)
	pub := generate(t, yk, piv.SlotSignature)
	cert := certFor(t, pub, "custos OpenSC test")
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatal(err)
	}
	yk.Close()

	if name := string(tool(t, "opensc-tool", "--reader", r, "--name")); !strings.Contains(name, "Personal Identity Verification Card") {
		t.Errorf("opensc-tool --name: %q", name)
	}
	dump := string(tool(t, "pkcs15-tool", "--reader", r, "--dump"))
	serial := fmt.Sprintf("Encoded serial : 02 %02X %X", len(cert.SerialNumber.Bytes()), cert.SerialNumber.Bytes())
	if i := strings.Index(dump, "X.509 Certificate [Certificate for Digital Signature]"); i < 0 ||
		!strings.Contains(dump[i:], "ID             : 02") || !strings.Contains(dump[i:], serial) {
		t.Errorf("pkcs15-tool --dump does not list the 9C certificate (%s):\n%s", serial, dump)
	}

	// OpenSC's PIV driver names slot 9C's objects with ID 02. Its PKCS#11 slots follow the readers.
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sigFile := filepath.Join(dir, "sig")
	msg := []byte("custos pkcs11-tool sign")
	if err := os.WriteFile(data, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	slot := pkcs11Slot(t, module, r)
	tool(t, "pkcs11-tool", "--module", module, "--slot", slot, "--login", "--pin", piv.DefaultPIN,
		"--sign", "--mechanism", "ECDSA-SHA256", "--id", "02", "--signature-format", "openssl",
		"--input-file", data, "--output-file", sigFile)
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("pkcs11-tool's signature (%x) does not verify with the key piv-go generated", sig)
	}
	e.Fresh(t, s)
}

// pkcs11Slot returns the PKCS#11 slot id (as pkcs11-tool prints it, hex) of the named reader.
func pkcs11Slot(t *testing.T, module, reader string) string {
	t.Helper()
	out := string(tool(t, "pkcs11-tool", "--module", module, "--list-slots"))
	re := regexp.MustCompile(`(?m)^Slot \d+ \(0x([0-9a-f]+)\): (.*)$`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		if strings.HasPrefix(m[2], reader) {
			return "0x" + m[1]
		}
	}
	t.Fatalf("no PKCS#11 slot for %q in:\n%s", reader, out)
	return ""
}

// TestYkman: ykman (Debian yubikey-manager) reads a 5.4 card's PIV version and PIN tries.
func TestYkman(t *testing.T) {
	e := testenv.Sim(t)
	s := e.Serials()[2]
	e.Fresh(t, s)
	yk := open(t, e, s)
	yk.VerifyPIN("000000") // one try spent, so the count is the card's, not a default
	yk.Close()
	info := string(tool(t, "ykman", "--reader", e.Reader(t, s), "piv", "info"))
	for _, want := range []string{"PIV version: 5.4.3", "PIN tries remaining: 2/3"} {
		if !strings.Contains(info, want) {
			t.Errorf("ykman piv info lacks %q:\n%s", want, info)
		}
	}
	e.Fresh(t, s)
}
