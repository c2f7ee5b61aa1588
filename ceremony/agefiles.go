package ceremony

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/shares"
)

// maxAgeFile bounds what custos reads from a share or check file: they hold a few hundred bytes.
const maxAgeFile = 64 << 10

// recipientFor returns the age recipient for a roster member.
func recipientFor(m shares.Member) (age.Recipient, error) {
	switch m.Kind {
	case shares.KindX25519:
		return age.ParseX25519Recipient(m.Recipient)
	case shares.KindPIVP256:
		return card.ParseRecipient(m.Recipient)
	}
	return nil, fmt.Errorf("custodian %q: recipient kind %q is not supported by this build", m.Name, m.Kind)
}

// encryptArmored encrypts plaintext to one recipient as an armored age file.
func encryptArmored(r age.Recipient, plaintext []byte) ([]byte, error) {
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decryptArmored decrypts an armored age file with the given identities. The caller wipes the result.
func decryptArmored(file []byte, ids ...age.Identity) ([]byte, error) {
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(file)), ids...)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, maxAgeFile))
	if err != nil {
		clear(out)
		return nil, err
	}
	return out, nil
}

// softwareIdentity is a native age X25519 identity read from an -i file.
type softwareIdentity struct {
	file string
	id   *age.X25519Identity
}

// readIdentityFiles reads native age X25519 identities from files. custos never runs an age plugin, so
// plugin identities are refused here, by name.
func readIdentityFiles(paths []string) ([]softwareIdentity, error) {
	var out []softwareIdentity
	seen := map[string]string{}
	for _, p := range paths {
		b, err := readSmall(p)
		if err != nil {
			return nil, fmt.Errorf("identity file: %w", err)
		}
		if bytes.Contains(b, []byte("AGE-PLUGIN-")) {
			clear(b)
			return nil, fmt.Errorf("identity file %s holds a plugin identity; custos never runs age plugins (it uses cards directly)", p)
		}
		ids, err := age.ParseIdentities(bytes.NewReader(b))
		clear(b)
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %v", p, err)
		}
		for _, id := range ids {
			x, ok := id.(*age.X25519Identity)
			if !ok {
				return nil, fmt.Errorf("identity file %s: holds a %T identity; only native age X25519 identities are accepted", p, id)
			}
			r := x.Recipient().String()
			if prev, dup := seen[r]; dup {
				return nil, fmt.Errorf("identity files %s and %s hold the same identity (%s); each custodian counts once", prev, p, r)
			}
			seen[r] = p
			out = append(out, softwareIdentity{file: p, id: x})
		}
	}
	return out, nil
}

// maxRecordFile bounds what custos reads from a roster, manifest or other record file.
const maxRecordFile = 16 << 20

// readSmall reads a share, check or identity file, refusing one larger than such files are.
func readSmall(path string) ([]byte, error) { return readLimited(path, maxAgeFile) }

// readLimited reads a file, refusing one larger than limit.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("%s is larger than %d bytes; it is not a custos file", path, limit)
	}
	return b, nil
}
