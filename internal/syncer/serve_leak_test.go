package syncer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestServeLeavesNothingOfAFencedRunBehind: every PostgreSQL restart or
// failover fences the syncer, and Serve runs it again in the process. A
// run must leave nothing behind: the fenced run's stage listener (its own
// goroutine and PostgreSQL connection, LISTEN yawp_stage) must be gone once
// the new run serves, or every failover adds a connection to the
// database's max_connections and a goroutine to the process, for good (3
// fences left 4 listener connections before each run stopped its own).
func TestServeLeavesNothingOfAFencedRunBehind(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const rollout = "default/demo"
	if err := dp.RegisterRollout(ctx, rollout, "", 1); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: rollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { ready <- a },
			Integrity: IntegrityConfig{Disabled: true}})
	}()
	waitReady := func(what string) {
		t.Helper()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("%s: Serve returned: %v", what, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: the syncer did not serve", what)
		}
	}
	listeners := func() int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query ILIKE 'LISTEN%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitReady("start")
	for range 3 { // three failovers in a row
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
		waitReady("after its connections were dropped")
	}
	time.Sleep(3 * time.Second) // listeners reconnect within a second
	if n := listeners(); n != 1 {
		t.Fatalf("%d stage listener connections to PostgreSQL after 3 fences, want 1 (the serving run's)", n)
	}
}
