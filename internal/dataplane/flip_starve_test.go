package dataplane

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestAStageChangeIsNotHeldOffBySavesThatNeverPause: every save
// transaction holds its rollout's and its cohort's rows FOR SHARE until
// it commits; a stage change locks them FOR UPDATE, waiting for the
// saves in flight (the fence). PostgreSQL lets a new FOR SHARE locker in
// past a waiting FOR UPDATE, so with the group commits of many shards
// overlapping without a pause (16 lanes here, each holding its locks for
// 2 ms of every 2 ms), the stage change waited for a moment when none
// held them, which may never come: a rollout's flip held off, its
// reconcile timing out, for as long as students type.
func TestAStageChangeIsNotHeldOffBySavesThatNeverPause(t *testing.T) {
	ctx := t.Context()
	s, small := newStore(t)
	cfg := small.Config()
	cfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := s.RegisterRollout(ctx, "ns/r", "", 16); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "a"}
	st, err := s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var saves atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 125 * time.Microsecond)
			for !stop.Load() {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := LockSaveStages(ctx, tx, "ns/r", []string{"s1"}); err != nil {
						return err
					}
					time.Sleep(2 * time.Millisecond) // the group's writes and its commit
					return nil
				})
				if err != nil && ctx.Err() == nil {
					t.Errorf("save: %v", err)
					return
				}
				saves.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	flipCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = s.SetStage(flipCtx, StageChange{Key: key, ExpectEpoch: st.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "Test", At: time.Now()})
	took := time.Since(start)
	before := saves.Load()
	time.Sleep(200 * time.Millisecond)
	after := saves.Load()
	stop.Store(true)
	wg.Wait()
	t.Logf("stage change: %v after %s; saves went on at %d/s after it", err, took.Round(time.Millisecond), (after-before)*5)
	if err != nil {
		t.Errorf("the stage change did not get through saves that never pause: %v after %s", err, took.Round(time.Millisecond))
	}
	if after == before {
		t.Error("no save went on after the stage change")
	}
}
