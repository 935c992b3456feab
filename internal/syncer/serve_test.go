package syncer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestAFencedSyncerTakesItsShardAgainInTheSameProcess: PostgreSQL drops
// every connection (a restart, a failover). The syncer's lock connection
// went with them, it was fenced, and Run returned, so the process exited:
// in Kubernetes the kubelet restarts a container that keeps exiting after
// a back-off that grows to five minutes, so a few failovers in a row left
// shards down for that long. Serve runs it again in the process: it takes
// the shard anew (a new shard epoch) and serves, and returns only when
// stopped.
func TestAFencedSyncerTakesItsShardAgainInTheSameProcess(t *testing.T) {
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
	ready := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: rollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { ready <- a }})
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
	waitReady("start")
	epoch := func() int64 {
		t.Helper()
		var e int64
		if err := pool.QueryRow(ctx, `SELECT epoch FROM shard_leases WHERE shard = 0`).Scan(&e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := epoch()

	// Every other connection to the database dropped, as a restart does.
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	waitReady("after its connections were dropped")
	if got := epoch(); got <= first {
		t.Fatalf("shard epoch %d after the syncer took its shard again, want above %d", got, first)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve, stopped: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return once stopped")
	}
}
