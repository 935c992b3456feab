package dataplane

import (
	"context"
	"errors"
	"testing"
)

// TestARolloutIsManagedByOneObjectAtATime: two PersistenceRollout objects
// of one namespace and name given one database (another cluster's operator
// handed production's Secret) each registered the rollout and recorded
// itself as the object its syncers serve, in turn at every reconcile, so
// each acted on its own spec and the other's restarted syncers refused
// their shards. The first to register manages the rollout now; the other
// is refused, saying which object has it, and records nothing, until the
// first lets it go (a Retain deletion recorded) or a person has it taken
// over.
func TestARolloutIsManagedByOneObjectAtATime(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-prod", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRolloutObject(ctx, "prod/demo", "uid-prod"); err != nil {
		t.Fatal(err)
	}
	served := func() string {
		t.Helper()
		_, uid, err := RegisteredAs(ctx, pool, "prod/demo")
		if err != nil {
			t.Fatal(err)
		}
		return uid
	}

	err := s.RegisterRollout(ctx, "prod/demo", "uid-staging", 2)
	var claimed *ClaimedError
	if !errors.As(err, &claimed) || !errors.Is(err, ErrRolloutClaimed) || claimed.UID != "uid-prod" {
		t.Fatalf("a second object registered the rollout: %v, want a ClaimedError naming uid-prod", err)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-staging", 3); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("a second object with another shard count: %v, want ErrRolloutClaimed first", err)
	}
	if err := s.RecordRolloutObject(ctx, "prod/demo", "uid-staging"); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("a second object recorded itself as the one the syncers serve: %v", err)
	}
	if got := served(); got != "uid-prod" {
		t.Fatalf("the syncers are told to serve %q, want uid-prod", got)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-prod", 2); err != nil {
		t.Fatalf("the managing object registering again: %v", err)
	}

	// A take-over must name the object that manages it.
	if err := s.TakeOverRollout(ctx, "prod/demo", "uid-someone", "uid-staging"); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("a take-over naming another object than the manager: %v", err)
	}
	// A release by another object than the manager changes nothing.
	if err := s.ReleaseRollout(ctx, "prod/demo", "uid-staging"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-staging", 2); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("registered after a release by an object that did not manage it: %v", err)
	}

	// The manager deleted with Retain, its deletion recorded: the next
	// object takes over when it registers.
	if err := s.ReleaseRollout(ctx, "prod/demo", "uid-prod"); err != nil {
		t.Fatal(err)
	}
	if c, found, err := s.RolloutClaim(ctx, "prod/demo"); err != nil || !found || c.UID != "uid-prod" || !c.Released {
		t.Fatalf("claim after the release: %+v found=%v err=%v", c, found, err)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-next", 2); err != nil {
		t.Fatalf("the next object after a recorded release: %v", err)
	}
	if err := s.RecordRolloutObject(ctx, "prod/demo", "uid-next"); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "uid-next" {
		t.Fatalf("the syncers are told to serve %q, want uid-next", got)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-prod", 2); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("the released object registered again: %v", err)
	}

	// Taken over on a person's word: the object that had it is refused.
	if err := s.TakeOverRollout(ctx, "prod/demo", "uid-next", "uid-restored"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-restored", 2); err != nil {
		t.Fatalf("the object that took over: %v", err)
	}
	if err := s.RegisterRollout(ctx, "prod/demo", "uid-next", 2); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("the object taken over from registered again: %v", err)
	}
	if err := s.RecordRolloutObject(ctx, "prod/demo", "uid-next"); !errors.Is(err, ErrRolloutClaimed) {
		t.Fatalf("the object taken over from pointed the syncers at itself: %v", err)
	}
}

// TestRegistrationWithoutAnObjectClaimsNothing: tools and tests register
// without an object (uid ""); they neither claim the rollout nor are
// refused by a claim, and the first object to register claims it.
func TestRegistrationWithoutAnObjectClaimsNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.RolloutClaim(ctx, "ns/r"); err != nil || found {
		t.Fatalf("a registration without an object claimed the rollout: found=%v err=%v", found, err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatalf("a registration without an object after a claim: %v", err)
	}
	if c, _, _ := s.RolloutClaim(ctx, "ns/r"); c.UID != "uid-1" {
		t.Fatalf("claim: %+v, want uid-1", c)
	}
}
