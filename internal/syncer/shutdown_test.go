package syncer

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestGracefulShutdownAnswersInFlightSaves: the syncer gets SIGTERM
// (a rolling update) while a save is being committed. The save commits
// (the engine finishes its group on Close), but the HTTP server was
// closed at once (srv.Close), so the gateway gets a cut connection: the
// client is told 503 unavailable ("nothing was changed; retry") for a save
// that is in the database.
func TestGracefulShutdownAnswersInFlightSaves(t *testing.T) {
	bin := buildSyncer(t)
	dsn := pgharness.ForTest(t)
	cmd, c := startSyncerProc(t, bin, dsn)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx := t.Context()
	if _, err := c.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: "g1", Tenant: "t", User: "u", Content: "v1"}); err != nil {
		t.Fatal(err)
	}
	// Something outside the gateway holds the row for a moment (a
	// legacy job; or just a slow commit): the save is in flight.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = 'g1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res store.Result
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: "g1", Tenant: "t", User: "u", Content: "v2"})
		got <- answer{res, err}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	_ = tx.Commit(ctx) // the row is free again: the group commits
	a := <-got
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("syncer exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("syncer did not exit")
	}
	cmd2, c2 := startSyncerProc(t, bin, dsn)
	defer func() { _ = cmd2.Process.Signal(syscall.SIGTERM); _ = cmd2.Wait() }()
	d, err := c2.Read(ctx, "t", "g1")
	if err != nil {
		t.Fatal(err)
	}
	if a.err != nil && d.Content == "v2" {
		t.Fatalf("save in flight at SIGTERM was answered %v, yet it committed (revision %d, %q)", a.err, d.Revision, d.Content)
	}
	t.Logf("answer %+v %v; document rev %d %q", a.res.Outcome, a.err, d.Revision, d.Content)
}
