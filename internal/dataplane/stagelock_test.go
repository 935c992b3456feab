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

// laneSettings are the session settings the store's lanes plan their
// statements under (generic plans, index scans), as the saves run.
const laneSettings = `SELECT set_config('plan_cache_mode', 'force_generic_plan', false), set_config('enable_seqscan', 'off', false),
	set_config('enable_hashjoin', 'off', false), set_config('enable_mergejoin', 'off', false)`

// TestASaveWaitingForAStageChangeHoldsNoRowItLocks: a save that arrives
// while a stage change holds the stage lock waits for it before it locks
// any of the rows the stage change goes on to lock. Had it locked the
// rollout's row first, the stage change's FOR UPDATE would wait for the
// save and the save for the stage change: a deadlock, one of them
// aborted. Under the default settings and the lanes' alike.
func TestASaveWaitingForAStageChangeHoldsNoRowItLocks(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "a"}
	if _, err := s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"s1"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, lane := range []bool{false, true} {
		change, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := lockStageChanges(ctx, change, "ns/r"); err != nil {
			t.Fatal(err)
		}
		saved := make(chan error, 1)
		go func() {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				saved <- err
				return
			}
			defer conn.Release()
			if lane {
				if _, err := conn.Exec(ctx, laneSettings); err != nil {
					saved <- err
					return
				}
				defer func() { _, _ = conn.Exec(context.Background(), `RESET ALL`) }()
			}
			saved <- pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := LockSaveStages(ctx, tx, "ns/r", []string{"s1"})
				return err
			})
		}()
		time.Sleep(200 * time.Millisecond)
		select {
		case err := <-saved:
			t.Fatalf("lane settings %v: the save went through a stage change in progress (%v)", lane, err)
		default:
		}
		// The stage change goes on to lock the rows the save reads.
		quick, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = change.Exec(quick, `SELECT 1 FROM rollouts WHERE rollout = 'ns/r' FOR UPDATE`)
		if err == nil {
			_, err = change.Exec(quick, `SELECT 1 FROM rollout_cohorts WHERE rollout = 'ns/r' FOR UPDATE`)
		}
		if err == nil {
			_, err = change.Exec(quick, `SELECT 1 FROM tenants WHERE tenant = 's1' FOR UPDATE`)
		}
		cancel()
		if err != nil {
			t.Errorf("lane settings %v: the stage change could not lock the rows a waiting save reads: %v", lane, err)
		}
		if err := change.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-saved; err != nil {
			t.Errorf("lane settings %v: the save after the stage change: %v", lane, err)
		}
	}
}

// TestBookkeepingOfOneCohortHoldsNoSaveUp: a save of cohort a that holds
// its locks for a while (a group waiting up to its lock_timeout for a
// document row a legacy transaction holds). The controller restarts
// cohort b's soak (at every reconcile while reports are stale), halts an
// attempt, marks cohorts out of the spec or records a spec generation:
// none of these is a thing saves read, so none waits for cohort a's save,
// and no save of the rollout (cohort b's, a school in no cohort) waits
// behind them. Taking the stage lock for them (a review of df524e0)
// queued every save of the rollout behind a soak restart waiting for one
// slow save.
func TestBookkeepingOfOneCohortHoldsNoSaveUp(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FreezeCohort(ctx, CohortKey{"ns/r", "a"}, 0, Selector{Tenants: []string{"s1"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := s.FreezeCohort(ctx, CohortKey{"ns/r", "b"}, 1, Selector{Tenants: []string{"s2"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err = s.SetStage(ctx, StageChange{Key: CohortKey{"ns/r", "b"}, ExpectEpoch: b.Epoch, Stage: StageDualWrite, Attempt: 1, Reason: "Test", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Rollback(context.Background()) }()
	if _, err := LockSaveStages(ctx, slow, "ns/r", []string{"s1", "s2"}); err != nil {
		t.Fatal(err)
	}
	quick := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	for _, w := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"a soak restarted", func(c context.Context) error {
			return s.RestartSoak(c, CohortKey{"ns/r", "b"}, b.Epoch, time.Now())
		}},
		{"cohorts marked out of the spec", func(c context.Context) error {
			_, _, err := s.MarkCohortsInSpec(c, "ns/r", SpecRef{}, []string{"a"}, time.Now())
			return err
		}},
		{"a spec generation recorded", func(c context.Context) error { return s.SpecSeen(c, "ns/r", "uid", 7) }},
		{"an attempt halted", func(c context.Context) error {
			return s.HaltAttempt(c, StageChange{Key: CohortKey{"ns/r", "b"}, ExpectEpoch: b.Epoch, Reason: "Test", At: time.Now()})
		}},
	} {
		c, cancel := quick()
		err := w.do(c)
		cancel()
		if err != nil {
			t.Errorf("%s while a save holds its locks: %v", w.name, err)
		}
	}
	for _, school := range []string{"s2", "s3-in-no-cohort"} {
		c, cancel := quick()
		err := pgx.BeginFunc(c, pool, func(tx pgx.Tx) error {
			_, err := LockSaveStages(c, tx, "ns/r", []string{school})
			return err
		})
		cancel()
		if err != nil {
			t.Errorf("a save of school %s while cohort a's save holds its locks: %v", school, err)
		}
	}
}

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
