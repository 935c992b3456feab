package yjs

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error returned for input that is not a
// well-formed Yjs v1 update, state vector, delete set or lib0 value.
var ErrMalformed = errors.New("yjs: malformed input")

// ErrPending is wrapped by errors reporting that a document still holds
// structs or deletions whose dependencies have not arrived.
var ErrPending = errors.New("yjs: operations pending")

// ErrIndex is returned by Text operations given an index or length outside
// the text.
var ErrIndex = errors.New("yjs: index out of range")

// ErrGCEnabled is returned by evidence helpers that need the deleted content
// garbage collection would have removed.
var ErrGCEnabled = errors.New("yjs: operation needs a document with garbage collection disabled")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
