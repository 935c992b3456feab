package dataplane

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestOneDatabaseServesOneRolloutRegisteredAtOnce: RegisterRollout checked
// that no other rollout was recorded, then recorded its own, under a lock
// of its own name only. Two rollouts naming one database and registered at
// once (reconciled concurrently: a manifest copied without changing its
// Secret) each saw none and were both recorded, and their gateways placed
// documents in one database by two shard counts.
func TestOneDatabaseServesOneRolloutRegisteredAtOnce(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	for i := range 100 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, name := range []string{"ns/a", "ns/b"} {
			wg.Go(func() {
				<-start
				errs[j] = s.RegisterRollout(ctx, name, "", 2+j)
			})
		}
		close(start)
		wg.Wait()
		registered := 0
		for _, err := range errs {
			switch {
			case err == nil:
				registered++
			case !errors.Is(err, ErrDatabaseInUse):
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if registered != 1 {
			t.Fatalf("round %d: %d rollouts registered on one database, want 1 (errors: %v)", i, registered, errs)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM rollouts`); err != nil {
			t.Fatal(err)
		}
	}
}
