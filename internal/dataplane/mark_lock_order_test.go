package dataplane

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/yawp/persistence-operator/internal/placement"
)

// TestMarkCohortsKeepsTheSavesLockOrder: a save holds one cohort's row FOR
// KEY SHARE (a known school's) and then locks another's (a school seen for the
// first time, placed by joinFrozenBucketCohorts and locked in
// SaveStages.Finish) while MarkCohortsInSpec changes both rows. Updating
// them in scan order without the rollout's row first (the lock order of
// FreezeCohort, SetStage and saves: rollouts, tenants, cohorts) deadlocked
// with such a save when the scan met the second row first.
func TestMarkCohortsKeepsTheSavesLockOrder(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	must0 := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must0(s.RegisterRollout(ctx, "ns/r", "", 1))
	lo := Selector{Buckets: &BucketRange{From: 0, To: 50}}
	hi := Selector{Buckets: &BucketRange{From: 50, To: placement.Buckets}}
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "a"}, 0, lo, at))
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "b"}, 1, hi, at))
	known := schoolIn("known", 0, 50)
	firstSave(t, pool, "ns/r", known)
	// Cohort a moves on (its row gets a new version, after b's).
	st := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))["a"]
	must[CohortState](t)(s.SetStage(ctx, StageChange{Key: CohortKey{"ns/r", "a"}, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, At: at}))
	var order []string
	rows, err := pool.Query(ctx, `SELECT cohort FROM rollout_cohorts WHERE rollout = 'ns/r' ORDER BY ctid`)
	must0(err)
	for rows.Next() {
		var c string
		must0(rows.Scan(&c))
		order = append(order, c)
	}
	rows.Close()
	t.Logf("physical order: %v", order)
	// As autovacuum does once the rows have changed often enough (every
	// stage change and soak restart updates them).
	_, err = pool.Exec(ctx, `ANALYZE rollout_cohorts`)
	must0(err)
	var plan string
	must0(pool.QueryRow(ctx, `EXPLAIN UPDATE rollout_cohorts SET removed_at = NULL WHERE rollout = 'ns/r' AND (cohort = ANY('{c}'::text[])) = (removed_at IS NOT NULL)`).Scan(&plan))
	t.Logf("plan: %s", plan)

	// A save group: the known school's cohort a is locked FOR SHARE first
	// (the batch), ...
	tx, err := pool.Begin(ctx)
	must0(err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = LockSaveStages(ctx, tx, "ns/r", []string{known})
	must0(err)

	// ... meanwhile the controller sees a spec whose cohorts are all
	// renamed (or removed) ...
	markErr := make(chan error, 1)
	go func() {
		_, _, err := s.MarkCohortsInSpec(ctx, "ns/r", SpecRef{}, []string{"c"}, at)
		markErr <- err
	}()
	// Since the saves lock the stage rows FOR KEY SHARE, the mark (a
	// NO KEY UPDATE) does not wait for them at all; before, it waited,
	// and had to keep the saves' lock order.
	var mErr error
	marked := false
	deadline := time.Now().Add(10 * time.Second)
	for !marked {
		select {
		case mErr = <-markErr:
			marked = true
			continue
		default:
		}
		var n int
		must0(pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n))
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mark neither finished nor waited")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// ... and the group's school seen for the first time is placed in b
	// and its cohort locked (SaveStages.Finish).
	fresh := schoolIn("fresh", 50, placement.Buckets)
	_, saveErr := LockSaveStages(ctx, tx, "ns/r", []string{fresh})
	_ = tx.Rollback(ctx)
	if !marked {
		mErr = <-markErr
	}
	for _, err := range []error{saveErr, mErr} {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
			t.Errorf("deadlock between a save and MarkCohortsInSpec: save: %v; mark: %v", saveErr, mErr)
		}
	}
	if saveErr != nil || mErr != nil {
		t.Logf("save: %v; mark: %v", saveErr, mErr)
	}
}
