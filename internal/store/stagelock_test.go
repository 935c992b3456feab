package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestASaveHeldByARealStageChangeIsToldSo: a real SetStage waiting for a
// save in flight holds the stage lock exclusively; a save that waits for
// it past lock_timeout waits on that advisory lock, not on a row, and the
// error's context names no relation. It was told that a transaction
// outside the gateway held its document's row (a review of df524e0);
// TestAStageChangeHoldingTheStageRowsIsNamedAsSuch played the stage
// change with a bare FOR UPDATE, which takes no stage lock.
func TestASaveHeldByARealStageChangeIsToldSo(t *testing.T) {
	e := setup(t)
	e.restartWith(Config{Lanes: 1, LockTimeout: 300 * time.Millisecond})
	st := e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "essay", Tenant: "t1", User: "u", Content: "a"})

	// A save in flight (another shard's group, a backfill).
	inflight, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inflight.Rollback(context.Background()) }()
	if _, err := dataplane.LockSaveStages(t.Context(), inflight, rollout, []string{"t1"}); err != nil {
		t.Fatal(err)
	}
	// The stage change: waits for it, holding the stage lock.
	done := make(chan error, 1)
	go func() {
		_, err := e.dp.SetStage(t.Context(), dataplane.StageChange{Key: dataplane.CohortKey{Rollout: rollout, Cohort: "c"},
			ExpectEpoch: st.Epoch, Stage: dataplane.StageBackfill, Attempt: 1, Reason: "test", At: time.Now()})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	_, err = e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "essay", Tenant: "t1", User: "u", Content: "a1", BaseRevision: 1})
	t.Logf("the save held by a real stage change: %v", err)
	if err == nil {
		t.Log("the save was not held")
	} else if se := AsError(err); se.Code != CodeUnavailable || !strings.Contains(se.Message, "a stage change") {
		t.Errorf("the save held by a stage change is not named as such: %v", err)
	}
	_ = inflight.Rollback(t.Context())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestALegacyRowLockAndASoakRestartHoldUpOnlyThatDocument: a legacy
// transaction holds one document's row (TestRowLockedOutsideHoldsUpOnlyItsDocument:
// only that document's saves are to be refused). The group saving it
// waits up to lock_timeout holding the stage lock shared. The
// controller's RestartSoak of another cohort (every reconcile while
// reports are stale) queued for that lock exclusively in df524e0, and
// every other save of the rollout, in any lane, any cohort, waited behind
// it and was refused, as if a legacy transaction held its own row. The
// soak's restart does not take the stage lock now, nor wait for the save.
func TestALegacyRowLockAndASoakRestartHoldUpOnlyThatDocument(t *testing.T) {
	e := setup(t)
	e.restartWith(Config{Lanes: 4, LockTimeout: time.Second})
	e.cohort("c", dataplane.StageDualWrite, "t1")
	other := e.cohort("c2", dataplane.StageDualWrite, "t2")
	free := ""
	for i := range 100 {
		d := fmt.Sprintf("free%d", i)
		if LaneIndex(d, 4) != LaneIndex("locked", 4) {
			free = d
			break
		}
	}
	e.submit(Request{Kind: KindCreate, Doc: "locked", Tenant: "t1", User: "u", Content: "a"})
	e.submit(Request{Kind: KindCreate, Doc: free, Tenant: "t2", User: "u", Content: "b"})

	legacy, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = legacy.Rollback(context.Background()) }()
	if _, err := legacy.Exec(t.Context(), `SELECT 1 FROM documents WHERE doc_id = 'locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "locked", Tenant: "t1", User: "u", Content: "a1", BaseRevision: 1})
	}()
	time.Sleep(100 * time.Millisecond)
	go func() {
		_ = e.dp.RestartSoak(t.Context(), dataplane.CohortKey{Rollout: rollout, Cohort: "c2"}, other.Epoch, time.Now())
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	r, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: free, Tenant: "t2", User: "u", Content: "b1", BaseRevision: 1})
	t.Logf("a save of %s (lane %d, cohort c2) while 'locked' (lane %d, cohort c) is held outside: %+v %v after %s",
		free, LaneIndex(free, 4), LaneIndex("locked", 4), r, err, time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); err != nil || took > 300*time.Millisecond {
		t.Errorf("another document's save, of another cohort, in another lane, was held up by a legacy lock on 'locked': %v after %s", err, took.Round(time.Millisecond))
	}
}
