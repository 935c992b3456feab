package store

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestLegacyPeriodWriteExcusedAfterTheRolloutWasCreatedAgain:
// TestSaveRepairingALegacyPeriodWriteIsNotTheAttemptsMismatch, on a
// database where a rollout of the same name, with a cohort of the same
// name, ran two attempts and was then forgotten (a RollbackToLegacy
// deletion) and created again. stage_changes outlives the forget, at lower
// epochs than the new rollout's: the excuse rule reads only the stage
// changes since the cohort was frozen. Before, "the start of the current
// attempt" was the forgotten rollout's, no Legacy-period write was excused
// and the divergence counted against the new attempt 2.
func TestLegacyPeriodWriteExcusedAfterTheRolloutWasCreatedAgain(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx := t.Context()
	{ // the forgotten rollout
		dp, pool, err := dataplane.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := dp.RegisterRollout(ctx, rollout, "uid-old", 1); err != nil {
			t.Fatal(err)
		}
		key := dataplane.CohortKey{Rollout: rollout, Cohort: "c"}
		st, err := dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{"t"}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []struct {
			stage   string
			attempt int32
			outcome string
		}{
			{dataplane.StageDualWrite, 1, ""},
			{dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack},
			{dataplane.StageDualWrite, 2, ""},
			{dataplane.StageLegacy, 2, dataplane.OutcomeRolledBack},
		} {
			if st, err = dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: ch.stage, Attempt: ch.attempt,
				Outcome: ch.outcome, Reason: "test", At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := dp.ForgetRollout(ctx, rollout, "uid-old"); err != nil {
			t.Fatal(err)
		}
		pool.Close()
	}
	e := setupOn(t, dsn)
	st := e.cohort("c", dataplane.StageVerify, "t")
	rev := e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "first draft"}).Revision
	st = e.stageAttempt("c", st.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	legacyEpoch := st.Epoch
	if _, err := e.pool.Exec(ctx, `UPDATE documents SET content = 'first draft, edited in the legacy app', revision = revision + 1 WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	st = e.stageAttempt("c", st.Epoch, dataplane.StageDualWrite, 2, "")
	r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: rev + 1, Content: "first draft, edited in the legacy app, and by the student"})
	if r.Outcome != OutcomeSaved {
		t.Fatalf("save: %s", r.Outcome)
	}
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1`, st.Epoch); got != 0 {
		t.Errorf("%d divergences of d counted under the new rollout's attempt 2 (epoch %d), for a write made at Legacy (epoch %d) between its attempts", got, st.Epoch, legacyEpoch)
	}
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1 AND resolved_at IS NOT NULL`, legacyEpoch); got != 1 {
		t.Errorf("%d resolved divergences of d under the Legacy epoch %d, want 1", got, legacyEpoch)
	}
}
