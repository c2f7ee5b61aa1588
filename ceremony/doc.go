// Package ceremony holds custos's flows as plain Go functions: each reads its inputs (never modifying
// them), checks its pins before anything else, and writes a new record directory atomically. The
// command line front end (cmd/custos) only parses flags, prompts and prints.
package ceremony
