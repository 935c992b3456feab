package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/placement"
)

func TestLockSaveStages(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", 1); err != nil {
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
