// Package hsm is custos's side of a PKCS#11 HSM: it loads a pinned module, picks and logs in to a
// token, probes what the token really implements, generates and wraps CA keys, imports a wrapped CA
// key with a KEK it transports into the token, hardens and proves the imported key, re-wraps, and
// destroys everything it created on every path. It never destroys a source key by itself: the ceremony
// decides when (DESIGN.md invariant 7).
package hsm

import "errors"

// Sentinel errors callers branch on. The CLI maps ErrAmbiguousToken to exit 2.
var (
	ErrModuleHash       = errors.New("module SHA-256 does not match --expect-module-sha256")
	ErrModulePin        = errors.New("production HSM flows need --expect-module-sha256")
	ErrTokenNotFound    = errors.New("no such token")
	ErrAmbiguousToken   = errors.New("more than one token matches")
	ErrSoftwareToken    = errors.New("software token refused outside rehearsal")
	ErrNotSoftwareToken = errors.New("rehearsal accepts only software tokens (SoftHSM, openCryptoki soft token)")
	ErrWrongPIN         = errors.New("wrong HSM PIN")
	ErrUnsupported      = errors.New("the token cannot do this")
	ErrNotProven        = errors.New("proof of possession failed")
	ErrWrongKEK         = errors.New("the KEK does not match the wrapped-key file's check value")
	ErrBadBlob          = errors.New("the wrapped CA key does not unwrap to the CA key")
)

// Step names of an import, re-wrap or trial import, in order. The ceremony's per-flow step lists embed
// them; cancellation takes effect between them.
const (
	StepProbe     = "probe"
	StepTransport = "transport"
	StepUnwrap    = "unwrap"
	StepHarden    = "harden"
	StepCopy      = "copy"
	StepProve     = "prove"
	StepDestroy   = "destroy"
)

// ImportSteps lists the steps of Import in the order they run.
var ImportSteps = []string{StepProbe, StepTransport, StepUnwrap, StepHarden, StepCopy, StepProve, StepDestroy}
