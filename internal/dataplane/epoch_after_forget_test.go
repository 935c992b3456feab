package dataplane

import (
	"context"
	"testing"
)

// TestARolloutCreatedAgainAfterItWasForgottenHandsOutNewEpochs: a
// RollbackToLegacy deletion forgets a rollout; created again, its cohorts
// start at epochs above every epoch the database handed out before. Before,
// its epochs started again at 1: the old attempt's divergences, recorded
// under (shard, cohort, epoch), counted against the new attempt's gate,
// which rolled the cohort back for mismatches of the deleted rollout, and
// an epoch was handed out twice.
func TestARolloutCreatedAgainAfterItWasForgottenHandsOutNewEpochs(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "pilot"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "Test", At: at}))
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageLegacy, Attempt: 1,
		Outcome: OutcomeRolledBack, Reason: "Test", At: at}))
	old := st.Epoch
	if err := s.ForgetRollout(ctx, "ns/r", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-2", 1); err != nil {
		t.Fatal(err)
	}
	again := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	if again.Epoch <= old {
		t.Fatalf("the rollout created again froze its cohort at epoch %d; the forgotten one had reached %d", again.Epoch, old)
	}
}
