package migrations

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

// upTo brings the database to version v, as an earlier release left it.
func upTo(t *testing.T, pool *pgxpool.Pool, v int64) {
	t.Helper()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(), goose.WithTableName("schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}

// oldSave is what a syncer of the earlier release writes for a legacy
// save: the row and its revision, in one transaction.
func oldSave(ctx context.Context, pool *pgxpool.Pool, doc string, rev int64) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL yawp.syncer = 'on'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE documents SET content = $2, revision = $3, updated_at = now() WHERE doc_id = $1`,
			doc, fmt.Sprintf("text %d", rev), rev); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
			VALUES ($1, $2, '', $3, 'alice', now(), 'Legacy', 0, 1)`, doc, rev, fmt.Sprintf("text %d", rev))
		return err
	})
}

// TestUpgradeDoesNotQueueSavesBehindAReader: the earlier release's
// syncers keep saving while the new version's migrations run. A
// transaction that merely reads the save history (a pg_dump, a report,
// a legacy batch job) must not make every save of every shard wait
// behind the migration's ALTER TABLE for as long as that reader runs.
func TestUpgradeDoesNotQueueSavesBehindAReader(t *testing.T) {
	// The release before splices (00009) and keys in revisions (00010).
	upgradeUnderAReader(t, 8, "document_revisions")
}

// upgradeUnderAReader migrates a database at version from to Latest while
// a transaction reads table and an earlier release's syncer saves: the
// save must not wait for the reader behind a migration's lock request, and
// the migration, tried again, goes through once the reader ends.
func upgradeUnderAReader(t *testing.T, from int64, table string) {
	ctx := context.Background()
	_, pool := ownerPool(t)
	upTo(t, pool, from)
	if _, err := pool.Exec(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('essay-1', 'school-1', 'alice', '', 'text 1', 1, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	if err := oldSave(ctx, pool, "essay-1", 1); err != nil {
		t.Fatal(err)
	}

	// A reader of the table, open until the old syncer's save is done.
	reader, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Release()
	if _, err := reader.Exec(ctx, `BEGIN; SELECT count(*) FROM `+table); err != nil {
		t.Fatal(err)
	}

	// The new version starts and migrates: a migration's lock request
	// waits for the reader.
	migDone := make(chan error, 1)
	go func() { migDone <- Up(ctx, pool) }()
	time.Sleep(500 * time.Millisecond)

	// An old syncer saves meanwhile, and must not wait for the reader.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	start := time.Now()
	err = oldSave(sctx, pool, "essay-1", 2)
	cancel()
	var blocker string
	_ = pool.QueryRow(ctx, `SELECT coalesce(string_agg(regexp_replace(left(query, 60), '\s+', ' ', 'g'), ' | '), '') FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND query NOT LIKE 'UPDATE documents%'`).Scan(&blocker)
	// The reader ends; the migration, tried again, goes through.
	if _, cerr := reader.Exec(ctx, `COMMIT`); cerr != nil {
		t.Fatal(cerr)
	}
	if merr := <-migDone; merr != nil {
		t.Errorf("migrations: %v", merr)
	}
	if err != nil {
		t.Fatalf("a save of the release at migration %d waited %s for a reader of %s while the upgrade ran (%v); waiting on a lock: %s",
			from, time.Since(start).Round(time.Millisecond), table, err, blocker)
	}
}

// TestChecksAddedToTablesInUseAreNotValidated: a CHECK constraint added to
// an existing table must say NOT VALID. Validated, it scans the whole
// table under an exclusive lock while every save waits (migration 00006
// did, on the save history; found by review).
func TestChecksAddedToTablesInUseAreNotValidated(t *testing.T) {
	entries, err := fs.ReadDir(FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	addCheck := regexp.MustCompile(`(?is)ALTER TABLE\s+\w+\s+ADD CONSTRAINT\s+\w+\s+CHECK\s*\(.*?\)\s*(NOT VALID)?\s*;`)
	checked := 0
	for _, e := range entries {
		b, err := fs.ReadFile(FS(), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		for _, m := range addCheck.FindAllStringSubmatch(up, -1) {
			checked++
			if m[1] == "" {
				t.Errorf("%s: a CHECK added to a table in use without NOT VALID:\n%s", e.Name(), m[0])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no ADD CONSTRAINT ... CHECK found: the pattern no longer matches the migrations")
	}
}

// TestIndexBuildCutShortThenConcurrentRetries: 00010's concurrent build is
// cancelled halfway (the migrating process stops), then three processes
// start at once.
func TestIndexBuildCutShortThenConcurrentRetries(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgharness.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	upTo(t, pool, 9)
	reader, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM documents`); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Up(cctx, pool) }()
	for i := 0; i < 300; i++ {
		var n int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND state = 'active'`).Scan(&n)
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	t.Logf("first run: %v", <-done)
	_, _ = reader.Exec(ctx, `COMMIT`)
	reader.Release()
	var valid *bool
	_ = pool.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'document_revisions_idem'`).Scan(&valid)
	if valid != nil {
		t.Logf("index left behind, valid=%v", *valid)
	}
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			p, err := pgxpool.New(ctx, pool.Config().ConnString())
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			errs <- Up(ctx, p)
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("retry %d: %v", i, err)
		}
	}
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'document_revisions_idem'`).Scan(&ok); err != nil || !ok {
		t.Fatalf("index valid=%v err=%v", ok, err)
	}
	var v int64
	_ = pool.QueryRow(ctx, `SELECT max(version_id) FROM schema_migrations`).Scan(&v)
	if want := int64(len(mustEntries(t))); v != want {
		t.Fatalf("version %d, want %d", v, want)
	}
}

func mustEntries(t *testing.T) []fs.DirEntry {
	t.Helper()
	entries, err := fs.ReadDir(FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
