package sim

import "encoding/binary"

const insReadConfig = 0x1D

// capPIV is the PIV bit of the management applet's capability masks: the only application the
// virtual card offers.
const capPIV = 0x0010

// mgmt executes a command for the YubiKey management applet, of which only READ CONFIG is emulated.
func (c *Card) mgmt(cmd command) ([]byte, uint16) {
	if cmd.ins != insReadConfig {
		return nil, swINSNotSupported
	}
	if cmd.p1 != 0 || cmd.p2 != 0 {
		return nil, swWrongP1P2
	}
	v := c.st.Profile.firmware()
	var tlvs []byte
	tlvs = appendTLV(tlvs, 0x01, binary.BigEndian.AppendUint16(nil, capPIV)) // USB supported
	tlvs = appendTLV(tlvs, 0x02, binary.BigEndian.AppendUint32(nil, c.st.Serial))
	tlvs = appendTLV(tlvs, 0x03, binary.BigEndian.AppendUint16(nil, capPIV)) // USB enabled
	tlvs = appendTLV(tlvs, 0x04, []byte{formFactor})
	tlvs = appendTLV(tlvs, 0x05, v[:])
	tlvs = appendTLV(tlvs, 0x0A, []byte{0x00}) // configuration not locked
	return append([]byte{byte(len(tlvs))}, tlvs...), swOK
}
