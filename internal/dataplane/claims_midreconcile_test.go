package dataplane

import (
	"context"
	"testing"
	"time"
)

// TestAnObjectTakenOverMidReconcileDecidesNothing: object uid-a's
// reconcile registered the rollout (claim held), then a person had
// uid-b take it over (take-over-from) and uid-b's reconcile recorded its
// spec. uid-a's reconcile goes on: its SpecSeen and its decisions must be
// refused, since the rollout is no longer its to manage. Before, the claim
// was checked at RegisterRollout only: uid-a's SpecSeen recorded uid-a as
// the spec acted on again (making uid-b's next decisions stale) and its
// decision (here a cohort frozen from uid-a's spec) was written. SpecSeen
// now refuses another object's, and a take-over makes the spec acted on
// uid-b's.
func TestAnObjectTakenOverMidReconcileDecidesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	const key = "prod/demo"
	if err := s.RegisterRollout(ctx, key, "uid-a", 2); err != nil {
		t.Fatal(err)
	}
	// uid-a's reconcile is past its RegisterRollout now.
	if err := s.TakeOverRollout(ctx, key, "uid-a", "uid-b"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, key, "uid-b", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SpecSeen(ctx, key, "uid-b", 1); err != nil {
		t.Fatal(err)
	}
	// uid-a's reconcile goes on.
	seenErr := s.SpecSeen(ctx, key, "uid-a", 7)
	_, freezeErr := s.FreezeCohortAs(ctx, CohortKey{Rollout: key, Cohort: "staging-only"}, SpecRef{UID: "uid-a", Generation: 7}, 0,
		Selector{Tenants: []string{"some-school"}}, time.Now())
	states, err := s.Cohorts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if seenErr == nil || freezeErr == nil {
		t.Fatalf("the object that lost the rollout still acts on it: SpecSeen %v, FreezeCohortAs %v; cohorts now %v", seenErr, freezeErr, keys(states))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
