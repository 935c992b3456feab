package syncer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// served is one shard's syncer under Serve, on a database of its own.
type served struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	pool   *pgxpool.Pool
	ready  chan string
	done   chan error
}

func serveShard(t *testing.T) *served {
	t.Helper()
	dsn := pgharness.ForTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const rollout = "default/demo"
	if err := dp.RegisterRollout(ctx, rollout, "", 1); err != nil {
		t.Fatal(err)
	}
	s := &served{t: t, ctx: ctx, cancel: cancel, pool: pool, ready: make(chan string, 8), done: make(chan error, 1)}
	go func() {
		s.done <- Serve(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: rollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { s.ready <- a },
			Integrity: IntegrityConfig{Disabled: true}})
	}()
	s.waitReady("start")
	return s
}

// waitReady waits for a run to serve.
func (s *served) waitReady(what string) {
	s.t.Helper()
	select {
	case <-s.ready:
	case err := <-s.done:
		s.t.Fatalf("%s: Serve returned: %v", what, err)
	case <-time.After(60 * time.Second):
		s.t.Fatalf("%s: the syncer did not serve", what)
	}
}

// dropConnections drops every other connection to the database, as a
// PostgreSQL restart or failover does, and waits for the syncer to serve
// again.
func (s *served) dropConnections() {
	s.t.Helper()
	if _, err := s.pool.Exec(s.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		s.t.Fatal(err)
	}
	s.waitReady("after its connections were dropped")
}

func (s *served) count(sql string) int64 {
	s.t.Helper()
	var n int64
	if err := s.pool.QueryRow(s.ctx, sql).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// TestAFencedSyncerTakesItsShardAgainInTheSameProcess: PostgreSQL drops
// every connection (a restart, a failover). The syncer's lock connection
// went with them, it was fenced, and Run returned, so the process exited:
// in Kubernetes the kubelet restarts a container that keeps exiting after
// a back-off that grows to five minutes, so a few failovers in a row left
// shards down for that long. Serve runs it again in the process: it takes
// the shard anew (a new shard epoch) and serves, and returns only when
// stopped.
func TestAFencedSyncerTakesItsShardAgainInTheSameProcess(t *testing.T) {
	s := serveShard(t)
	const epoch = `SELECT epoch FROM shard_leases WHERE shard = 0`
	first := s.count(epoch)
	s.dropConnections()
	if got := s.count(epoch); got <= first {
		t.Fatalf("shard epoch %d after the syncer took its shard again, want above %d", got, first)
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve, stopped: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return once stopped")
	}
}

// TestServeLeavesNothingOfAFencedRunBehind: every PostgreSQL restart or
// failover fences the syncer, and Serve runs it again in the process. A
// run must leave nothing behind: the fenced run's stage listener (its own
// goroutine and PostgreSQL connection, LISTEN yawp_stage) must be gone once
// the new run serves, or every failover adds a connection to the
// database's max_connections and a goroutine to the process, for good (3
// fences left 4 listener connections before each run stopped its own).
func TestServeLeavesNothingOfAFencedRunBehind(t *testing.T) {
	s := serveShard(t)
	for range 3 { // three failovers in a row
		s.dropConnections()
	}
	time.Sleep(3 * time.Second) // listeners reconnect within a second
	if n := s.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`); n != 1 {
		t.Fatalf("%d stage listener connections to PostgreSQL after 3 fences, want 1 (the serving run's)", n)
	}
}
