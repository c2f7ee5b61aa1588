package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Secret is a value that must never appear in an output.
type Secret struct {
	Name  string
	Value []byte
}

// Finding is one place a secret was found.
type Finding struct {
	Secret   string // the secret's name
	Encoding string // raw, hex, HEX, base64, base64url, base64raw, base64urlraw
	Where    string // file path or stream name
}

func (f Finding) String() string { return fmt.Sprintf("%s (%s) in %s", f.Secret, f.Encoding, f.Where) }

// Scanner looks for secrets in bytes and files: raw, hex in both cases, and base64 in the standard and
// URL alphabets, padded or not, at every alignment (a secret inside a longer base64 value encodes
// differently depending on its offset modulo 3).
type Scanner struct {
	needles []needle
}

type needle struct {
	secret, encoding string
	value            []byte
}

// minSecret is the shortest secret the scanner accepts: shorter needles would match by chance.
const minSecret = 8

// NewScanner returns a scanner for the given secrets. It fails on a secret too short to scan for.
func NewScanner(secrets ...Secret) (*Scanner, error) {
	s := &Scanner{}
	for _, sec := range secrets {
		if len(sec.Value) < minSecret {
			return nil, fmt.Errorf("scanner: secret %s is %d bytes; at least %d are needed to scan without false matches", sec.Name, len(sec.Value), minSecret)
		}
		s.needles = append(s.needles,
			needle{sec.Name, "raw", sec.Value},
			needle{sec.Name, "hex", []byte(hex.EncodeToString(sec.Value))},
			needle{sec.Name, "HEX", []byte(strings.ToUpper(hex.EncodeToString(sec.Value)))},
		)
		for _, enc := range []struct {
			name string
			e    *base64.Encoding
		}{
			{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding},
		} {
			for off := 0; off < 3; off++ {
				s.needles = append(s.needles, needle{sec.Name, enc.name, base64Core(enc.e, sec.Value, off)})
			}
		}
	}
	return s, nil
}

// base64Core returns the part of the base64 encoding of v, placed off bytes into a longer value, that
// does not depend on the bytes around it. Padding only ever follows this part, so padded and unpadded
// (raw) encodings are both found.
func base64Core(e *base64.Encoding, v []byte, off int) []byte {
	buf := append(make([]byte, off), v...)
	enc := e.WithPadding(base64.NoPadding).EncodeToString(buf)
	// Drop the characters that mix in the prefix bytes, and those that mix in whatever follows.
	start := 0
	if off > 0 {
		start = 4
	}
	end := (len(buf) / 3) * 4
	if end <= start {
		end = len(enc)
	}
	return []byte(enc[start:end])
}

// Scan returns the secrets found in data, naming where.
func (s *Scanner) Scan(where string, data []byte) []Finding {
	var out []Finding
	seen := map[string]bool{}
	for _, n := range s.needles {
		if seen[n.secret+n.encoding] || !bytes.Contains(data, n.value) {
			continue
		}
		seen[n.secret+n.encoding] = true
		out = append(out, Finding{n.secret, n.encoding, where})
	}
	return out
}

// ScanPaths scans files and every file below directories, skipping the files and directories in except.
func (s *Scanner) ScanPaths(paths []string, except ...string) ([]Finding, error) {
	skip := map[string]bool{}
	for _, e := range except {
		abs, _ := filepath.Abs(e)
		skip[abs] = true
	}
	var out []Finding
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(p)
			switch {
			case skip[abs] && d.IsDir():
				return filepath.SkipDir
			case skip[abs] || !d.Type().IsRegular():
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, s.Scan(p, b)...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PositiveControl plants every secret in every encoding, at every alignment and amid other text, and
// checks that Scan finds each one. A scan is only evidence if its positive control passes.
func (s *Scanner) PositiveControl(secrets ...Secret) error {
	plant := map[string]func([]byte, int) []byte{
		"raw": func(v []byte, _ int) []byte { return v },
		"hex": func(v []byte, _ int) []byte { return []byte(hex.EncodeToString(v)) },
		"HEX": func(v []byte, _ int) []byte { return []byte(strings.ToUpper(hex.EncodeToString(v))) },
	}
	for name, e := range map[string]*base64.Encoding{
		"base64": base64.StdEncoding, "base64url": base64.URLEncoding,
		"base64raw": base64.RawStdEncoding, "base64urlraw": base64.RawURLEncoding,
	} {
		plant[name] = func(v []byte, off int) []byte {
			// The secret inside a longer value: off bytes before it and some after.
			return []byte(e.EncodeToString(append(append(bytes.Repeat([]byte{0x5a}, off), v...), 0xa5, 0x11)))
		}
	}
	for _, sec := range secrets {
		for enc, f := range plant {
			for off := 0; off < 3; off++ {
				data := append(append([]byte("prefix "), f(sec.Value, off)...), []byte(" suffix")...)
				if len(s.Scan("control", data)) == 0 {
					return fmt.Errorf("scanner positive control: %s planted as %s at offset %d was not found", sec.Name, enc, off)
				}
			}
		}
	}
	return nil
}
