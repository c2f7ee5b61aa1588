package ceremony

import "errors"

// Errors the front end branches on.
var (
	// ErrUsage marks a missing or contradictory choice that the operator must make (exit status 2).
	ErrUsage = errors.New("usage")
	// ErrPin is returned when a value pinned by the minutes does not match.
	ErrPin = errors.New("pin mismatch")
)
