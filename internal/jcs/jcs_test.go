package jcs

import (
	"errors"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b":1, "a":[true,false,null]}`, `{"a":[true,false,null],"b":1}`},
		{`"\u00e9\u0007\n/"`, "\"é\\u0007\\n/\""},
		{`-0`, `0`},
		{`9007199254740991`, `9007199254740991`},
		// RFC 8785 section 3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate pair, 0xD83D…)
		// sorts before U+FB33 (0xFB33) although its code point is larger.
		{`{"\ufb33":1,"😀":2,"\r":3,"1":4}`, "{\"\\r\":3,\"1\":4,\"😀\":2,\"דּ\":1}"},
	} {
		got, err := Canonicalize([]byte(tc.in))
		if err != nil {
			t.Errorf("Canonicalize(%s): %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("Canonicalize(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalizeRefusesOutsideSubset(t *testing.T) {
	for _, in := range []string{`1.5`, `1e3`, `9007199254740992`, `-9007199254740992`, `{"a":1} {}`, `{"a":`} {
		if got, err := Canonicalize([]byte(in)); err == nil {
			t.Errorf("Canonicalize(%s) = %s, want an error", in, got)
		}
	}
}

func TestUnmarshalStrict(t *testing.T) {
	type rec struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	var r rec
	if err := Unmarshal([]byte(`{"a":1,"b":"x"}`+"\n"), &r); err != nil || r.A != 1 || r.B != "x" {
		t.Fatalf("canonical input: %v %+v", err, r)
	}
	for _, in := range []string{
		`{"b":"x","a":1}`,           // member order
		`{"a":1, "b":"x"}`,          // white space
		`{"a":1,"a":2,"b":"x"}`,     // duplicate key
		`{"a":1,"b":"\u0078"}`,      // needless escape
		"{\"a\":1,\"b\":\"x\"}\n\n", // two newlines
		`{"A":1,"b":"x"}`,           // member name in another case
	} {
		if err := Unmarshal([]byte(in), &r); !errors.Is(err, ErrNotCanonical) {
			t.Errorf("Unmarshal(%q) = %v, want ErrNotCanonical", in, err)
		}
	}
	var blob struct {
		B []byte `json:"b"`
	}
	if err := Unmarshal([]byte(`{"b":"AB=="}`), &blob); !errors.Is(err, ErrNotCanonical) {
		t.Errorf("base64 with non-zero padding bits: %v, want ErrNotCanonical", err)
	}
	if err := Unmarshal([]byte(`{"a":1,"b":"x","c":2}`), &r); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	type rec struct {
		Z []int          `json:"z"`
		M map[string]any `json:"m"`
	}
	in := rec{Z: []int{3, 1}, M: map[string]any{"y": "é", "x": nil}}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"m":{"x":null,"y":"é"},"z":[3,1]}` {
		t.Fatalf("Marshal = %s", b)
	}
	var out rec
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
}
