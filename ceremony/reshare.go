package ceremony

import (
	"context"
	"fmt"
)

// ReshareResult is what a reshare reports.
type ReshareResult struct {
	Dir          string `json:"dir"`
	CeremonyID   string `json:"ceremony_id"`
	Generation   int    `json:"generation"`
	Supersedes   int    `json:"supersedes"`
	RosterSHA256 string `json:"roster_sha256"`
	ManifestKey  string `json:"manifest_key"`
	Seal         string `json:"seal"`
}

// ReshareSteps are the steps of a reshare.
var ReshareSteps = []string{"preflight", "pins", "record", "witness", "quorum", "combine", "split", "check-round", "manifest", "seal"}

// carriedFiles are carried over byte for byte by a reshare: the wrapped key and the public files.
var carriedFiles = []string{"ca-key.wrapped", "ca.pub.pem", "ca.crt.pem"}

// Reshare gives the same KEK to a new roster or k-of-n as generation + 1. It does not revoke: any quorum
// of an older generation can still rebuild the KEK from its shares. Pins first (the record's seal, the
// new roster's SHA-256); each new custodian witnessed; a quorum of the current generation rebuilds the
// KEK; new shares and check tokens; the check round of the new custodians; a manifest, signed by the same
// manifest key, that names the one it supersedes by hash; the wrapped key carried over byte for byte.
func Reshare(ctx context.Context, o NextGeneration) (res *ReshareResult, err error) {
	g, err := startRegen("reshare", o, nil, Facts{"revokes": false,
		"note": "a reshare does not revoke: any quorum of an older generation can still rebuild the KEK"})
	if err != nil {
		return nil, err
	}
	defer g.close()
	var kek, mkey []byte
	defer func() {
		clear(kek)
		clear(mkey)
		if err != nil {
			err = g.abort(err, g.old.Generation+1, "shares", "checks", "manifest.json")
		}
	}()
	if err := g.begin(Facts{}, carriedFiles...); err != nil {
		return nil, err
	}
	if kek, mkey, err = g.rebuild(ctx); err != nil {
		return nil, err
	}
	m := g.nextManifest()
	m.SecretCheck, m.ManifestKey = g.old.SecretCheck, g.old.ManifestKey
	if err := g.splitAndCheck(m, kek); err != nil {
		return nil, err
	}
	if _, err := g.writeManifest(m, mkey, Facts{}); err != nil {
		return nil, err
	}
	g.step = "seal"
	seal, err := g.seal(SealBody{Generation: m.Generation, Outcome: OutcomeSuccess}, sealSigners(mkey, g.quorum, g.newKeys)...)
	if err != nil {
		return nil, err
	}
	fp, err := m.ManifestKeyFingerprint()
	if err != nil {
		return nil, fmt.Errorf("reshare: %w", err)
	}
	return &ReshareResult{Dir: o.Out, CeremonyID: m.CeremonyID, Generation: m.Generation, Supersedes: g.old.Generation,
		RosterSHA256: m.RosterSHA, ManifestKey: fp, Seal: seal}, nil
}
