package dataplane

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestOneDatabaseServesOneRolloutRegisteredAtOnce: RegisterRollout checked
// that no other rollout was recorded, then recorded its own, under a lock
// of its own name only. Two rollouts naming one database and registered at
// once (reconciled concurrently: a manifest copied without changing its
// Secret) each saw none and were both recorded, and their gateways placed
// documents in one database by two shard counts.
func TestOneDatabaseServesOneRolloutRegisteredAtOnce(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	for i := range 100 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, name := range []string{"ns/a", "ns/b"} {
			wg.Go(func() {
				<-start
				errs[j] = s.RegisterRollout(ctx, name, "", 2+j)
			})
		}
		close(start)
		wg.Wait()
		registered := 0
		for _, err := range errs {
			switch {
			case err == nil:
				registered++
			case !errors.Is(err, ErrDatabaseInUse):
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if registered != 1 {
			t.Fatalf("round %d: %d rollouts registered on one database, want 1 (errors: %v)", i, registered, errs)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM rollouts`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestARolloutIsServedByTheObjectRecorded: the database records which
// PersistenceRollout object serves its rollout (the last recorded: an
// object deleted with Retain, its deletion recorded, and created again
// takes it over), and
// RegisteredAs reads it; it reads an empty database as not registered
// without writing to it. Neither registering again nor recording the
// object waits for saves holding the rollout's row FOR SHARE, however
// they overlap.
func TestARolloutIsServedByTheObjectRecorded(t *testing.T) {
	ctx := t.Context()
	empty, err := pgxpool.New(ctx, pgharness.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if ok, uid, err := RegisteredAs(ctx, empty, "ns/a"); ok || uid != "" || err != nil {
		t.Errorf("an empty database: registered %v by %q, %v", ok, uid, err)
	}
	var tables int
	if err := empty.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("reading an empty database left %d tables (%v)", tables, err)
	}

	s, pool := newStore(t)
	check := func(want string) {
		t.Helper()
		if ok, uid, err := RegisteredAs(ctx, pool, "ns/a"); !ok || uid != want || err != nil {
			t.Errorf("registered %v by %q, %v; want by %q", ok, uid, err, want)
		}
	}
	if ok, _, err := RegisteredAs(ctx, pool, "ns/a"); ok || err != nil {
		t.Errorf("before registration: %v, %v", ok, err)
	}
	if err := s.RegisterRollout(ctx, "ns/a", "uid-1", 2); err != nil {
		t.Fatal(err)
	}
	check("") // registered; no template applied yet
	if err := s.RecordRolloutObject(ctx, "ns/a", "uid-1"); err != nil {
		t.Fatal(err)
	}
	check("uid-1")
	if err := s.RecordRolloutObject(ctx, "ns/a", ""); err != nil {
		t.Fatal(err)
	}
	check("uid-1")
	// uid-1 deleted with Retain (its deletion recorded): another object
	// of the name may take the rollout over, but one refused (another
	// shard count) records nothing.
	if err := s.ReleaseRollout(ctx, "ns/a", "uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/a", "uid-2", 1); !errors.Is(err, ErrShardsChanged) {
		t.Fatalf("another shard count: %v", err)
	}
	check("uid-1")
	if c, _, _ := s.RolloutClaim(ctx, "ns/a"); c.UID != "uid-1" {
		t.Fatalf("a registration refused for its shard count claimed the rollout: %+v", c)
	}

	// Saves overlapping without a pause, each holding the rollout's row
	// FOR SHARE for 100 ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 13 * time.Millisecond)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tx, err := pool.Begin(ctx)
				if err != nil {
					return
				}
				_, _ = tx.Exec(ctx, `SELECT 1 FROM rollouts WHERE rollout = 'ns/a' FOR SHARE`)
				time.Sleep(100 * time.Millisecond)
				_ = tx.Commit(ctx)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	quick, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.RegisterRollout(quick, "ns/a", "uid-2", 2); err != nil {
		t.Errorf("registering again under saves: %v", err)
	}
	if err := s.RecordRolloutObject(quick, "ns/a", "uid-2"); err != nil {
		t.Errorf("recording another object under saves: %v", err)
	}
	close(stop)
	wg.Wait()
	check("uid-2")
	// Forgotten with its rollout.
	if _, err := pool.Exec(ctx, `DELETE FROM rollouts WHERE rollout = 'ns/a'`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM rollout_objects`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d objects recorded after the rollout's row was deleted (%v)", n, err)
	}
}
