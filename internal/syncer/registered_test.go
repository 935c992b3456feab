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

// TestASyncerWritesNothingInADatabaseWithoutItsRollout: the database
// Secret of a running rollout is edited to name another database (an
// empty server, another environment's). The operator refuses it and keeps
// the pods' template, but a gateway pod that restarts reads the Secret
// afresh: its syncer migrated the empty server, took its shard there and
// served saves, students' work going to a database that is not the
// rollout's. It takes no shard, writes nothing and serves nothing (so its
// gateway is not ready) until its rollout is registered in the database,
// by its own object: a database whose rollout of the same name another
// object registered (another cluster's copy) is not its rollout's.
func TestASyncerWritesNothingInADatabaseWithoutItsRollout(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const rollout = "default/demo"
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: rollout, Shard: 0, Shards: 2, PodName: "demo-gateway-0",
			RolloutUID: "uid-production", InternalToken: "tok", Heartbeat: time.Second, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { ready <- a }})
	}()
	notServing := func(within time.Duration, db string) {
		t.Helper()
		select {
		case addr := <-ready:
			t.Fatalf("the syncer serves at %s on %s", addr, db)
		case err := <-done:
			t.Fatalf("the syncer stopped on %s: %v", db, err)
		case <-time.After(within):
		}
	}
	tableExists := func(name string) bool {
		t.Helper()
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// An empty server: not even migrated.
	notServing(3*time.Second, "an empty server")
	if tableExists("rollouts") || tableExists("shard_leases") {
		t.Fatal("the syncer migrated an empty server")
	}

	// Another environment's database, serving a rollout of its own.
	dp, dpool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer dpool.Close()
	if err := dp.RegisterRollout(ctx, "staging/demo", "", 2); err != nil {
		t.Fatal(err)
	}
	notServing(6*time.Second, "another rollout's database")
	var leases int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM shard_leases`).Scan(&leases); err != nil {
		t.Fatal(err)
	}
	if leases != 0 {
		t.Fatalf("the syncer took a shard in another rollout's database (%d leases)", leases)
	}

	// A copy of this rollout's database that another cluster's operator
	// took over (staging's rollout of the same namespace and name).
	if _, err := pool.Exec(ctx, `DELETE FROM rollouts`); err != nil {
		t.Fatal(err)
	}
	if err := dp.RegisterRollout(ctx, rollout, "uid-staging", 2); err != nil {
		t.Fatal(err)
	}
	if err := dp.RecordRolloutObject(ctx, rollout, "uid-staging"); err != nil {
		t.Fatal(err)
	}
	notServing(6*time.Second, "a database whose rollout of this name another object registered")

	// Its own object recorded there (the database is its own after all;
	// an object deleted with Retain and created again is recorded the
	// same way once its template is applied, the Retain deletion having
	// let the rollout go): it takes its shard.
	if err := dp.ReleaseRollout(ctx, rollout, "uid-staging"); err != nil {
		t.Fatal(err)
	}
	if err := dp.RegisterRollout(ctx, rollout, "uid-production", 2); err != nil {
		t.Fatal(err)
	}
	if err := dp.RecordRolloutObject(ctx, rollout, "uid-production"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the syncer stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the syncer did not take its shard once its rollout was registered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
