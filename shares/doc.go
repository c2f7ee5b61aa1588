// Package shares holds the secret-sharing side of custos: Shamir split and combine over GF(2^8) with the
// validation of DESIGN.md invariant 3, and the formats that carry shares: share envelopes, commitments,
// check tokens, rosters and the signed manifest with its manifest key. It encrypts nothing itself; the
// ceremony package age-encrypts envelopes and tokens to custodians. Every format is specified in
// docs/format.md.
package shares
