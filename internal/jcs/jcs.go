// Package jcs implements the subset of RFC 8785 (JSON Canonicalization Scheme) that custos's formats use:
// objects, arrays, strings, booleans, null and integers within ±(2^53−1). Floating-point numbers are not
// part of any custos format and are refused.
//
// Every custos JSON file is written in canonical form, and Unmarshal accepts only input that is already
// canonical (optionally followed by one newline): duplicate keys, unknown fields, extra white space or a
// different member order make a file invalid, so one meaning has exactly one encoding and a file's SHA-256
// identifies its content.
package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrNotCanonical is returned by Unmarshal for input that parses but is not in canonical form.
var ErrNotCanonical = errors.New("not in canonical JSON form (RFC 8785)")

// Marshal returns the canonical JSON encoding of v, which must encode (with encoding/json) to a value
// within the subset.
func Marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonicalize(raw)
}

// Canonicalize returns the canonical form of the JSON text b.
func Canonicalize(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	var buf bytes.Buffer
	if err := encode(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes canonical JSON into v, refusing unknown fields and any input that is not exactly the
// canonical encoding of what it decodes to. One trailing newline is allowed.
func Unmarshal(b []byte, v any) error {
	b = bytes.TrimSuffix(b, []byte("\n"))
	c, err := Canonicalize(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(c, b) {
		return ErrNotCanonical
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	// encoding/json matches member names case-insensitively and decodes base64 leniently; only input
	// that re-encodes to itself is accepted, so no two files mean the same thing.
	again, err := Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, b) {
		return ErrNotCanonical
	}
	return nil
}

const maxSafeInteger = 1<<53 - 1

func encode(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n > maxSafeInteger || n < -maxSafeInteger || strconv.FormatInt(n, 10) != string(v) && !isNegZero(string(v)) {
			return fmt.Errorf("number %s is not an integer within ±(2^53-1)", v)
		}
		buf.WriteString(strconv.FormatInt(n, 10))
	case string:
		return encodeString(buf, v)
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encode(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return lessUTF16(keys[i], keys[j]) })
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := encode(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unsupported JSON value %T", v)
	}
	return nil
}

// isNegZero reports "-0", which canonicalizes to "0".
func isNegZero(s string) bool { return s == "-0" }

func encodeString(buf *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("string is not valid UTF-8")
	}
	buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(buf, `\u%04x`, r)
			} else {
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
	return nil
}

// lessUTF16 orders member names by their UTF-16 code units, as RFC 8785 section 3.2.3 requires.
func lessUTF16(a, b string) bool {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			return ua[i] < ub[i]
		}
	}
	return len(ua) < len(ub)
}
