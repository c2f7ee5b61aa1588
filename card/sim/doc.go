// Package sim provides virtual YubiKey 5 cards for the real PC/SC stack. A Card is a software PIV
// applet that answers command APDUs exactly as a YubiKey 5 with firmware 5.2, 5.4 or 5.7 does (PIV
// and Yubico extensions, attestation, the management applet's READ CONFIG) and keeps its state in
// one file; the runtime (Up, Serve, Link) puts cards into the readers of a private pcscd through
// vsmartcard's vpcd driver. It is meant for tests and ceremony rehearsals only: every card's attestation chain ends in a fleet root that says it is virtual and
// not for production, and card files hold private keys and PINs in the clear (mode 0600).
//
// A card file is JSON (format 1): serial, profile, the padded PIN and PUK with their retry
// counters, the management key, the keys by slot (algorithm, policies, origin, PKCS #8), the data
// objects by tag, the touch setting and the command counters. It is replaced atomically (temporary
// file, rename) after every command; when the command changed more than the counters, the data
// and the directory are also synced before the card answers.
//
// The reference for every APDU, status word and security-state rule is
// piv-yubikey-emulation.md in the project's shared reference documents.
package sim
