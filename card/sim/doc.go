// Package sim is a software YubiKey 5 PIV applet: it answers command APDUs exactly as a YubiKey 5
// with firmware 5.2, 5.4 or 5.7 does (PIV and Yubico extensions, attestation, the management
// applet's READ CONFIG), and keeps each card's state in one file. It is meant for tests and ceremony
// rehearsals only: every card's attestation chain ends in a fleet root that says it is virtual and
// not for production, and card files hold private keys and PINs in the clear (mode 0600).
//
// The package also runs a fleet of cards on the real PC/SC stack (vpcd.go, runtime*.go): Up starts
// a private pcscd with vsmartcard's vpcd driver in its own user, mount, network and PID namespaces,
// each card connecting to its vpcd reader slot as the card; clients reach that pcscd through
// PCSCLITE_CSOCK_NAME. docs/sim.md describes the directory, the isolation and the control socket.
//
// The reference for every APDU, status word and security-state rule is
// piv-yubikey-emulation.md in the project's shared reference documents.
package sim
