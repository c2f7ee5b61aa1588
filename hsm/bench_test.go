package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/custos-pki/custos/hsm"
	"github.com/custos-pki/custos/internal/softtoken"
	"github.com/custos-pki/custos/internal/testenv"
	"github.com/custos-pki/custos/wrap"
	"github.com/miekg/pkcs11"
)

// benchKey is one CA key made beforehand: P-256, wrapped under the shared KEK, with its certificate.
type benchKey struct {
	file *wrap.File
	pub  crypto.PublicKey
	cert *x509.Certificate
}

func benchKeys(b *testing.B, kek []byte, n int) []benchKey {
	check, _ := wrap.KCV(kek)
	keys := make([]benchKey, n)
	for i := range keys {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		blob, err := wrap.Wrap(kek, der)
		if err != nil {
			b.Fatal(err)
		}
		fp, _ := wrap.Fingerprint(k.Public())
		dn, _ := hsm.ParseDN("CN=Bench Root")
		cert, err := hsm.RootCertificate(k, dn, 9*365*24*time.Hour, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = benchKey{&wrap.File{KEKCheck: check, Fingerprint: fp, KeyAlg: "p256", Mechanism: "bench", Blob: blob}, k.Public(), cert}
	}
	return keys
}

// BenchmarkImport1 and BenchmarkImport50 time custos imports (create transport, RFC 5649 unwrap,
// hardening, copy, public key and certificate objects, proof, wrap refusal, cleanup) against the same
// PKCS#11 calls made directly, on SoftHSM, and report custos/direct; the target is at most 1.10.
func BenchmarkImport1(b *testing.B)  { benchImport(b, 1) }
func BenchmarkImport50(b *testing.B) { benchImport(b, 50) }

func benchImport(b *testing.B, n int) {
	tok := testenv.SoftHSMToken(b, "bench")
	s := open(b, tok)
	ctx := context.Background()
	p, err := s.Probe(ctx, true)
	if err != nil {
		b.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	keys := benchKeys(b, kek, n)
	d := newDirect(b, tok, p.KWPMechanism)
	runCustos := func(k benchKey) time.Duration {
		t0 := time.Now()
		if _, err := s.Import(ctx, hsm.ImportRequest{KEK: kek, File: k.file, CAPublic: k.pub, Certificate: k.cert,
			Label: "bench", Transport: hsm.TransportCreate, Probe: p, RecordID: "bench", ManifestKey: "SHA256:bench"}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	runDirect := func(k benchKey) time.Duration {
		t0 := time.Now()
		d.importKey(kek, k)
		return time.Since(t0)
	}
	var custos, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Interleave key by key, alternating which goes first, so that both see the same load and the
		// same number of objects in the token.
		for j, k := range keys {
			if (i+j)%2 == 0 {
				custos += runCustos(k)
				direct += runDirect(k)
			} else {
				direct += runDirect(k)
				custos += runCustos(k)
			}
		}
		b.StopTimer()
		d.clear()
		b.StartTimer()
	}
	b.ReportMetric(float64(custos)/float64(direct), "custos/direct")
	b.ReportMetric(float64(custos.Microseconds())/float64(b.N*n), "µs/import")
}

// direct makes the PKCS#11 calls of one custos import with miekg/pkcs11 and nothing else.
type direct struct {
	b   *testing.B
	p   *pkcs11.Ctx
	sh  pkcs11.SessionHandle
	kwp uint
}

func newDirect(b *testing.B, tok *softtoken.Token, kwp uint) *direct {
	p := pkcs11.New(tok.Module)
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		b.Fatal(err)
	}
	slots, _ := p.GetSlotList(true)
	for _, slot := range slots {
		ti, _ := p.GetTokenInfo(slot)
		if ti.SerialNumber != tok.Serial {
			continue
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.CloseSession(sh) })
		return &direct{b: b, p: p, sh: sh, kwp: kwp}
	}
	b.Fatal("bench token not found")
	return nil
}

func (d *direct) must(err error) {
	if err != nil {
		d.b.Fatal(err)
	}
}

func (d *direct) readAttrs(h pkcs11.ObjectHandle) {
	for _, a := range []uint{pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_SIGN, pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_WRAP} {
		d.p.GetAttributeValue(d.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(a, nil)})
	}
}

func (d *direct) secret(value []byte, usage uint) pkcs11.ObjectHandle {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(usage, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	}
	h, err := d.p.CreateObject(d.sh, t)
	d.must(err)
	d.readAttrs(h)
	return h
}

func (d *direct) importKey(kek []byte, k benchKey) {
	id := make([]byte, 20)
	d.p.GetMechanismInfo(0, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)})
	kh := d.secret(kek, pkcs11.CKA_UNWRAP)
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	sess, err := d.p.UnwrapKey(d.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(d.kwp, nil)}, kh, k.file.Blob, priv)
	d.must(err)
	d.readAttrs(sess)
	tok, err := d.p.CopyObject(d.sh, sess, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)})
	d.must(err)
	d.readAttrs(tok)
	pub := k.pub.(*ecdsa.PublicKey)
	raw, _ := pub.Bytes()
	point := append([]byte{0x04, byte(len(raw))}, raw...)
	params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	_, err = d.p.CreateObject(d.sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	})
	d.must(err)
	_, err = d.p.CreateObject(d.sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE), pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, k.cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, k.cert.Raw), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	})
	d.must(err)
	digest := sha256.Sum256([]byte("custos-pop-v1 bench"))
	d.must(d.p.SignInit(d.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, tok))
	_, err = d.p.Sign(d.sh, digest[:])
	d.must(err)
	wk := make([]byte, 32)
	rand.Read(wk)
	wh := d.secret(wk, pkcs11.CKA_WRAP)
	if _, err := d.p.WrapKey(d.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(d.kwp, nil)}, wh, tok); err == nil {
		d.b.Fatal("imported key wrapped")
	}
	for _, h := range []pkcs11.ObjectHandle{kh, sess, tok, wh} {
		d.p.GetAttributeValue(d.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
	}
	for _, h := range []pkcs11.ObjectHandle{wh, sess, kh} {
		d.must(d.p.DestroyObject(d.sh, h))
	}
}

// clear destroys every object in the bench token between rounds.
func (d *direct) clear() {
	d.must(d.p.FindObjectsInit(d.sh, nil))
	hs, _, err := d.p.FindObjects(d.sh, 10000)
	d.must(err)
	d.must(d.p.FindObjectsFinal(d.sh))
	for _, h := range hs {
		d.must(d.p.DestroyObject(d.sh, h))
	}
}
