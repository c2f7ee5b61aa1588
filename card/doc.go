// Package card is custos's side of the custodians' YubiKeys (PIV): the age formats for keys held on a
// card, and the age plugin mode.
//
// A custodian's decryption key is a P-256 key generated in a retired PIV slot (0x82 to 0x95). Files
// are encrypted to it in the format of age-plugin-yubikey 0.5: the recipient age1yubikey1… (a
// compressed P-256 point), the identity AGE-PLUGIN-YUBIKEY-1… (card serial, slot and key tag, see
// [Stub]) and piv-p256 stanzas (ECDH, HKDF-SHA-256 with label "piv-p256", ChaCha20-Poly1305). The
// card-backed [Identity] also opens p256tag stanzas, written to the same key's age1tag1… recipient by
// filippo.io/age/tag, through HPKE with the card doing the ECDH. [RunPlugin] serves the stock age CLI
// as age-plugin-yubikey.
//
// The card itself is reached only through [KeyExchanger] and [CardOpener]; custos never runs an
// external age plugin.
package card
