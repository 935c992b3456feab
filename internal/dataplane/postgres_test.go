package dataplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/placement"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

var at = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func newStore(t *testing.T) (*Postgres, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgharness.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Applying again is a no-op.
	if err := migrations.Up(ctx, pool); err != nil {
		t.Fatalf("second migration run: %v", err)
	}
	return NewPostgres(pool), pool
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestEpochsGrowAndStaleWritersAreFenced(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "", 3); !errors.Is(err, ErrShardsChanged) {
		t.Fatalf("re-registering with another shard count: %v, want ErrShardsChanged", err)
	}
	if err := s.RegisterRollout(ctx, "ns/other", "", 2); !errors.Is(err, ErrDatabaseInUse) {
		t.Fatalf("a second rollout on the same database: %v, want ErrDatabaseInUse", err)
	}
	a := CohortKey{Rollout: "ns/r", Cohort: "a"}
	b := CohortKey{Rollout: "ns/r", Cohort: "b"}
	sa := must[CohortState](t)(s.FreezeCohort(ctx, a, 0, Selector{Tenants: []string{"s1"}}, at))
	sb := must[CohortState](t)(s.FreezeCohort(ctx, b, 1, Selector{Tenants: []string{"s2"}}, at))
	var last int64
	for i, step := range []struct {
		key    CohortKey
		expect *CohortState
		stage  string
	}{{a, &sa, StageDualWrite}, {b, &sb, StageDualWrite}, {a, &sa, StageBackfill}} {
		st := must[CohortState](t)(s.SetStage(ctx, StageChange{Key: step.key, ExpectEpoch: step.expect.Epoch, Stage: step.stage, Attempt: 1, Reason: "Test", At: at}))
		if st.Epoch <= last {
			t.Fatalf("step %d: epoch %d does not grow past %d", i, st.Epoch, last)
		}
		last = st.Epoch
		*step.expect = st
	}
	// A controller that decided on an old epoch cannot write.
	_, err := s.SetStage(ctx, StageChange{Key: a, ExpectEpoch: sa.Epoch - 1, Stage: StageLegacy, Attempt: 1, Reason: "Stale", At: at})
	if !errors.Is(err, ErrEpochConflict) {
		t.Fatalf("stale SetStage: %v, want ErrEpochConflict", err)
	}
	if err := s.HaltAttempt(ctx, StageChange{Key: a, ExpectEpoch: 1, Reason: "Stale", At: at}); !errors.Is(err, ErrEpochConflict) {
		t.Fatalf("stale HaltAttempt: %v, want ErrEpochConflict", err)
	}
	got := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))
	if got["a"].Stage != StageBackfill || got["b"].Stage != StageDualWrite {
		t.Fatalf("stages after fenced writes: %+v", got)
	}
	hist := must[[]StageRecord](t)(s.History(ctx, "ns/r", 10))
	if len(hist) != 5 || hist[0].Reason != "CohortStarted" || hist[4].ToStage != StageBackfill {
		t.Fatalf("history = %+v", hist)
	}
}

func TestMembershipIsFrozen(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	// Known schools, by bucket.
	var low []string
	for _, name := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"} {
		if _, err := pool.Exec(ctx, `INSERT INTO tenants (tenant, bucket) VALUES ($1, $2)`, name, placement.TenantBucket(name)); err != nil {
			t.Fatal(err)
		}
		if placement.TenantBucket(name) < 50 {
			low = append(low, name)
		}
	}
	pilot := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "pilot"}, 0, Selector{Tenants: []string{low[0], "brand-new"}}, at))
	if pilot.Members != 2 {
		t.Fatalf("pilot has %d members, want 2 (a listed school unknown so far joins too)", pilot.Members)
	}
	half := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "half"}, 1, Selector{Buckets: &BucketRange{From: 0, To: 50}}, at))
	// brand-new is in pilot whatever its bucket, like low[0].
	wantHalf := int64(len(low) - 1)
	if half.Members != wantHalf {
		t.Fatalf("half has %d members, want %d: schools in bucket range minus the one pilot claimed", half.Members, wantHalf)
	}
	// Freezing again never re-buckets, even with another rule.
	again := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "half"}, 1, Selector{Buckets: &BucketRange{From: 0, To: 100}}, at))
	if again.Members != half.Members || again.Epoch != half.Epoch {
		t.Fatalf("re-freezing changed the cohort: %+v -> %+v", half, again)
	}
}

func TestStageChangeWaitsForSavesInFlight(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "a"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	// A save transaction holds its cohort's row FOR SHARE...
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT stage FROM rollout_cohorts WHERE rollout = $1 AND cohort = $2 FOR SHARE`, key.Rollout, key.Cohort); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "Test", At: at})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the stage changed while a save held its cohort row (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	// ...and the flip goes through once the save commits.
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReportsAndForget(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 2); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "a"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	rep := ShardReport{Rollout: "ns/r", Shard: 1, ObservedEpoch: 3, Holder: "pod-1", ReportedAt: at,
		Cohorts: []CohortReport{{Cohort: "a", Epoch: st.Epoch, Documents: 4, Mismatched: 1, SampleMismatches: []string{"doc-9"}}}}
	if err := s.ReportShard(ctx, rep); err != nil {
		t.Fatal(err)
	}
	rep.Cohorts = append(rep.Cohorts, CohortReport{Cohort: "invented", Epoch: 1})
	if err := s.ReportShard(ctx, rep); err == nil {
		t.Fatal("a report about a cohort the rollout does not have was accepted")
	}
	got := must[[]ShardReport](t)(s.ShardReports(ctx, "ns/r"))
	if len(got) != 1 || got[0].Shard != 1 || len(got[0].Cohorts) != 1 || got[0].Cohorts[0].Documents != 4 ||
		got[0].Cohorts[0].SampleMismatches[0] != "doc-9" || !got[0].Cohorts[0].ReportedAt.Equal(got[0].ReportedAt) {
		t.Fatalf("reports = %+v", got)
	}
	// A rollout with a cohort past Legacy cannot be forgotten.
	must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "Test", At: at}))
	if err := s.ForgetRollout(ctx, "ns/r", ""); err == nil {
		t.Fatal("forgot a rollout whose cohort dual-writes")
	}
}

// TestForgottenRolloutStaysForgotten: after a RollbackToLegacy deletion
// forgot a rollout, a manager acting on a copy of the deleted object read
// before the deletion (an old leader) cannot register it again, which
// would bring back cohorts nobody manages and keep the database from the
// next rollout; a new object of the same name can.
func TestForgottenRolloutStaysForgotten(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 1); err != nil {
		t.Fatal(err)
	}
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "a"}, 0, Selector{Tenants: []string{"s1"}}, at))
	if err := s.ForgetRollout(ctx, "ns/r", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-1", 1); !errors.Is(err, ErrRolloutForgotten) {
		t.Fatalf("the deleted object registered its rollout again: %v", err)
	}
	if got := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r")); len(got) != 0 {
		t.Fatalf("cohorts of a forgotten rollout: %v", got)
	}
	if err := s.RegisterRollout(ctx, "ns/next", "uid-2", 1); err != nil {
		t.Fatalf("the next rollout was refused the database: %v", err)
	}
	if err := s.ForgetRollout(ctx, "ns/next", "uid-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "uid-3", 1); err != nil {
		t.Fatalf("a new object named like the forgotten one: %v", err)
	}
}

// TestHaltFencesStaleStageChanges: a halt is a decision. A controller that
// decided on the epoch before it (a stale leader that still saw healthy
// gates) cannot promote the halted attempt and erase the halt; a rollback
// and a new attempt still go through.
func TestHaltFencesStaleStageChanges(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{Rollout: "ns/r", Cohort: "pilot"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageVerify, Attempt: 1, Reason: "Test", At: at}))
	seen := st.Epoch // both controllers read the cohort at Verify, this epoch
	if err := s.HaltAttempt(ctx, StageChange{Key: key, ExpectEpoch: seen, Reason: "GateFailed", At: at}); err != nil {
		t.Fatal(err)
	}
	// A second controller that decided the same halt on the same epoch (an
	// old leader) does not halt it twice.
	if err := s.HaltAttempt(ctx, StageChange{Key: key, ExpectEpoch: seen, Reason: "GateFailed", At: at}); !errors.Is(err, ErrEpochConflict) {
		t.Fatalf("second halt of the same attempt: %v, want ErrEpochConflict", err)
	}
	halts := 0
	for _, h := range must[[]StageRecord](t)(s.History(ctx, "ns/r", 10)) {
		if h.Outcome == OutcomeHalted {
			halts++
		}
	}
	if halts != 1 {
		t.Fatalf("the audit trail records %d halts of one attempt, want 1", halts)
	}
	_, err := s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: seen, Stage: StageLocalFirst, Attempt: 1, Reason: "Flipped", At: at})
	if !errors.Is(err, ErrEpochConflict) {
		got := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))["pilot"]
		t.Fatalf("stale flip after a halt: err=%v; cohort now stage=%s outcome=%q (want ErrEpochConflict, Verify, Halted)", err, got.Stage, got.Outcome)
	}
	// A new attempt starts from the halted stage.
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: seen, Stage: StageVerify, Attempt: 2, Reason: "NewAttempt", At: at}))
	if st.Outcome != "" || st.Attempt != 2 {
		t.Fatalf("new attempt: %+v", st)
	}
	// And a halted attempt can be rolled back.
	if err := s.HaltAttempt(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Reason: "GateFailed", At: at}); err != nil {
		t.Fatal(err)
	}
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageLegacy, Attempt: 2, Outcome: OutcomeRolledBack, Reason: "RollbackRequested", At: at}))
	if st.Stage != StageLegacy || st.Outcome != OutcomeRolledBack {
		t.Fatalf("rollback of a halted attempt: %+v", st)
	}
}

// TestSoakRestartFencesStalePromotions: a soak restart keeps the epoch, so
// a controller that decided on the soak before it (a stale leader) would
// promote a cohort whose soak just started over. A promotion carries the
// soak start it was decided on, and a restarted soak refuses it.
func TestSoakRestartFencesStalePromotions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	s = s.WithClock(func() time.Time { return at }) // the soak starts at at
	if now := must[time.Time](t)(s.Now(ctx)); !now.Equal(at) {
		t.Fatalf("Now = %s with a clock standing in for PostgreSQL's at %s", now, at)
	}
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{Rollout: "ns/r", Cohort: "pilot"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, at))
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageVerify, Attempt: 1, Reason: "Test", At: at}))
	seen := st // the stale controller's view: soaking since at
	if err := s.RestartSoak(ctx, key, st.Epoch, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err := s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: seen.Epoch, ExpectSoakStartedAt: seen.SoakStartedAt, Stage: StageLocalFirst,
		Attempt: 1, Reason: "Flipped", At: at.Add(time.Hour + time.Minute)})
	if !errors.Is(err, ErrEpochConflict) {
		got := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))["pilot"]
		t.Fatalf("stale flip after a soak restart: err=%v; cohort now at %s (want ErrEpochConflict, Verify)", err, got.Stage)
	}
	// A stale controller's older restart does not move the soak back.
	if err := s.RestartSoak(ctx, key, st.Epoch, at.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Decided on the restarted soak, it goes through.
	fresh := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))["pilot"]
	if !fresh.SoakStartedAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("soak start %v, want the newest restart %v", fresh.SoakStartedAt, at.Add(time.Hour))
	}
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: fresh.Epoch, ExpectSoakStartedAt: fresh.SoakStartedAt,
		Stage: StageLocalFirst, Attempt: 1, Reason: "Flipped", At: at.Add(3 * time.Hour)}))
	if st.Stage != StageLocalFirst {
		t.Fatalf("flip on the current soak: %+v", st)
	}
}

// TestFreezeCountsSchoolsHeldElsewhere: memberships are never moved, so a
// cohort selecting schools of another cohort (a renamed one: its schools
// stay with the old name) freezes without them, and says how many.
func TestFreezeCountsSchoolsHeldElsewhere(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	old := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{Rollout: "ns/r", Cohort: "pilot"}, 0, Selector{Tenants: []string{"s1", "s2"}}, at))
	if old.Members != 2 || old.HeldElsewhere != 0 {
		t.Fatalf("pilot: %+v", old)
	}
	// pilot is still in the spec: pilot-2 overlaps it.
	overlap := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{Rollout: "ns/r", Cohort: "overlap"}, 1, Selector{Tenants: []string{"s1", "s4"}}, at))
	if overlap.Members != 1 || overlap.HeldElsewhere != 1 || overlap.HeldOutsideSpec != 0 {
		t.Fatalf("overlap: %d members, %d held elsewhere, %d outside the spec; want 1 (s4), 1 and 0", overlap.Members, overlap.HeldElsewhere, overlap.HeldOutsideSpec)
	}
	// pilot is renamed pilot-2: the spec no longer has pilot.
	if _, _, err := s.MarkCohortsInSpec(ctx, "ns/r", SpecRef{}, []string{"overlap", "pilot-2"}, at); err != nil {
		t.Fatal(err)
	}
	renamed := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{Rollout: "ns/r", Cohort: "pilot-2"}, 0, Selector{Tenants: []string{"s1", "s2", "s3", "s4"}}, at))
	if renamed.Members != 1 || renamed.HeldElsewhere != 3 || renamed.HeldOutsideSpec != 2 {
		t.Fatalf("pilot-2: %d members, %d held elsewhere, %d outside the spec; want 1 (s3), 3 and 2 (pilot's)", renamed.Members, renamed.HeldElsewhere, renamed.HeldOutsideSpec)
	}
	h := must[[]StageRecord](t)(s.History(ctx, "ns/r", 10))
	if last := h[len(h)-1]; !strings.Contains(last.Message, "3 more it selects belong to other cohorts and stay there (memberships are never moved), 2 of them to cohorts no longer in the spec") {
		t.Errorf("history: %q", last.Message)
	}
	// Frozen again (a later reconcile), nothing changes.
	if again := must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{Rollout: "ns/r", Cohort: "pilot-2"}, 0, Selector{Tenants: []string{"s1", "s2", "s3", "s4"}}, at)); again.Members != 1 {
		t.Errorf("refrozen: %+v", again)
	}
}
