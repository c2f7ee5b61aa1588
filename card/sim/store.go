package sim

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFormat is the version of the card file layout.
const stateFormat = 1

// cardState is everything a card keeps across power cycles, as stored in its file (JSON, mode 0600).
type cardState struct {
	Format  int     `json:"format"`
	Serial  uint32  `json:"serial"`
	Profile Profile `json:"profile"`

	// PIN and PUK are stored padded with FF to 8 bytes, as the card compares them.
	PIN     []byte `json:"pin"`
	PINMax  byte   `json:"pin_max"`
	PINLeft byte   `json:"pin_left"`
	PUK     []byte `json:"puk"`
	PUKMax  byte   `json:"puk_max"`
	PUKLeft byte   `json:"puk_left"`

	MgmtAlg   byte   `json:"mgmt_alg"`
	MgmtKey   []byte `json:"mgmt_key"`
	MgmtTouch byte   `json:"mgmt_touch"`

	Keys    map[byte]*slotKey `json:"keys"`
	Objects map[uint32][]byte `json:"objects"`

	DenyTouch bool     `json:"deny_touch"`
	Counters  Counters `json:"counters"`
}

// slotKey is a private key in a key slot with its immutable policies.
type slotKey struct {
	Alg    byte   `json:"alg"`
	PIN    byte   `json:"pin_policy"`
	Touch  byte   `json:"touch_policy"`
	Origin byte   `json:"origin"`
	PKCS8  []byte `json:"pkcs8"`

	priv crypto.PrivateKey
}

func newSlotKey(alg, pin, touch, origin byte, priv crypto.PrivateKey) (*slotKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return &slotKey{Alg: alg, PIN: pin, Touch: touch, Origin: origin, PKCS8: der, priv: priv}, nil
}

var errCardFile = errors.New("sim: invalid card file")

// LoadCard opens the card whose state is in path. A loaded card has the keys, PIN and PUK state,
// objects and counters it had when its last command returned; its volatile security state is fresh.
func LoadCard(path string) (*Card, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: load card: %w", err)
	}
	defer clear(b)
	st := new(cardState)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%w %s: %v", errCardFile, path, err)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("%w %s: %v", errCardFile, path, err)
	}
	return newCard(path, st), nil
}

func (st *cardState) check() error {
	if st.Format != stateFormat {
		return fmt.Errorf("format %d, want %d", st.Format, stateFormat)
	}
	if _, err := ParseProfile(string(st.Profile)); err != nil || st.Profile == "" {
		return fmt.Errorf("profile %q", st.Profile)
	}
	if len(st.PIN) != 8 || len(st.PUK) != 8 || st.PINMax == 0 || st.PUKMax == 0 ||
		st.PINLeft > st.PINMax || st.PUKLeft > st.PUKMax {
		return errors.New("PIN or PUK state")
	}
	if n, ok := mgmtKeyLen[st.MgmtAlg]; !ok || n != len(st.MgmtKey) {
		return errors.New("management key")
	}
	if st.Objects == nil {
		st.Objects = map[uint32][]byte{}
	}
	if st.Keys == nil {
		st.Keys = map[byte]*slotKey{}
	}
	if st.Counters.ByINS == nil {
		st.Counters.ByINS = map[byte]uint64{}
	}
	for slot, k := range st.Keys {
		if k == nil {
			return fmt.Errorf("slot %02x: empty", slot)
		}
		priv, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
		if err != nil {
			return fmt.Errorf("slot %02x: %v", slot, err)
		}
		if a, ok := algOf(priv); !ok || a != k.Alg {
			return fmt.Errorf("slot %02x: key does not match algorithm %02x", slot, k.Alg)
		}
		k.priv = priv
	}
	return nil
}

// save writes the card's state to its file. sync asks for the data to be on disk before save
// returns; counters-only updates skip the fsyncs but are still replaced atomically.
func (c *Card) save(sync bool) error {
	b, err := json.Marshal(c.st)
	if err != nil {
		return err
	}
	defer clear(b)
	return writeFileAtomic(c.path, b, 0o600, sync)
}

// writeFileAtomic replaces path with data: a temporary file in the same directory, written, synced,
// and renamed over path, and the directory synced, so that path holds either the old or the new data.
func writeFileAtomic(path string, data []byte, perm os.FileMode, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
