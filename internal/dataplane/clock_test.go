package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pgNow reads PostgreSQL's clock.
func pgNow(t *testing.T, pool *pgxpool.Pool) time.Time {
	t.Helper()
	var now time.Time
	if err := pool.QueryRow(context.Background(), `SELECT now()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// TestReportsAreStampedByTheDataPlaneClock: a syncer whose node clock runs
// 2 hours behind reports counts taken 30 s before its report. The report
// is stamped by PostgreSQL's clock, which the manager ages it by (Store.Now),
// and the counts are 30 s older than it. Before, the rows carried the
// syncer's clock, and the manager found the report 2 hours old.
func TestReportsAreStampedByTheDataPlaneClock(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	st := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "a"}, 0, Selector{Tenants: []string{"s1"}}, at))
	syncerNow := time.Now().Add(-2 * time.Hour)
	before := pgNow(t, pool)
	if err := s.ReportShard(ctx, ShardReport{Rollout: "ns/r", Shard: 0, ObservedEpoch: st.Epoch, ReportedAt: syncerNow,
		Cohorts: []CohortReport{{Cohort: "a", Epoch: st.Epoch, Documents: 1, ReportedAt: syncerNow.Add(-30 * time.Second)}}}); err != nil {
		t.Fatal(err)
	}
	after := pgNow(t, pool)
	got := must[[]ShardReport](t)(s.ShardReports(ctx, "ns/r"))
	if len(got) != 1 || len(got[0].Cohorts) != 1 {
		t.Fatalf("reports = %+v", got)
	}
	if r := got[0].ReportedAt; r.Before(before) || r.After(after) {
		t.Fatalf("report stamped %s, want by the data plane's clock, in [%s, %s]", r, before, after)
	}
	if age := got[0].ReportedAt.Sub(got[0].Cohorts[0].ReportedAt); age != 30*time.Second {
		t.Fatalf("counts stamped %s before their report, want 30s", age)
	}
}

// TestSoakStartsByTheDataPlaneClock: a manager whose node clock runs an
// hour ahead moves a cohort. Its soak starts by PostgreSQL's clock, which
// the manager times it by (Store.Now); the manager's time is kept for the audit
// trail only. Before, the soak started an hour in the data plane's future
// (and a manager with a clock behind ended soaks early).
func TestSoakStartsByTheDataPlaneClock(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "a"}
	managerNow := time.Now().Add(time.Hour)
	frozen := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, managerNow))
	before := pgNow(t, pool)
	st := must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: frozen.Epoch, Stage: StageDualWrite, Attempt: 1,
		Reason: "Test", At: managerNow}))
	after := pgNow(t, pool)
	if st.SoakStartedAt.Before(before) || st.SoakStartedAt.After(after) || !st.StageSince.Equal(st.SoakStartedAt) {
		t.Fatalf("soak started %s (stage since %s), want by the data plane's clock, in [%s, %s]", st.SoakStartedAt, st.StageSince, before, after)
	}
	if fr := frozen.SoakStartedAt; fr.After(before) {
		t.Fatalf("frozen cohort's soak started %s, after the data plane's %s", fr, before)
	}
}
