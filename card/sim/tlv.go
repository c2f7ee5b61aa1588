package sim

import "errors"

var errTLV = errors.New("malformed BER-TLV")

// tlv is one BER-TLV element. Multi-byte tags are held big-endian (0x7F49, 0x5F2F).
type tlv struct {
	tag   uint32
	value []byte
}

// parseTLVs splits b into BER-TLV elements. It accepts tags of up to three bytes and definite lengths
// of up to three length bytes, minimal or not, as cards do.
func parseTLVs(b []byte) ([]tlv, error) {
	var out []tlv
	for len(b) > 0 {
		t, rest, err := parseTLV(b)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		b = rest
	}
	return out, nil
}

func parseTLV(b []byte) (tlv, []byte, error) {
	if len(b) < 2 {
		return tlv{}, nil, errTLV
	}
	tag := uint32(b[0])
	i := 1
	if b[0]&0x1F == 0x1F {
		for {
			if i >= len(b) || i > 2 {
				return tlv{}, nil, errTLV
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return tlv{}, nil, errTLV
	}
	n := int(b[i])
	i++
	if n >= 0x80 {
		k := n - 0x80
		if k < 1 || k > 3 || i+k > len(b) {
			return tlv{}, nil, errTLV
		}
		n = 0
		for _, c := range b[i : i+k] {
			n = n<<8 | int(c)
		}
		i += k
	}
	if n > len(b)-i {
		return tlv{}, nil, errTLV
	}
	return tlv{tag: tag, value: b[i : i+n]}, b[i+n:], nil
}

// find returns the value of the first element with the given tag.
func find(ts []tlv, tag uint32) ([]byte, bool) {
	for _, t := range ts {
		if t.tag == tag {
			return t.value, true
		}
	}
	return nil, false
}

// appendTLV appends tag, the minimal DER length of value, and value. clients parse responses with
// encoding/asn1, which rejects non-minimal lengths.
func appendTLV(dst []byte, tag uint32, value []byte) []byte {
	switch {
	case tag > 0xFFFF:
		dst = append(dst, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		dst = append(dst, byte(tag>>8), byte(tag))
	default:
		dst = append(dst, byte(tag))
	}
	dst = appendLength(dst, len(value))
	return append(dst, value...)
}

func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}
