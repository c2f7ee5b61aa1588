package hsm

import (
	"fmt"
	"strings"
)

// Text renders the probe result for a terminal: the token, the mechanisms, each check with its
// evidence, and the conclusions.
func (r *ProbeResult) Text() string {
	var b strings.Builder
	t := r.Token
	fmt.Fprintf(&b, "token     %q serial %s\n", t.Label, t.Serial)
	fmt.Fprintf(&b, "          %s %s, hardware %s, firmware %s\n", t.Manufacturer, t.Model, t.HardwareVersion, t.FirmwareVersion)
	fmt.Fprintf(&b, "library   %s %s %s\n", t.LibraryManufacturer, t.LibraryDescription, t.LibraryVersion)
	fmt.Fprintf(&b, "module    %s\n          sha256 %s\n", t.Module, t.ModuleSHA256)
	if t.Software != "" {
		fmt.Fprintf(&b, "software  %s (rehearsal only)\n", t.Software)
	}
	b.WriteString("\nmechanisms\n")
	for _, m := range r.Mechanisms {
		if !m.Listed {
			fmt.Fprintf(&b, "  %-48s not listed\n", m.Name)
			continue
		}
		size := ""
		if m.MaxSize != 0 {
			size = fmt.Sprintf(" (key %d-%d)", m.MinSize, m.MaxSize)
		}
		fmt.Fprintf(&b, "  %-48s %s%s\n", m.Name, strings.Join(m.Flags, ","), size)
	}
	if r.Active {
		b.WriteString("\nknown-answer tests (session objects only, all destroyed)\n")
		for _, c := range r.Checks {
			res := "FAIL"
			if c.OK {
				res = "ok"
			}
			name := c.Name
			if c.Mechanism != "" {
				name += " [" + c.Mechanism + "]"
			}
			fmt.Fprintf(&b, "  %-4s %s\n       %s\n", res, name, c.Evidence)
		}
		b.WriteString("\nfindings\n")
		kwp := "none"
		if r.KWPMechanism != 0 {
			kwp = MechName(r.KWPMechanism)
		}
		fmt.Fprintf(&b, "  RFC 5649 unwrap mechanism   %s\n", kwp)
		if r.KWPMechanism != 0 {
			fmt.Fprintf(&b, "  wrap equals tink-go         %v\n", r.KWPWrapExact)
		}
		fmt.Fprintf(&b, "  RSA-OAEP hashes             %s\n", listOrNone(r.OAEPHashes))
		fmt.Fprintf(&b, "  CKM_RSA_AES_KEY_WRAP hashes %s\n", listOrNone(r.RSAAESHashes))
		fmt.Fprintf(&b, "  C_CreateObject secret key   %v\n", r.CreateSecret)
		fmt.Fprintf(&b, "  AES-CBC-PAD unwrap          %v\n", r.CBCPadUnwrap)
		fmt.Fprintf(&b, "  wrap extractable private    %v\n", r.WrapExtractablePrivate)
		fmt.Fprintf(&b, "  unwrap keeps attributes     %v\n", r.UnwrapKeepsAttributes)
	}
	how := "confirmed"
	if !r.Active {
		how = "advertised only (run with --active to confirm)"
	}
	fmt.Fprintf(&b, "\nKEK transports, preferred first (%s): %s\n", how, listOrNone(r.Transports))
	fmt.Fprintf(&b, "CA unwrap methods, preferred first (%s): %s\n", how, listOrNone(r.CAUnwraps))
	gen := "no"
	if len(r.GenerationAlgs) > 0 {
		gen = "yes: " + strings.Join(r.GenerationAlgs, ", ")
	}
	fmt.Fprintf(&b, "generation HSM: %s\n", gen)
	return b.String()
}
