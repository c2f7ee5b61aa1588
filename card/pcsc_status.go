package card

// Reader presence through PC/SC directly (SCardGetStatusChange), for commands that wait for cards:
// connecting to find out is what piv-go's Open does, and Open leaks its exclusive handle when the card
// goes away between connecting and selecting the applet, which locks the reader for the rest of the
// process.

// #cgo linux pkg-config: libpcsclite
// #include <stdlib.h>
// #include <string.h>
// #include <winscard.h>
//
// static LONG custos_reader_state(const char *reader, DWORD *state) {
// 	SCARDCONTEXT ctx;
// 	LONG rc = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
// 	if (rc != SCARD_S_SUCCESS) return rc;
// 	SCARD_READERSTATE rs;
// 	memset(&rs, 0, sizeof rs);
// 	rs.szReader = reader;
// 	rs.dwCurrentState = SCARD_STATE_UNAWARE;
// 	rc = SCardGetStatusChange(ctx, 0, &rs, 1);
// 	SCardReleaseContext(ctx);
// 	*state = rs.dwEventState;
// 	return rc;
// }
import "C"

import (
	"fmt"
	"unsafe"
)

// cardPresent reports whether pcscd sees a card in the reader that answered its reset. It never
// connects to the card.
func cardPresent(reader string) (bool, error) {
	cs := C.CString(reader)
	defer C.free(unsafe.Pointer(cs))
	var state C.DWORD
	if rc := C.custos_reader_state(cs, &state); rc != C.SCARD_S_SUCCESS {
		return false, fmt.Errorf("card: the state of reader %q: PC/SC error 0x%08x", reader, uint32(rc))
	}
	return state&C.SCARD_STATE_PRESENT != 0 && state&C.SCARD_STATE_MUTE == 0, nil
}
