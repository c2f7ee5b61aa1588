// Package wrap holds the software side of CA key wrapping: RFC 5649 AES key wrap with padding (through
// tink-go's KWP), key check values, public key fingerprints, and the wrapped-key file ca-key.wrapped.
//
// The wrapped-key file carries no MAC under the KEK: its integrity is the unkeyed SHA-256 of the whole
// file, which the signed manifest covers. The KEK is only ever used for the wrap itself.
package wrap
