package dataplane

import (
	"context"
	"errors"
	"testing"
)

// A rollout deleted (Retain) and created again under the same name: a
// decision made on the deleted object, by a manager held up past the new
// object's first SpecSeen, is refused, whatever its generation (the new
// object's restart from 1). The new object's own decisions are not.
func TestDecisionOnADeletedObjectIsRefused(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 2); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{Rollout: "ns/r", Cohort: "c"}
	st, err := s.FreezeCohortAs(ctx, key, SpecRef{UID: "uid-1", Generation: 5}, 0, Selector{Tenants: []string{"t"}}, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SpecSeen(ctx, "ns/r", "uid-1", 5); err != nil {
		t.Fatal(err)
	}
	// uid-1 deleted with Retain (its release recorded), uid-2 created.
	if err := s.ReleaseRollout(ctx, "ns/r", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-2", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SpecSeen(ctx, "ns/r", "uid-2", 1); err != nil {
		t.Fatalf("SpecSeen of the new object: %v", err)
	}
	old := StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1,
		Reason: "DualWriteStarted", At: at, SpecUID: "uid-1", SpecGeneration: 5}
	if _, err := s.SetStage(ctx, old); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("SetStage decided on the deleted object: %v, want ErrStaleSpec", err)
	}
	if err := s.HaltAttempt(ctx, old); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("HaltAttempt decided on the deleted object: %v, want ErrStaleSpec", err)
	}
	if _, _, err := s.MarkCohortsInSpec(ctx, "ns/r", SpecRef{UID: "uid-1", Generation: 5}, []string{}, at); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("MarkCohortsInSpec decided on the deleted object: %v, want ErrStaleSpec", err)
	}
	if _, err := s.FreezeCohortAs(ctx, CohortKey{Rollout: "ns/r", Cohort: "d"}, SpecRef{UID: "uid-1", Generation: 5}, 1, Selector{Tenants: []string{"u"}}, at); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("FreezeCohortAs decided on the deleted object: %v, want ErrStaleSpec", err)
	}
	now := old
	now.SpecUID, now.SpecGeneration = "uid-2", 1
	if _, err := s.SetStage(ctx, now); err != nil {
		t.Fatalf("SetStage of the new object: %v", err)
	}
}
