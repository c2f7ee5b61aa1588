package ceremony

import (
	"crypto/rand"
	"fmt"
	"time"

	"filippo.io/age"

	"github.com/custos-pki/custos/internal/fsx"
	"github.com/custos-pki/custos/internal/jcs"
	"github.com/custos-pki/custos/shares"
)

// ReceiptFormat is the version string of a health-check receipt.
const ReceiptFormat = "custos-receipt-v1"

// Receipt is the record of one custodian's health check. It says that the custodian's key opened the
// check token and that the share file on disk is the one the signed manifest lists; it says nothing of
// the share itself, which a check never opens. Card is null for software custodians; for a card it holds
// the signature of the card's attested signing key over the receipt (custos-receipt-v1).
type Receipt struct {
	Format          string       `json:"format"`
	CeremonyID      string       `json:"ceremony_id"`
	Generation      int          `json:"generation"`
	Custodian       string       `json:"custodian"`
	Recipient       string       `json:"recipient"`
	Rehearsal       bool         `json:"rehearsal"`
	ManifestSHA256  string       `json:"manifest_sha256"`
	ShareFileSHA256 string       `json:"share_file_sha256"`
	CheckFileSHA256 string       `json:"check_file_sha256"`
	Time            string       `json:"time"`
	Nonce           []byte       `json:"nonce"`
	Outcome         string       `json:"outcome"`
	Card            *ReceiptCard `json:"card"`
}

// ReceiptCard is a card's signature over a receipt.
type ReceiptCard struct {
	Serial     uint32 `json:"serial"`
	SigningKey []byte `json:"signing_key"`
	Signature  []byte `json:"signature"`
}

// ShareCheckOptions are the inputs of share check.
type ShareCheckOptions struct {
	Ceremony          string
	ExpectManifestKey string // the manifest key from the minutes (plain splits)
	ExpectSeal        string // or the record's seal from the minutes (ceremony records)
	Rehearsal         bool
	Identity          string // a file holding the custodian's native age X25519 identity; "" for a card
	Cards             CardOptions
	Receipt           string // where to write the receipt; empty for none
	Now               func() time.Time
}

// ShareCheck proves one custodian's key, and the share file on disk, intact without opening the share:
// the key opens the check token, whose value the manifest commits to, and the share file's SHA-256 is
// the signed one. The key is an identity file or, without one, the one card of the manifest that is
// present (or chosen with --serial), which proves its liveness first and signs the receipt.
func ShareCheck(o ShareCheckOptions) (*Receipt, error) {
	if o.Receipt != "" {
		if err := fsx.CheckNew(o.Receipt); err != nil {
			return nil, err
		}
	}
	var lm *loadedManifest
	var err error
	if o.ExpectSeal != "" {
		lm, err = loadSealedManifest(o.Ceremony, o.ExpectSeal, o.Rehearsal)
	} else {
		lm, err = loadManifest(o.Ceremony, o.ExpectManifestKey, o.Rehearsal)
	}
	if err != nil {
		return nil, err
	}
	if lm.Kind == shares.KindCeremony && !o.Rehearsal && o.ExpectSeal == "" {
		return nil, fmt.Errorf("%w: the share check of a CA key backup is pinned by the record's latest seal (--expect-seal), not by its manifest key alone", ErrUsage)
	}
	if o.Identity == "" {
		return cardShareCheck(o, lm)
	}
	ids, err := readIdentityFiles([]string{o.Identity})
	if err != nil {
		return nil, err
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("%w: identity file %s holds %d identities; a check is for one custodian", ErrUsage, o.Identity, len(ids))
	}
	r := ids[0].id.Recipient().String()
	var e *shares.Entry
	for i := range lm.Custodians {
		if lm.Custodians[i].Recipient == r {
			e = &lm.Custodians[i]
		}
	}
	if e == nil {
		return nil, fmt.Errorf("identity file %s is not a custodian of ceremony %s (its recipient %s is not in the manifest)", o.Identity, lm.CeremonyID, r)
	}
	rc, err := checkShare(o, lm, e, ids[0].id)
	if err != nil {
		return nil, err
	}
	return rc, writeReceipt(o.Receipt, rc)
}

// cardShareCheck checks the share of the one card custodian whose card is present.
func cardShareCheck(o ShareCheckOptions, lm *loadedManifest) (*Receipt, error) {
	if o.Cards.Selector == nil {
		return nil, fmt.Errorf("%w: give -i IDENTITY_FILE, or check with a card", ErrUsage)
	}
	want, err := expectedCards(lm.Manifest)
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: ceremony %s has no card custodians; give the custodian's identity file with -i", ErrUsage, lm.CeremonyID)
	}
	var rc *Receipt
	err = withCards(o.Cards, want, 1, "share check", lm.CeremonyID, "decrypt the check token (never the share)", func(k presentKey) (bool, error) {
		e, _ := lm.Custodian(k.name)
		if rc, err = checkShare(o, lm, e, k.identity); err != nil {
			return false, err
		}
		pub, err := k.signer.PublicKey()
		if err != nil {
			return false, err
		}
		rc.Card = &ReceiptCard{Serial: e.Card.Serial, SigningKey: pub}
		in, err := ReceiptSigningInput(rc)
		if err != nil {
			return false, err
		}
		if rc.Card.Signature, err = k.signer.Sign(in); err != nil {
			return false, err
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if rc == nil {
		return nil, fmt.Errorf("no card of ceremony %s was checked", lm.CeremonyID)
	}
	return rc, writeReceipt(o.Receipt, rc)
}

// checkShare opens the custodian's check token with id and hashes the share file.
func checkShare(o ShareCheckOptions, lm *loadedManifest, e *shares.Entry, id age.Identity) (*Receipt, error) {
	checkFile, err := openCheckToken(lm, e, id)
	if err != nil {
		return nil, err
	}
	// The share file is only hashed, never decrypted.
	shareFile, err := lm.readListed(e.Share.File, e.Share.FileSHA256)
	if err != nil {
		return nil, err
	}
	rc := &Receipt{
		Format: ReceiptFormat, CeremonyID: lm.CeremonyID, Generation: lm.Generation, Custodian: e.Name,
		Recipient: e.Recipient, Rehearsal: lm.Rehearsal, ManifestSHA256: shares.FileSHA256(lm.file),
		ShareFileSHA256: shares.FileSHA256(shareFile), CheckFileSHA256: shares.FileSHA256(checkFile),
		Time: now(o.Now), Nonce: make([]byte, 32), Outcome: "pass",
	}
	if _, err := rand.Read(rc.Nonce); err != nil {
		return nil, err
	}
	return rc, nil
}

// writeReceipt writes a receipt file, when one was asked for.
func writeReceipt(path string, rc *Receipt) error {
	if path == "" {
		return nil
	}
	b, err := jcs.Marshal(rc)
	if err != nil {
		return err
	}
	return fsx.WriteFile(path, append(b, '\n'))
}

// openCheckToken reads a custodian's check file (its SHA-256 checked against the manifest first), opens
// it with id and checks the token against the manifest. It returns the file as read.
func openCheckToken(lm *loadedManifest, e *shares.Entry, id age.Identity) ([]byte, error) {
	checkFile, err := lm.readListed(e.Check.File, e.Check.FileSHA256)
	if err != nil {
		return nil, err
	}
	plain, err := decryptArmored(checkFile, id)
	if err != nil {
		return nil, fmt.Errorf("%s: the key of %q does not open its check token: %v", lm.shown(e.Check.File), e.Name, err)
	}
	tok, err := shares.ParseCheckToken(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", lm.shown(e.Check.File), err)
	}
	defer tok.Wipe()
	if tok.CeremonyID != lm.CeremonyID || tok.Generation != lm.Generation || tok.Custodian != e.Name || tok.ValueSHA256() != e.Check.ValueSHA256 {
		return nil, fmt.Errorf("%s: the check token does not match the signed manifest", lm.shown(e.Check.File))
	}
	return checkFile, nil
}
