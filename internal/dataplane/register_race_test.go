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

// TestARolloutIsRegisteredByItsObject: the database records which
// PersistenceRollout object registered its rollout, the last one to (an
// object deleted with Retain and created again takes the rollout over),
// and a registration naming no object leaves the record; RegisteredAs
// reads it, and reads an empty database as not registered without
// writing to it. Registering again does not write the row, which every
// save holds FOR SHARE.
func TestARolloutIsRegisteredByItsObject(t *testing.T) {
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
	check("uid-1")
	if err := s.RegisterRollout(ctx, "ns/a", "", 2); err != nil {
		t.Fatal(err)
	}
	check("uid-1")
	// Registering again while a save holds the row: not held up.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM rollouts WHERE rollout = 'ns/a' FOR SHARE`); err != nil {
		t.Fatal(err)
	}
	quick, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.RegisterRollout(quick, "ns/a", "uid-1", 2); err != nil {
		t.Errorf("registering again while a save holds the rollout's row: %v", err)
	}
	_ = tx.Rollback(ctx)
	if err := s.RegisterRollout(ctx, "ns/a", "uid-2", 2); err != nil {
		t.Fatal(err)
	}
	check("uid-2")
}
