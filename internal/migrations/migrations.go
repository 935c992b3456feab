// Package migrations owns the project's PostgreSQL schema: numbered SQL files
// embedded in every binary and applied with goose under a PostgreSQL advisory
// lock, so any number of controllers and syncers may start at once. Every
// table of the project is created here and nowhere else; the queries live
// beside the code that owns each table.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var files embed.FS

// FS returns the numbered migration files.
func FS() fs.FS {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// ErrNotMigrated is returned when the database was reached but its schema
// could not be brought to this binary's version: a migration failed, or
// another process held the migrations' lock for longer than a waiting
// process waits. Binaries of this version cannot run on it.
var ErrNotMigrated = errors.New("the schema could not be brought to this binary's version")

// Up applies every pending migration to the database behind pool, holding a
// session-level advisory lock so concurrent callers apply each file once.
// What it has to say (a schema newer than this binary, a table locked) goes
// to slog.Default.
func Up(ctx context.Context, pool *pgxpool.Pool) error {
	return upLogging(ctx, pool, slog.Default())
}

// upLogging is Up, saying what it has to say in log: a process that logs
// through a logger of its own (a syncer) is read there, and the default
// logger's lines may go elsewhere or look like another process's.
func upLogging(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	db := stdlib.OpenDBFromPool(pool)
	defer func() { _ = db.Close() }()
	return up(ctx, db, log)
}

func up(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	// Waiting processes poll the lock every 5 s for up to 30 minutes: a
	// migration may build an index over a large history (00010).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(5, 360))
	if err != nil {
		return fmt.Errorf("migrations: session locker: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, FS(),
		goose.WithSessionLocker(locker),
		goose.WithTableName("schema_migrations"),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// A migration that changes a table in use waits for its lock at most
	// briefly (lock_timeout in the file) and gives its place in the lock
	// queue up, so saves are not held behind it while a long transaction
	// (a backup, a report) reads the table; it is tried again until the
	// lock comes free, for as long as a waiting process polls (above).
	deadline := time.Now().Add(30 * time.Minute)
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		_, err := provider.Up(ctx)
		if err == nil {
			if at, err := provider.GetDBVersion(ctx); err == nil {
				warnIfNewer(log, at)
			}
			grantService(ctx, db, log)
			return nil
		}
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "55P03" || time.Now().After(deadline) {
			var conn *pgconn.ConnectError
			if errors.As(err, &conn) || ctx.Err() != nil {
				return fmt.Errorf("migrations: apply: %w", err)
			}
			return fmt.Errorf("migrations: apply: %w: %w", ErrNotMigrated, err)
		}
		log.Warn("migrations: a table is locked by another transaction; trying again", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// serviceGrants is what migration 00016 grants yawp_service, as it stands
// for every table and sequence there is now. 00016's default privileges
// hold only for objects the role that ran it creates: the operator's DSN
// moved to another login role of the owning role (a password rotated
// with a second role), the tables later migrations create were not
// granted, and syncers of the new version failed on them.
const serviceGrants = `DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO yawp_service', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO yawp_service', current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO yawp_service', current_schema());
        REVOKE UPDATE, DELETE, TRUNCATE ON save_ledger FROM yawp_service;
        REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM yawp_service;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$`

// grantService grants yawp_service what 00016 does on every table there is
// now, after every migration run: a role that owns none of them grants
// nothing (PostgreSQL warns), and a failure is logged, not returned, since
// the schema is migrated all the same.
func grantService(ctx context.Context, db *sql.DB, log *slog.Logger) {
	if _, err := db.ExecContext(ctx, serviceGrants); err != nil {
		log.Warn("migrations: could not grant yawp_service the tables of the schema", "err", err)
	}
}

// Latest is the highest version among the embedded migrations: the schema
// this binary needs.
func Latest() int64 {
	entries, err := fs.ReadDir(FS(), ".")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	var v int64
	for _, e := range entries {
		prefix, _, _ := strings.Cut(e.Name(), "_")
		if n, err := strconv.ParseInt(prefix, 10, 64); err == nil {
			v = max(v, n)
		}
	}
	return v
}

// Version is the schema's version in the database q reaches: the highest
// migration applied, 0 when none is (or the database is empty).
func Version(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int64, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var at int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM schema_migrations WHERE is_applied`).Scan(&at)
	return at, err
}

// warnIfNewer logs that the schema, at version at, is newer than this
// binary: a later version migrated it, and this one was started after all
// (helm rollback after a failed upgrade). goose applies nothing then and
// says nothing, and the binary runs; whether that is safe is for the later
// version's upgrade notes to say (README: syncers are never rolled back
// past migrations 9 and 10), so the person reading the logs is told.
func warnIfNewer(log *slog.Logger, at int64) {
	if at > Latest() {
		log.Warn("the database schema is newer than this binary: a later version migrated it (a rollback?); running against it. See the upgrade notes of that version before keeping this one",
			"at", at, "binary", Latest())
	}
}

// UpOrWait applies the pending migrations when the connected role may (it
// owns the schema's migrations, or there are none yet and it may create
// tables and is no member of yawp_service); otherwise (a syncer connected as a member of yawp_service,
// which owns nothing) it waits until the schema is at Latest, which the
// operator's role migrates to, polling every interval. It logs through log,
// also what Up would log to slog.Default; a nil log logs no waiting, and
// the rest to slog.Default.
func UpOrWait(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, interval time.Duration) error {
	var may bool
	err := pool.QueryRow(ctx, `
		SELECT CASE WHEN to_regclass('schema_migrations') IS NULL
		            -- A fresh database: whoever may create tables, but not a
		            -- service role (which, on PostgreSQL 14 and older, may
		            -- create in public too, and would own the ledger).
		            THEN has_schema_privilege(current_schema(), 'CREATE')
		                 AND (r.rolsuper OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service')
		                      OR NOT pg_has_role(current_user, 'yawp_service', 'MEMBER'))
		            ELSE pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass('schema_migrations')), 'USAGE')
		       END
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&may)
	if err != nil {
		return fmt.Errorf("migrations: may this role migrate: %w", err)
	}
	if may {
		if log == nil {
			log = slog.Default()
		}
		return upLogging(ctx, pool, log)
	}
	want := Latest()
	for {
		var at int64
		err := pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM schema_migrations WHERE is_applied`).Scan(&at)
		if err == nil && at >= want {
			if log == nil {
				log = slog.Default()
			}
			warnIfNewer(log, at)
			return nil
		}
		if log != nil {
			log.Info("waiting for the schema to be migrated by a role that owns it (the operator's)", "at", at, "need", want, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrations: the schema is at version %d, this binary needs %d, and its database role may not migrate it (the operator's role, which owns it, does): %w", at, want, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// OwnsLedger reports whether the connected role could turn off the
// ledger's append-only protection or drop the ledger: it owns save_ledger
// (or is a superuser), so it may disable the table's triggers, or it owns
// the ledger's schema, so it may drop the table. The owner of a database
// owns its schema public (pg_database_owner, PostgreSQL 15 and later), so
// a role in yawp_service that owns the database counts.
func OwnsLedger(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var owns bool
	err := pool.QueryRow(ctx, `SELECT pg_has_role(current_user, c.relowner, 'USAGE') OR pg_has_role(current_user, n.nspowner, 'USAGE')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('save_ledger')`).Scan(&owns)
	return owns, err
}
