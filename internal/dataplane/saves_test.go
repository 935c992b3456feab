package dataplane

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/placement"
)

func TestLockSaveStages(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	// A tenant first seen after a bucket cohort froze joins it by the
	// stored selector; one outside every range stays Legacy at epoch 0.
	in, out := "", ""
	for i := 0; in == "" || out == ""; i++ {
		name := "school-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if placement.TenantBucket(name) < 50 {
			in = name
		} else {
			out = name
		}
	}
	key := CohortKey{"ns/r", "half"}
	st := must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Buckets: &BucketRange{From: 0, To: 50}}, at))
	st = must[CohortState](t)(s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "t", At: at}))
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stages, err := LockSaveStages(ctx, tx, "ns/r", []string{in, out, in})
	if err != nil {
		t.Fatal(err)
	}
	if got := stages[in]; got.Stage != StageDualWrite || got.Epoch != st.Epoch || got.Cohort != "half" {
		t.Errorf("tenant in range: %+v", got)
	}
	if got := stages[out]; got.Stage != StageLegacy || got.Epoch != 0 || got.Cohort != "" {
		t.Errorf("tenant out of range: %+v", got)
	}
	// The save holds the cohort row: a stage change waits for it.
	done := make(chan error, 1)
	go func() {
		_, err := s.SetStage(ctx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageBackfill, Attempt: 1, Reason: "t", At: at})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("stage changed under a save in flight (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cs := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r"))
	if cs["half"].Members != 1 {
		t.Errorf("members: %d", cs["half"].Members)
	}
	// Observe sees the new epoch and stage in one snapshot.
	obs, err := s.Observe(ctx, "ns/r")
	if err != nil || !obs.Registered || obs.Epoch != st.Epoch+1 || len(obs.Cohorts) != 1 || obs.Cohorts[0].Stage != StageBackfill {
		t.Errorf("observe: %+v %v", obs, err)
	}
	if obs, _ := s.Observe(ctx, "ns/unknown"); obs.Registered {
		t.Errorf("unknown rollout observed as registered")
	}
}

// TestCohortsOutOfTheSpecTakeNoNewSchools: a bucket cohort renamed in the
// spec keeps its row, selecting the same buckets at the same position as
// the renamed one. Marked removed, it takes no school seen for the first
// time (the renamed cohort does, or none while no cohort of the spec
// selects the school); its members stay; unmarked, it takes new ones again.
func TestCohortsOutOfTheSpecTakeNoNewSchools(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	school := func(prefix string) string { return schoolIn(prefix, 0, 50) }
	firstSave := func(tenant string) SaveStage { return firstSave(t, pool, "ns/r", tenant)[tenant] }
	mark := func(inSpec []string, wantRemoved, wantRestored []string) {
		t.Helper()
		removed, restored, err := s.MarkCohortsInSpec(ctx, "ns/r", SpecRef{}, inSpec, at)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(removed, wantRemoved) || !slices.Equal(restored, wantRestored) {
			t.Fatalf("mark %v: removed %v, restored %v; want %v, %v", inSpec, removed, restored, wantRemoved, wantRestored)
		}
	}
	half := Selector{Buckets: &BucketRange{From: 0, To: 50}}

	old := school("old")
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "pilot"}, 0, half, at))
	if got := firstSave(old); got.Cohort != "pilot" {
		t.Fatalf("a new school in pilot's buckets: %+v", got)
	}
	mark([]string{"pilot"}, nil, nil)

	// Renamed to pilot-2, not started yet: the new school joins nothing.
	mark([]string{"pilot-2"}, []string{"pilot"}, nil)
	mark([]string{"pilot-2"}, nil, nil) // marked once
	if cs := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r")); !cs["pilot"].RemovedAt.Equal(at) {
		t.Fatalf("pilot removed at %v, want %v", cs["pilot"].RemovedAt, at)
	}
	gap := school("gap")
	if got := firstSave(gap); got.Cohort != "" || got.Stage != StageLegacy {
		t.Errorf("a new school joined %+v, out of the spec", got)
	}
	// pilot-2 starts: the school seen meanwhile is frozen into it, and the
	// next new one joins it, not pilot (same buckets, same position).
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "pilot-2"}, 0, half, at))
	fresh := school("fresh")
	if got := firstSave(fresh); got.Cohort != "pilot-2" {
		t.Errorf("a new school joined %q, want pilot-2", got.Cohort)
	}
	// Renamed back: pilot takes new schools again, pilot-2 none.
	mark([]string{"pilot"}, []string{"pilot-2"}, []string{"pilot"})
	if cs := must[map[string]CohortState](t)(s.Cohorts(ctx, "ns/r")); !cs["pilot"].RemovedAt.IsZero() {
		t.Errorf("pilot back in the spec still removed at %v", cs["pilot"].RemovedAt)
	}
	later := school("later")
	if got := firstSave(later); got.Cohort != "pilot" {
		t.Errorf("a new school joined %q, want pilot", got.Cohort)
	}
	// Nobody moved.
	for tenant, want := range map[string]string{old: "pilot", gap: "pilot-2", fresh: "pilot-2", later: "pilot"} {
		if got := must[SaveStage](t)(ReadTenantStage(ctx, pool, tenant)); got.Cohort != want {
			t.Errorf("%s in %q, want %q", tenant, got.Cohort, want)
		}
	}
}

// TestSchoolsOutsideCohorts: schools seen by a save that no cohort holds
// are counted and the first named (a listed school frozen into a cohort is
// not counted, nor one a later freeze takes in).
func TestSchoolsOutsideCohorts(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	if n, names := must2(t)(s.SchoolsOutsideCohorts(ctx, 2)); n != 0 || len(names) != 0 {
		t.Fatalf("nothing seen yet: %d %v", n, names)
	}
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "pilot"}, 0, Selector{Tenants: []string{"a-school"}}, at))
	firstSave(t, pool, "ns/r", "a-school", "d-school", "b-school", "c-school")
	n, names := must2(t)(s.SchoolsOutsideCohorts(ctx, 2))
	if n != 3 || !slices.Equal(names, []string{"b-school", "c-school"}) {
		t.Fatalf("outside: %d %v, want 3 [b-school c-school]", n, names)
	}
	must[CohortState](t)(s.FreezeCohort(ctx, CohortKey{"ns/r", "rest"}, 1, Selector{Tenants: []string{"b-school", "c-school"}}, at))
	n, names = must2(t)(s.SchoolsOutsideCohorts(ctx, 2))
	if n != 1 || !slices.Equal(names, []string{"d-school"}) {
		t.Fatalf("after rest froze b and c: %d %v, want 1 [d-school]", n, names)
	}
}

func must2(t *testing.T) func(int64, []string, error) (int64, []string) {
	return func(n int64, s []string, err error) (int64, []string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n, s
	}
}

// firstSave commits the stage lookup a save of tenants makes (the first
// save of a school registers it and places it) and returns their stages.
func firstSave(t *testing.T, pool *pgxpool.Pool, rollout string, tenants ...string) map[string]SaveStage {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	st, err := LockSaveStages(ctx, tx, rollout, tenants)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// schoolIn returns a school name starting with prefix whose bucket is in
// [from, to).
func schoolIn(prefix string, from, to int) string {
	for i := 0; ; i++ {
		name := prefix + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if b := placement.TenantBucket(name); b >= from && b < to {
			return name
		}
	}
}
