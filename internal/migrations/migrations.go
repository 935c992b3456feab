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
	"time"

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

// Up applies every pending migration to the database behind pool, holding a
// session-level advisory lock so concurrent callers apply each file once.
func Up(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer func() { _ = db.Close() }()
	return up(ctx, db)
}

func up(ctx context.Context, db *sql.DB) error {
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
			return nil
		}
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "55P03" || time.Now().After(deadline) {
			return fmt.Errorf("migrations: apply: %w", err)
		}
		slog.Warn("migrations: a table is locked by another transaction; trying again", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}
