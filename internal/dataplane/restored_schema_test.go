package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/yawp/persistence-operator/internal/migrations"
)

// TestCacheMigratesADatabaseRestoredFromBeforeTheUpgradeAgain: the
// database is restored from a backup taken before the upgrade, so its
// schema is one migration behind (played here by going down one). The
// cache had migrated the DSN once and kept its data plane for good: every
// reconcile failed on the missing table ("relation rollout_claims does not
// exist") and syncers that may not migrate waited at start for good. Get
// now reads the schema's version (at most every SchemaCheck) and opens,
// so migrates, a data plane whose schema went back.
func TestCacheMigratesADatabaseRestoredFromBeforeTheUpgradeAgain(t *testing.T) {
	ctx := context.Background()
	dsn := migratedDSN(t)
	c := &Cache{SchemaCheck: time.Millisecond}
	t.Cleanup(c.Close)
	s, err := c.Get(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/a", "uid-a", 1); err != nil {
		t.Fatal(err)
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS(), goose.WithTableName("schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if at, _ := migrations.Version(ctx, pool); at != migrations.Latest()-1 {
		t.Fatalf("restored schema at %d, want %d", at, migrations.Latest()-1)
	}

	time.Sleep(2 * time.Millisecond)
	s, err = c.Get(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterRollout(ctx, "ns/a", "uid-a", 1); err != nil {
		t.Fatalf("registering on the restored database: %v", err)
	}
	if at, _ := migrations.Version(ctx, pool); at != migrations.Latest() {
		t.Fatalf("schema at %d after a Get, want %d", at, migrations.Latest())
	}
}
