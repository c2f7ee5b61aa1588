package sim

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var serialSeq uint32 = 10000000

// newTestCard makes a card, and the fleet that issued its attestation key, in a temporary directory.
func newTestCard(t testing.TB, p Profile) *Card {
	t.Helper()
	serialSeq++
	dir := t.TempDir()
	f, err := OpenFleet(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.NewCard(filepath.Join(dir, "card.json"), serialSeq, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fleetOf returns the fleet that made c.
func fleetOf(t testing.TB, c *Card) *Fleet {
	t.Helper()
	f, err := OpenFleet(filepath.Dir(c.path))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// raw sends one APDU and splits the response.
func raw(t testing.TB, c *Card, apdu []byte) ([]byte, uint16) {
	t.Helper()
	r := c.Transmit(apdu)
	if len(r) < 2 {
		t.Fatalf("response %x has no status word", r)
	}
	return r[:len(r)-2], uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
}

// send sends a command as piv-go does: chained in 255-byte parts, the response collected with
// GET RESPONSE.
func send(t testing.TB, c *Card, ins, p1, p2 byte, data []byte) ([]byte, uint16) {
	t.Helper()
	for len(data) > 0xFF {
		_, sw := raw(t, c, append([]byte{0x10, ins, p1, p2, 0xFF}, data[:0xFF]...))
		if sw != swOK {
			return nil, sw
		}
		data = data[0xFF:]
	}
	resp, sw := raw(t, c, append([]byte{0x00, ins, p1, p2, byte(len(data))}, data...))
	for sw&0xFF00 == swMoreData {
		var more []byte
		more, sw = raw(t, c, []byte{0x00, 0xC0, 0x00, 0x00, 0x00})
		resp = append(resp, more...)
	}
	return resp, sw
}

func mustOK(t testing.TB, c *Card, ins, p1, p2 byte, data []byte) []byte {
	t.Helper()
	resp, sw := send(t, c, ins, p1, p2, data)
	if sw != swOK {
		t.Fatalf("INS %02x P1 %02x P2 %02x: SW %04x", ins, p1, p2, sw)
	}
	return resp
}

func wantSW(t testing.TB, c *Card, ins, p1, p2 byte, data []byte, want uint16) []byte {
	t.Helper()
	resp, sw := send(t, c, ins, p1, p2, data)
	if sw != want {
		t.Fatalf("INS %02x P1 %02x P2 %02x: SW %04x, want %04x", ins, p1, p2, sw, want)
	}
	return resp
}

func selectPIV(t testing.TB, c *Card) {
	t.Helper()
	mustOK(t, c, insSelect, 0x04, 0x00, aidPIV[:5])
}

// authMgmt runs piv-go's mutual authentication with a 3DES key.
func authMgmt3DES(t testing.TB, c *Card, key []byte) uint16 {
	t.Helper()
	resp := mustOK(t, c, insGenAuth, alg3DES, refMgmt, []byte{0x7C, 0x02, 0x80, 0x00})
	if len(resp) != 12 || !bytes.Equal(resp[:4], []byte{0x7C, 0x0A, 0x80, 0x08}) {
		t.Fatalf("witness %x", resp)
	}
	block, err := des.NewTripleDESCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	witness := make([]byte, 8)
	block.Decrypt(witness, resp[4:])
	chal := []byte{1, 1, 2, 3, 5, 8, 13, 21}
	data := append(append([]byte{0x7C, 0x14, 0x80, 0x08}, witness...), append([]byte{0x81, 0x08}, chal...)...)
	resp, sw := send(t, c, insGenAuth, alg3DES, refMgmt, data)
	if sw != swOK {
		return sw
	}
	want := make([]byte, 8)
	block.Encrypt(want, chal)
	if !bytes.Equal(resp, append([]byte{0x7C, 0x0A, 0x82, 0x08}, want...)) {
		t.Fatalf("card response %x, want encrypted challenge", resp)
	}
	return sw
}

func TestATR(t *testing.T) {
	c := newTestCard(t, Profile54)
	a := c.ATR()
	var x byte
	for _, b := range a[1:] {
		x ^= b
	}
	if x != 0 || !bytes.HasSuffix(a[:len(a)-1], []byte("YubiKey")) || a[5]&0x0F != 1 {
		t.Fatalf("ATR %x: bad checksum, historical bytes or no T=1", a)
	}
}

func TestAPDUShapes(t *testing.T) {
	c := newTestCard(t, Profile54)
	for _, tc := range []struct {
		apdu string
		want string
	}{
		{"00A4040005A000000308", "61114F0600001000010079074F05A000000308 9000"},
		{"00FD0000", "050403 9000"},                                                   // case 1
		{"00FD000000", "050403 9000"},                                                 // case 2S
		{"00FD0000000000", "050403 9000"},                                             // extended, no data
		{"00CB3FFF035C017E08", "7E124F0BA0000003080000100001005F2F024000 9000"},       // case 4S
		{"00CB3FFF0000035C017E", "7E124F0BA0000003080000100001005F2F024000 9000"},     // case 3E
		{"00CB3FFF0000035C017E0000", "7E124F0BA0000003080000100001005F2F024000 9000"}, // case 4E
		{"00CB3FFF055C017E", "6700"},                                                  // Lc longer than the data
		{"00CB3FFF025C017E0000", "6700"},                                              // trailing bytes
		{"00FD00", "6700"},                                                            // too short
		{"00FD00000000050102", "6700"},                                                // extended Lc longer than the data
		{"0CFD000000", "6882"},                                                        // secure messaging
		{"80FD000000", "6E00"},                                                        // proprietary class
		{"0012000000", "6D00"},                                                        // unknown instruction
		{"00C0000000", "6A80"},                                                        // nothing pending
		{"00A4040005A000000999", "6A82"},                                              // unknown applet
		{"00A4040008A000000527471117", "5669727475616C206D6772202D2046572076657273696F6E20352E342E33 9000"},
		{"00FD000000", "6D00"},  // PIV instruction while management is selected
		{"001D000000", "06..."}, // prefix check below
	} {
		got := hex.EncodeToString(c.Transmit(unhex(t, tc.apdu)))
		want := strings.ToLower(strings.ReplaceAll(tc.want, " ", ""))
		if strings.HasSuffix(want, "...") {
			if !strings.HasSuffix(got, "9000") {
				t.Errorf("%s: got %s", tc.apdu, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%s: got %s, want %s", tc.apdu, got, want)
		}
	}
}

func TestCommandChaining(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	if sw := authMgmt3DES(t, c, defaultMgmtKey); sw != swOK {
		t.Fatalf("auth: %04x", sw)
	}
	value := bytes.Repeat([]byte{0xA5}, 1000)
	obj := append(unhex(t, "5C035FC10A538203E8"), value...)
	mustOK(t, c, insPutData, 0x3F, 0xFF, obj)
	resp := mustOK(t, c, insGetData, 0x3F, 0xFF, unhex(t, "5C035FC10A"))
	if !bytes.Equal(resp, append(unhex(t, "538203E8"), value...)) {
		t.Fatalf("object read back differs: %x", resp[:8])
	}

	// A chain continued with a different header is dropped.
	if _, sw := raw(t, c, append(unhex(t, "10DB3FFF05"), obj[:5]...)); sw != swOK {
		t.Fatalf("first part: %04x", sw)
	}
	if _, sw := raw(t, c, unhex(t, "00DA3FFF00")); sw != swLastCommandExpected {
		t.Fatalf("mismatched part: %04x, want 6883", sw)
	}
	// More than 3072 bytes of command data is refused.
	big := bytes.Repeat([]byte{0}, 3100)
	if _, sw := send(t, c, insPutData, 0x3F, 0xFF, big); sw != swNoMemory {
		t.Fatalf("oversized chain: %04x, want 6A84", sw)
	}
	// A value over 3063 bytes is refused even when the command fits.
	tooBig := append(unhex(t, "5C035FC10A53820BF8"), bytes.Repeat([]byte{1}, 3064)...)
	if _, sw := send(t, c, insPutData, 0x3F, 0xFF, tooBig); sw != swNoMemory {
		t.Fatalf("oversized object: %04x, want 6A84", sw)
	}
}

func TestResponseChaining(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	authMgmt3DES(t, c, defaultMgmtKey)
	value := bytes.Repeat([]byte{0x5A}, 610)
	mustOK(t, c, insPutData, 0x3F, 0xFF, append(unhex(t, "5C035FC10553820262"), value...))
	resp, sw := raw(t, c, unhex(t, "00CB3FFF055C035FC105"))
	if sw != 0x6100 || len(resp) != 256 {
		t.Fatalf("first chunk: %d bytes, SW %04x, want 256 and 6100", len(resp), sw)
	}
	// OpenSC asks for less than is pending.
	part, sw := raw(t, c, unhex(t, "00C000005C"))
	if sw != 0x6100 || len(part) != 0x5C {
		t.Fatalf("short GET RESPONSE: %d bytes, SW %04x", len(part), sw)
	}
	resp = append(resp, part...)
	part, sw = raw(t, c, unhex(t, "00C0000000"))
	if sw != 0x610A || len(part) != 256 {
		t.Fatalf("third chunk: %d bytes, SW %04x, want 256 and 610A", len(part), sw)
	}
	resp = append(resp, part...)
	part, sw = raw(t, c, unhex(t, "00C0000000"))
	if sw != swOK || len(part) != 10 {
		t.Fatalf("last chunk: %d bytes, SW %04x", len(part), sw)
	}
	resp = append(resp, part...)
	if !bytes.Equal(resp, append(unhex(t, "53820262"), value...)) {
		t.Fatal("reassembled response differs from the stored object")
	}
	// Any other command drops pending data.
	raw(t, c, unhex(t, "00CB3FFF055C035FC105"))
	raw(t, c, unhex(t, "00FD000000"))
	if _, sw := raw(t, c, unhex(t, "00C0000000")); sw != swIncorrectData {
		t.Fatalf("GET RESPONSE after another command: %04x, want 6A80", sw)
	}
}

func TestCounters(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	raw(t, c, unhex(t, "0020008000"))
	raw(t, c, unhex(t, "0020008008313233343536FFFF"))
	raw(t, c, unhex(t, "0020008008313233343537FFFF"))
	raw(t, c, unhex(t, "00FD000000"))
	got := c.Counters()
	if got.ByINS[insSelect] != 1 || got.ByINS[insVerify] != 3 || got.ByINS[insGetVersion] != 1 || got.PINVerifies != 2 {
		t.Fatalf("counters %+v", got)
	}
	again, err := LoadCard(c.path)
	if err != nil {
		t.Fatal(err)
	}
	if g := again.Counters(); g.ByINS[insVerify] != 3 || g.PINVerifies != 2 {
		t.Fatalf("counters after reload %+v", g)
	}
}

func TestResetDropsSecurityState(t *testing.T) {
	c := newTestCard(t, Profile54)
	selectPIV(t, c)
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	mustOK(t, c, insVerify, 0, refPIN, nil)
	c.Reset()
	if _, sw := send(t, c, insVerify, 0, refPIN, nil); sw != 0x63C3 {
		t.Fatalf("PIN status after reset: %04x, want 63C3", sw)
	}
	mustOK(t, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	// A SELECT of another applet, or a failed SELECT, logs out too.
	raw(t, c, unhex(t, "00A4040005A000000999"))
	if _, sw := send(t, c, insVerify, 0, refPIN, nil); sw != 0x63C3 {
		t.Fatalf("PIN status after failed SELECT: %04x, want 63C3", sw)
	}
}

func FuzzTransmit(f *testing.F) {
	for _, s := range []string{
		"00A4040005A000000308", "00FD000000", "0020008008313233343536FFFF", "00870399047C028000",
		"00CB3FFF055C035FC105", "10DB3FFF035C0300", "00C0000000", "00A4040008A000000527471117",
		"001D000000", "00F7009B00", "0047009A0BAC09800111AA0102AB0101", "00CB3FFF0000035C017E",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b, []byte{0x00, 0xFD, 0x00, 0x00, 0x00})
	}
	dir := f.TempDir()
	fl, err := OpenFleet(dir)
	if err != nil {
		f.Fatal(err)
	}
	c, err := fl.NewCard(filepath.Join(dir, "card.json"), 1, Profile57)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		c.Reset()
		// Authenticated, so that the fuzzer reaches the key and object commands.
		c.s.mgmtAuthed, c.s.pinVerified, c.s.pinAlways = true, true, true
		for _, apdu := range [][]byte{a, b} {
			r := c.Transmit(apdu)
			if len(r) < 2 {
				t.Fatalf("%x: response %x has no status word", apdu, r)
			}
			if sw1 := r[len(r)-2]; sw1 != 0x90 && sw1&0xF0 != 0x60 {
				t.Fatalf("%x: bad SW1 in %x", apdu, r)
			}
			if c.panics != 0 {
				t.Fatalf("%x: the command panicked", apdu)
			}
		}
	})
}

// BenchmarkTransmit measures the applet alone: GET VERSION round trips, each one saving the counters.
func BenchmarkTransmit(b *testing.B) {
	c := newTestCard(b, Profile54)
	apdu := []byte{0x00, insGetVersion, 0x00, 0x00, 0x00}
	for b.Loop() {
		if r := c.Transmit(apdu); len(r) != 5 {
			b.Fatalf("response %x", r)
		}
	}
}

// BenchmarkSignP256 measures a PIN-once P-256 signature.
func BenchmarkSignP256(b *testing.B) {
	c := newTestCard(b, Profile54)
	selectPIV(b, c)
	authMgmt3DES(b, c, defaultMgmtKey)
	mustOK(b, c, insGenerate, 0, 0x9A, unhex(b, "AC03800111"))
	mustOK(b, c, insVerify, 0, refPIN, padPIN([]byte("123456")))
	apdu := append([]byte{0x00, insGenAuth, algP256, 0x9A, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20}, make([]byte, 32)...)
	for b.Loop() {
		if r := c.Transmit(apdu); r[len(r)-2] != 0x90 {
			b.Fatalf("response %x", r)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newTestCard(t, Profile54)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if r := c.Transmit([]byte{0x00, insGetVersion, 0x00, 0x00, 0x00}); len(r) != 5 {
					t.Errorf("GET VERSION answered %x", r)
				}
				c.Counters()
				c.Serial()
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			c.Reset()
			if err := c.SetTouchApproval(true); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if n := c.Counters().ByINS[insGetVersion]; n != 80 {
		t.Fatalf("counted %d GET VERSIONs, want 80", n)
	}
}
