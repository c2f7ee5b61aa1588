package hsm

import "testing"

// Software tokens are recognised by library, manufacturer, model or module file, never by label; a
// rehearsal refuses everything else.
func TestSoftwareKind(t *testing.T) {
	cases := []struct {
		path string
		r    TokenRecord
		want string
	}{
		{"/usr/lib/softhsm/libsofthsm2.so", TokenRecord{Label: "Luna K7", LibraryManufacturer: "SoftHSM", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}, "softhsm2"},
		{"/opt/vendor/libluna.so", TokenRecord{Label: "CA", LibraryManufacturer: "SoftHSM", Manufacturer: "Thales", Model: "K7"}, "softhsm2"},
		{"/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0", TokenRecord{Label: "HSM", LibraryManufacturer: "IBM", Manufacturer: "IBM Corp.", Model: "IBM SoftTok"}, "opencryptoki-soft"},
		{"/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0", TokenRecord{Label: "ep11", LibraryManufacturer: "IBM", Manufacturer: "IBM", Model: "IBM EP11Tok"}, ""},
		{"/usr/safenet/lunaclient/lib/libCryptoki2_64.so", TokenRecord{Label: "SoftHSM test", LibraryManufacturer: "SafeNet", Manufacturer: "Safenet, Inc.", Model: "Luna K7"}, ""},
	}
	for _, c := range cases {
		if got := softwareKind(c.path, c.r); got != c.want {
			t.Errorf("%s %+v: %q, want %q", c.path, c.r, got, c.want)
		}
	}
}
