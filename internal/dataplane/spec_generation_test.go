package dataplane

import (
	"context"
	"errors"
	"testing"
)

// A manager deciding on an older generation of the rollout's spec than one
// acted on already (an old leader held up while a person edited the
// rollout) is refused: its promotion, halt, freeze and cohort marks. The
// newest generation, and an object created again under the same name (a
// new UID, generations from 1), are not.
func TestStaleSpecGenerationIsRefused(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 2); err != nil {
		t.Fatal(err)
	}
	st, err := s.FreezeCohortAs(ctx, CohortKey{Rollout: "ns/r", Cohort: "c"}, SpecRef{UID: "uid-1", Generation: 1}, 0, Selector{Tenants: []string{"t"}}, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SpecSeen(ctx, "ns/r", "uid-1", 3); err != nil {
		t.Fatal(err)
	}
	old := SpecRef{UID: "uid-1", Generation: 2}
	if err := s.SpecSeen(ctx, "ns/r", old.UID, old.Generation); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("SpecSeen of an older generation: %v, want ErrStaleSpec", err)
	}
	ch := StageChange{Key: CohortKey{Rollout: "ns/r", Cohort: "c"}, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1,
		Reason: "DualWriteStarted", At: at, SpecUID: old.UID, SpecGeneration: old.Generation}
	if _, err := s.SetStage(ctx, ch); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("SetStage on an older generation: %v, want ErrStaleSpec", err)
	}
	if err := s.HaltAttempt(ctx, ch); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("HaltAttempt on an older generation: %v, want ErrStaleSpec", err)
	}
	if _, err := s.FreezeCohortAs(ctx, CohortKey{Rollout: "ns/r", Cohort: "d"}, old, 1, Selector{Tenants: []string{"u"}}, at); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("FreezeCohortAs on an older generation: %v, want ErrStaleSpec", err)
	}
	if _, _, err := s.MarkCohortsInSpec(ctx, "ns/r", old, []string{}, at); !errors.Is(err, ErrStaleSpec) {
		t.Fatalf("MarkCohortsInSpec on an older generation: %v, want ErrStaleSpec", err)
	}
	ch.SpecGeneration = 3
	if _, err := s.SetStage(ctx, ch); err != nil {
		t.Fatalf("SetStage on the newest generation: %v", err)
	}
	// The object deleted (Retain, its release recorded) and created
	// again: generations restart. Another object is refused until then.
	if err := s.SpecSeen(ctx, "ns/r", "uid-2", 1); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("SpecSeen of another object while uid-1 manages the rollout: %v, want ErrRolloutClaimed", err)
	}
	if err := s.ReleaseRollout(ctx, "ns/r", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-2", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SpecSeen(ctx, "ns/r", "uid-2", 1); err != nil {
		t.Fatalf("SpecSeen of a new object: %v", err)
	}
}
