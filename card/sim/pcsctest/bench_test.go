package pcsctest

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"testing"

	"github.com/custos-pki/custos/internal/testenv"
	"github.com/go-piv/piv-go/v2/piv"
)

// BenchmarkAPDURoundTrip measures command APDUs through the whole stack: piv-go, libpcsclite,
// pcscd, the vpcd driver, TCP inside the sim's network namespace and the applet. Each operation is
// one GET SERIAL on an open card.
func BenchmarkAPDURoundTrip(b *testing.B) {
	e := testenv.Sim(b)
	s := e.Serials()[0]
	yk := open(b, e, s)
	for b.Loop() {
		if got, err := yk.Serial(); err != nil || got != s {
			b.Fatalf("serial %d, %v", got, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "apdu/s")
}

// BenchmarkECDHP256 measures one P-256 key agreement on the card through piv-go (GENERAL
// AUTHENTICATE with a peer point; the key's PIN policy is never, so no VERIFY is counted), the
// operation that opens a custodian's share.
func BenchmarkECDHP256(b *testing.B) {
	e := testenv.Sim(b)
	s := e.Serials()[1]
	e.Fresh(b, s)
	yk := open(b, e, s)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotKeyManagement, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		b.Fatal(err)
	}
	priv, err := yk.PrivateKey(piv.SlotKeyManagement, pub, piv.KeyAuth{})
	if err != nil {
		b.Fatal(err)
	}
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	cardPub, err := pub.(*ecdsa.PublicKey).ECDH()
	if err != nil {
		b.Fatal(err)
	}
	want, err := peer.ECDH(cardPub)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := priv.(*piv.ECDSAPrivateKey).ECDH(peer.PublicKey())
		if err != nil || !bytes.Equal(got, want) {
			b.Fatalf("card ECDH %x, %v; software ECDH %x", got, err, want)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/ecdh")
	yk.Close()
	e.Fresh(b, s)
}
