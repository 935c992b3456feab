package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// countingStore answers SchoolsOutsideCohorts and counts the calls (the
// rest of the Store is not used).
type countingStore struct {
	dataplane.Store
	calls int
	n     int64
}

func (s *countingStore) SchoolsOutsideCohorts(context.Context, int) (int64, []string, error) {
	s.calls++
	return s.n, []string{"a"}, nil
}

// TestSchoolsOutsideAreCountedAtMostEveryOutsideEvery: the anti-join over
// every school runs at most every OutsideEvery per rollout; with zero it
// runs every reconcile.
func TestSchoolsOutsideAreCountedAtMostEveryOutsideEvery(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{n: 3}
	r := &PersistenceRolloutReconciler{OutsideEvery: time.Hour}
	for range 3 {
		if n, _, err := r.schoolsOutside(ctx, "ns/a", st); err != nil || n != 3 {
			t.Fatalf("%d %v", n, err)
		}
	}
	if st.calls != 1 {
		t.Fatalf("counted %d times within OutsideEvery, want 1", st.calls)
	}
	if _, _, err := r.schoolsOutside(ctx, "ns/b", st); err != nil || st.calls != 2 {
		t.Fatalf("another rollout reuses the first's count: %d calls, %v", st.calls, err)
	}
	r0 := &PersistenceRolloutReconciler{}
	for range 2 {
		_, _, _ = r0.schoolsOutside(ctx, "ns/a", st)
	}
	if st.calls != 4 {
		t.Fatalf("with OutsideEvery 0: %d calls, want 4", st.calls)
	}
}
