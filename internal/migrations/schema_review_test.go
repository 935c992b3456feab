package migrations

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// TestUpgradeFromAnEarlyReleaseDoesNotQueueSavesBehindAReader: a release
// at migration 6 or 7 upgrades to this one while its syncers keep saving
// and a long transaction reads documents (pg_dump, a report). Migrations
// 3, 4, 7 and 8 changed documents and revisions (DROP/CREATE TRIGGER, SET
// COMPRESSION, a constraint) without the lock_timeout the later ones
// have: their ACCESS EXCLUSIVE request queued behind the reader and every
// save of every shard behind it (a save waited out the test's 5 s). They
// wait at most 2 s now and are tried again, and saves go on meanwhile.
func TestUpgradeFromAnEarlyReleaseDoesNotQueueSavesBehindAReader(t *testing.T) {
	for _, from := range []int64{6, 7} {
		t.Run(fmt.Sprintf("from%d", from), func(t *testing.T) { upgradeUnderAReader(t, from, "documents") })
	}
}

// TestServiceRoleOwningTheDatabaseIsWarnedOf: the syncers' login role is
// in yawp_service as docs/operations.md says, but it owns the database
// (CREATE DATABASE yawp OWNER app is the common setup on a managed
// server). On PostgreSQL 15 the database's owner owns schema public
// (pg_database_owner), and a schema's owner may drop every table in it:
// the service role could drop the ledger, and OwnsLedger (the syncer's
// warning at start) said it owned nothing. It counts the ledger's schema
// now.
func TestServiceRoleOwningTheDatabaseIsWarnedOf(t *testing.T) {
	ctx := t.Context()
	dsn, owner := ownerPool(t)
	if err := Up(ctx, owner); err != nil {
		t.Fatal(err)
	}
	svc := serviceRole(t, owner, dsn)
	var role string
	if err := svc.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	db := strings.TrimPrefix(u.Path, "/")
	if _, err := owner.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` OWNER TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = owner.Exec(context.Background(), `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` OWNER TO CURRENT_USER`)
	})
	if _, err := owner.Exec(ctx, `INSERT INTO save_ledger (doc_id, seq, kind, tenant, at, body, prev_hash, hash)
		VALUES ('essay-1', 1, 'committed', 'school-1', now(), '{}', '\x00', '\x01')`); err != nil {
		t.Fatal(err)
	}
	owns, err := OwnsLedger(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	_, dropErr := svc.Exec(ctx, `DROP TABLE save_ledger`)
	if !owns {
		t.Fatalf("OwnsLedger said false for a yawp_service member that owns the database (it could drop the ledger: %v): no warning at start", dropErr == nil)
	}
}

// TestGoingDownFromPreservedTitlesKeepsThem: migration 11's Down dropped
// preserved_content.title, with the title of every save kept aside (a
// student's conflicting save) in it, without a word. As migration 9's
// Down refuses while splices exist, 11's refuses while titles do.
func TestGoingDownFromPreservedTitlesKeepsThem(t *testing.T) {
	ctx := t.Context()
	_, pool := ownerPool(t)
	upTo(t, pool, 11)
	if _, err := pool.Exec(ctx, `INSERT INTO preserved_content (doc_id, preserved_id, base_revision, content, reason, saved_by, saved_at, title)
		VALUES ('essay-1', 1, 3, 'my draft', 'conflict', 'alice', now(), 'My essay, final title')`); err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(), goose.WithTableName("schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	_, downErr := p.Down(ctx)
	var title *string
	err = pool.QueryRow(ctx, `SELECT title FROM preserved_content WHERE doc_id = 'essay-1'`).Scan(&title)
	if downErr == nil && (err != nil || title == nil) {
		t.Fatalf("migration 11 went down with a student's preserved title in preserved_content: the title is gone (%v)", err)
	}
}

// TestTablesOfLaterMigrationsAreGrantedWhoeverMigrates: 00016 grants
// yawp_service the tables later migrations create through ALTER DEFAULT
// PRIVILEGES, which hold only for tables the role that ran 00016 creates.
// The operator's DSN moved to a second login role in the owning role (a
// password rotated with a second login role): the next upgrade's new
// tables belonged to that role, yawp_service got nothing on them, and
// every syncer of the new version failed on them. Every migration run now
// grants what 00016 does on every table there is.
func TestTablesOfLaterMigrationsAreGrantedWhoeverMigrates(t *testing.T) {
	ctx := t.Context()
	dsn, admin := ownerPool(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	ownerRole, rotated := "yawp_owner_"+suffix, "yawp_owner2_"+suffix
	u, _ := url.Parse(dsn)
	db := strings.TrimPrefix(u.Path, "/")
	for _, q := range []string{
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN CREATE ROLE yawp_service NOLOGIN; END IF; END $$`,
		`CREATE ROLE ` + ownerRole + ` LOGIN`,
		`CREATE ROLE ` + rotated + ` LOGIN IN ROLE ` + ownerRole,
		`GRANT CREATE ON SCHEMA public TO ` + ownerRole,
		`GRANT CREATE ON DATABASE ` + pgx.Identifier{db}.Sanitize() + ` TO ` + ownerRole,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	as := func(role string) *pgxpool.Pool {
		v := *u
		v.User = url.User(role)
		p, err := pgxpool.New(ctx, v.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	first := as(ownerRole)
	upTo(t, first, 20) // an earlier release, migrated as the owner
	first.Close()
	// The password rotated: the operator's DSN names the second role.
	second := as(rotated)
	if err := Up(ctx, second); err != nil {
		t.Fatal(err)
	}
	second.Close()
	svc := serviceRole(t, admin, dsn)
	rows, err := svc.Query(ctx, `SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
		  AND NOT has_table_privilege(c.oid, 'SELECT, INSERT') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var denied []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		if s != "save_ledger" && s != "schema_migrations" {
			denied = append(denied, s)
		}
	}
	rows.Close()
	if len(denied) > 0 {
		var e error
		_, e = svc.Exec(ctx, `SELECT count(*) FROM `+denied[0])
		t.Fatalf("after an upgrade migrated by a second login role of the owner, yawp_service may not read or write %v (%v)", denied, e)
	}
	t.Cleanup(func() {
		for _, q := range []string{`DROP OWNED BY ` + rotated + `, ` + ownerRole + ` CASCADE`, `DROP ROLE ` + rotated, `DROP ROLE ` + ownerRole} {
			_, _ = admin.Exec(context.Background(), q)
		}
	})
}
