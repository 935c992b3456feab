package migrations

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

// ownerPool returns a fresh database's DSN and a pool connected as its
// owner (the superuser the harness runs as, as the operator's role).
func ownerPool(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgharness.ForTest(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return dsn, pool
}

// serviceRole makes a login role in yawp_service (as a deployment gives
// the syncers) and returns a pool connected as it.
func serviceRole(t *testing.T, owner *pgxpool.Pool, dsn string) *pgxpool.Pool {
	t.Helper()
	role := fmt.Sprintf("svc_%d", rand.Uint32())
	if _, err := owner.Exec(t.Context(), "CREATE ROLE "+role+" LOGIN IN ROLE yawp_service"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	pool, err := pgxpool.New(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_, _ = owner.Exec(context.Background(), "DROP ROLE "+role)
	})
	return pool
}

// TestServiceRoleDoesNotMigrateAFreshDatabase: on PostgreSQL 14 and older
// anyone may create tables in public. A syncer connected as a yawp_service
// member that reached a database before the operator did would migrate it
// and own the ledger (and could then disable its append-only trigger); it
// waits for the owner instead.
func TestServiceRoleDoesNotMigrateAFreshDatabase(t *testing.T) {
	ctx := t.Context()
	dsn, owner := ownerPool(t)
	// yawp_service exists cluster-wide once any database was migrated;
	// public is open to all, as before PostgreSQL 15.
	if _, err := owner.Exec(ctx, `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN CREATE ROLE yawp_service NOLOGIN; END IF; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `GRANT CREATE ON SCHEMA public TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	svc := serviceRole(t, owner, dsn)
	// Long enough for the first queries on a busy machine (300 ms ran out
	// before the role's check had an answer under CI's load).
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := UpOrWait(wctx, svc, nil, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "may not migrate") {
		t.Fatalf("a service role on a fresh database: %v", err)
	}
	var made bool
	if err := owner.QueryRow(ctx, `SELECT to_regclass('save_ledger') IS NOT NULL`).Scan(&made); err != nil || made {
		t.Fatalf("the service role created the ledger (%v, %v)", made, err)
	}
	// The owner migrates; the service role goes on.
	if err := Up(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if err := UpOrWait(ctx, svc, nil, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if owns, err := OwnsLedger(ctx, svc); err != nil || owns {
		t.Fatalf("service role owns the ledger: %v %v", owns, err)
	}
}

// TestServiceRoleCannotTouchTheLedgerButCanWork: a yawp_service member
// that owns nothing can read and write what the services use, append to
// the ledger and read it, but neither change nor remove ledger rows, nor
// disable the append-only trigger (which the schema's owner can), nor
// change the schema. It waits for the schema instead of migrating it.
func TestServiceRoleCannotTouchTheLedgerButCanWork(t *testing.T) {
	ctx := t.Context()
	dsn, owner := ownerPool(t)
	if err := Up(ctx, owner); err != nil {
		t.Fatal(err)
	}
	svc := serviceRole(t, owner, dsn)
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if err := UpOrWait(cctx, svc, nil, 50*time.Millisecond); err != nil {
		t.Fatalf("the schema is current, yet the service role did not go on: %v", err)
	}
	// An old syncer binary (it always called Up) given the service role's
	// DSN: nothing is pending, so it goes on too.
	if err := Up(cctx, svc); err != nil {
		t.Fatalf("Up as the service role on a current schema: %v", err)
	}
	if owns, err := OwnsLedger(ctx, svc); err != nil || owns {
		t.Fatalf("service role owns the ledger: %v %v", owns, err)
	}
	if owns, err := OwnsLedger(ctx, owner); err != nil || !owns {
		t.Fatalf("the owner: %v %v", owns, err)
	}
	// Every table is readable (a syncer reads rollouts, cohorts, reports).
	var unreadable []string
	rows, err := svc.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		unreadable = append(unreadable, s)
	}
	rows.Close()
	if len(unreadable) > 0 {
		t.Errorf("yawp_service cannot read %v", unreadable)
	}
	// It works: a document, its ledger entry.
	for _, q := range []string{
		`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at) VALUES ('d', 's', 'u', '', 'x', 1, 0, now(), now())`,
		`UPDATE documents SET content = 'y', revision = 2 WHERE doc_id = 'd'`,
		`INSERT INTO save_ledger (doc_id, seq, kind, tenant, at, body, prev_hash, hash) VALUES ('d', 1, 'created', 's', now(), '{}', '\x00', '\x01')`,
		`SELECT count(*) FROM save_ledger`,
	} {
		if _, err := svc.Exec(ctx, q); err != nil {
			t.Errorf("the service role cannot do its work: %.60s: %v", q, err)
		}
	}
	// It cannot touch the ledger or the schema.
	for _, q := range []string{
		`ALTER TABLE save_ledger DISABLE TRIGGER USER`,
		`ALTER TABLE save_ledger DISABLE TRIGGER save_ledger_no_update`,
		`DELETE FROM save_ledger WHERE doc_id = 'd'`,
		`UPDATE save_ledger SET body = '{"forged":true}' WHERE doc_id = 'd'`,
		`TRUNCATE save_ledger`,
		`DROP TABLE save_ledger`,
		`DROP TRIGGER save_ledger_no_update ON save_ledger`,
		`CREATE TABLE sneaky (x int)`,
		`INSERT INTO schema_migrations (version_id, is_applied) VALUES (999, true)`,
	} {
		if _, err := svc.Exec(ctx, q); err == nil {
			t.Errorf("the service role may: %s", q)
		}
	}
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM save_ledger WHERE doc_id = 'd'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("ledger rows: %d %v", n, err)
	}

	// A schema behind this binary: the service role waits (it may not
	// migrate), and goes on once the owner has migrated.
	if _, err := owner.Exec(ctx, `DELETE FROM schema_migrations WHERE version_id = $1`, Latest()); err != nil {
		t.Fatal(err)
	}
	// Long enough for the first queries on a busy machine (300 ms ran out
	// before the role's check had an answer under CI's load).
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := UpOrWait(wctx, svc, nil, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "may not migrate") {
		t.Fatalf("behind the schema, the service role: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- UpOrWait(ctx, svc, nil, 50*time.Millisecond) }()
	if _, err := owner.Exec(ctx, `INSERT INTO schema_migrations (version_id, is_applied) VALUES ($1, true)`, Latest()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the service role kept waiting after the owner migrated")
	}
}
