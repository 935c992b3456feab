package store

import (
	"context"
	"errors"
	"testing"
)

// TestStoppingIsNotAFence: a syncer that stops (its context cancelled)
// while its heartbeat checks the shard lock is shutting down, not fenced.
// The ping with the cancelled context used to fence the engine, so a
// normal SIGTERM logged "fenced: stopping writes" at ERROR and the syncer
// exited with an error, which misleads whoever reads the YawpSyncerDown
// runbook.
func TestStoppingIsNotAFence(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.eng.CheckLock(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("CheckLock with a cancelled context: %v, want context.Canceled", err)
	}
	select {
	case <-e.eng.Fenced():
		t.Fatalf("a stopping caller fenced the engine: %s", e.eng.FenceReason())
	default:
	}
	if err := e.eng.CheckLock(t.Context()); err != nil {
		t.Fatalf("the lock is held: %v", err)
	}
}
