package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

// Version is custos's release version.
const Version = "0.1.0-dev"

// versionInfo is what `custos version` reports.
type versionInfo struct {
	Version string `json:"version"`
	Binary  string `json:"binary"`
	SHA256  string `json:"sha256"`
}

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and the SHA-256 of the running binary",
		Long: `Print custos's version and the SHA-256 of the running binary, as sha256sum prints it.

The binary's own report of its hash is a convenience: a witness checks the binary with sha256sum from
read-only media against the reproducible build (make build).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := selfHash()
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(v)
			}
			fmt.Fprintf(a.stdout, "custos %s\n%s  %s\n", v.Version, v.SHA256, v.Binary)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// selfHash hashes the running executable, once per process (preflight and the record both show it).
var selfHash = sync.OnceValues(hashSelf)

func hashSelf() (*versionInfo, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("version: cannot find the running binary: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	return &versionInfo{Version: Version, Binary: exe, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// hostFacts are what a record keeps about the binary that made it.
func (a *app) hostFacts() (ceremony.Facts, error) {
	v, err := selfHash()
	if err != nil {
		return nil, err
	}
	return ceremony.Facts{"custos_version": v.Version, "custos_sha256": v.SHA256}, nil
}
