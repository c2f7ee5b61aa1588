package hsm

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

// TokenRecord is what the record keeps about the module and token: CK_INFO, CK_TOKEN_INFO (without
// the counters that change from call to call), the module path and its SHA-256.
type TokenRecord struct {
	Module              string `json:"module"`
	ModuleSHA256        string `json:"module_sha256"`
	LibraryManufacturer string `json:"library_manufacturer"`
	LibraryDescription  string `json:"library_description"`
	LibraryVersion      string `json:"library_version"`
	Slot                uint   `json:"slot"`
	Label               string `json:"label"`
	Manufacturer        string `json:"manufacturer"`
	Model               string `json:"model"`
	Serial              string `json:"serial"`
	Flags               uint   `json:"flags"`
	HardwareVersion     string `json:"hardware_version"`
	FirmwareVersion     string `json:"firmware_version"`
	// Software names the software token this is ("softhsm2", "opencryptoki-soft"), or is empty.
	Software string `json:"software,omitempty"`
}

// Digest is the SHA-256 of the record's JSON encoding: the "SHA-256 of the token info and module" in a
// proof of possession.
func (r TokenRecord) Digest() [32]byte {
	b, _ := json.Marshal(r) // strings and integers: it cannot fail
	return sha256.Sum256(b)
}

func (r TokenRecord) String() string {
	return fmt.Sprintf("%q serial %s (%s %s, firmware %s) in %s", r.Label, r.Serial, r.Manufacturer, r.Model, r.FirmwareVersion, r.Module)
}

func version(v pkcs11.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func tokenRecord(m *module, lib pkcs11.Info, slot uint, ti pkcs11.TokenInfo) TokenRecord {
	r := TokenRecord{
		Module:              m.path,
		ModuleSHA256:        m.sha256,
		LibraryManufacturer: strings.TrimRight(lib.ManufacturerID, " \x00"),
		LibraryDescription:  strings.TrimRight(lib.LibraryDescription, " \x00"),
		LibraryVersion:      version(lib.LibraryVersion),
		Slot:                slot,
		Label:               ti.Label,
		Manufacturer:        ti.ManufacturerID,
		Model:               ti.Model,
		Serial:              ti.SerialNumber,
		Flags:               ti.Flags,
		HardwareVersion:     version(ti.HardwareVersion),
		FirmwareVersion:     version(ti.FirmwareVersion),
	}
	r.Software = softwareKind(m.path, r)
	return r
}

// softwareKind recognises the software tokens by what the library and token say they are and by the
// module file, never by the label, which anyone can set to look like hardware.
func softwareKind(path string, r TokenRecord) string {
	switch {
	case strings.Contains(strings.ToLower(filepath.Base(path)), "softhsm"),
		strings.Contains(r.LibraryManufacturer, "SoftHSM"),
		r.Manufacturer == "SoftHSM project",
		strings.HasPrefix(r.Model, "SoftHSM"):
		return "softhsm2"
	case r.Model == "IBM SoftTok":
		return "opencryptoki-soft"
	}
	return ""
}

// selectToken picks the one token matching serial and/or label.
func selectToken(m *module, serial, label string) (TokenRecord, error) {
	if serial == "" && label == "" {
		return TokenRecord{}, fmt.Errorf("hsm: name the token with --token-serial or --token: %w", ErrTokenNotFound)
	}
	lib, err := m.ctx.GetInfo()
	if err != nil {
		return TokenRecord{}, fmt.Errorf("hsm: C_GetInfo: %w", err)
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return TokenRecord{}, fmt.Errorf("hsm: C_GetSlotList: %w", err)
	}
	var all, match []TokenRecord
	for _, slot := range slots {
		ti, err := m.ctx.GetTokenInfo(slot)
		if err != nil {
			return TokenRecord{}, fmt.Errorf("hsm: C_GetTokenInfo (slot %d): %w", slot, err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		r := tokenRecord(m, lib, slot, ti)
		all = append(all, r)
		if (serial == "" || r.Serial == serial) && (label == "" || r.Label == label) {
			match = append(match, r)
		}
	}
	want := describeWant(serial, label)
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return TokenRecord{}, fmt.Errorf("hsm: no token %s in %s; tokens there: %s: %w", want, m.path, listTokens(all), ErrTokenNotFound)
	}
	return TokenRecord{}, fmt.Errorf("hsm: %d tokens %s in %s (%s); add --token-serial: %w", len(match), want, m.path, listTokens(match), ErrAmbiguousToken)
}

func describeWant(serial, label string) string {
	var parts []string
	if label != "" {
		parts = append(parts, fmt.Sprintf("labelled %q", label))
	}
	if serial != "" {
		parts = append(parts, fmt.Sprintf("with serial %q", serial))
	}
	return strings.Join(parts, " ")
}

func listTokens(rs []TokenRecord) string {
	if len(rs) == 0 {
		return "none"
	}
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%q serial %s", r.Label, r.Serial))
	}
	return strings.Join(s, ", ")
}
