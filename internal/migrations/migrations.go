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
	"fmt"
	"io/fs"

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
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("migrations: apply: %w", err)
	}
	return nil
}
