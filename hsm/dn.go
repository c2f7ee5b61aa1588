package hsm

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

var dnTypes = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "SERIALNUMBER": {2, 5, 4, 5}, "C": {2, 5, 4, 6}, "L": {2, 5, 4, 7},
	"ST": {2, 5, 4, 8}, "STREET": {2, 5, 4, 9}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11},
	"ORGANIZATIONIDENTIFIER": {2, 5, 4, 97}, "DC": {0, 9, 2342, 19200300, 100, 1, 25},
	"UID": {0, 9, 2342, 19200300, 100, 1, 1},
}

// ParseDN parses an RFC 4514 distinguished name ("CN=Example Root,O=Example,C=DE") into the RDN
// sequence it encodes (RFC 4514 writes the last RDN first). Multi-valued RDNs (+), escapes (\, and
// \2C) and dotted OIDs as attribute types are accepted; hex-encoded BER values (#…) are not.
func ParseDN(s string) (pkix.RDNSequence, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("hsm: empty distinguished name")
	}
	var seq pkix.RDNSequence
	var rdn pkix.RelativeDistinguishedNameSET
	var cur strings.Builder
	var typ string
	inValue := false
	flush := func(end byte) error {
		if !inValue {
			return fmt.Errorf("hsm: DN %q: attribute without =", s)
		}
		oid, err := dnType(typ)
		if err != nil {
			return fmt.Errorf("hsm: DN %q: %w", s, err)
		}
		v := cur.String()
		if v == "" {
			return fmt.Errorf("hsm: DN %q: empty value for %s", s, typ)
		}
		rdn = append(rdn, pkix.AttributeTypeAndValue{Type: oid, Value: v})
		if end != '+' {
			seq = append(pkix.RDNSequence{rdn}, seq...)
			rdn = nil
		}
		cur.Reset()
		inValue = false
		return nil
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("hsm: DN %q: trailing backslash", s)
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b, _ := hex.DecodeString(s[i+1 : i+3])
				cur.Write(b)
				i += 2
			} else {
				cur.WriteByte(s[i+1])
				i++
			}
		case ch == '=' && !inValue:
			typ = strings.TrimSpace(cur.String())
			cur.Reset()
			inValue = true
			for i+1 < len(s) && s[i+1] == ' ' {
				i++
			}
		case (ch == ',' || ch == '+') && inValue:
			if err := flush(ch); err != nil {
				return nil, err
			}
			for i+1 < len(s) && s[i+1] == ' ' {
				i++
			}
		default:
			cur.WriteByte(ch)
		}
	}
	if err := flush(0); err != nil {
		return nil, err
	}
	return seq, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func dnType(t string) (asn1.ObjectIdentifier, error) {
	if oid, ok := dnTypes[strings.ToUpper(t)]; ok {
		return oid, nil
	}
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(t, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("unknown attribute type %q", t)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("unknown attribute type %q", t)
	}
	return oid, nil
}
