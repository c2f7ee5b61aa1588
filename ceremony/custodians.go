package ceremony

import (
	"fmt"

	"filippo.io/age"
)

// presentKey is one custodian's key present for a flow: a native identity from an -i file, or a card
// that has proved liveness. signer co-signs the seal for a card; it is nil for software custodians.
type presentKey struct {
	name     string
	identity age.Identity
	signer   Signer
	source   string // where the key is: "identity file F" or "card SERIAL"
}

// softwareKeys matches identity files to custodians by recipient. Every identity must belong to one of
// them; want names the custodians whose keys must all be present ("" entries are skipped).
func softwareKeys(files []string, recipients map[string]string) ([]presentKey, error) {
	ids, err := readIdentityFiles(files)
	if err != nil {
		return nil, err
	}
	var out []presentKey
	for _, si := range ids {
		name, ok := recipients[si.id.Recipient().String()]
		if !ok {
			return nil, fmt.Errorf("identity file %s is no custodian's (its recipient %s is not in the roster)", si.file, si.id.Recipient())
		}
		out = append(out, presentKey{name: name, identity: si.id, source: "identity file " + si.file})
	}
	return out, nil
}
