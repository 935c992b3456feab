package migrations

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

// schemaOf is the database's schema as its catalogs describe it: every
// column (with its compression), index, constraint, trigger and
// function of the public schema. Not privileges: the service role is the
// cluster's, and other tests make it.
func schemaOf(ctx context.Context, t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(ctx, `SELECT concat_ws(E'\n',
		(SELECT string_agg(l, E'\n' ORDER BY l) FROM (
			SELECT format('%s.%s %s null=%s default=%s compression=%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
			              NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attcompression) l
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped) x),
		(SELECT string_agg(indexdef, E'\n' ORDER BY indexdef) FROM pg_indexes WHERE schemaname = 'public'),
		-- A constraint added NOT VALID and validated by a later migration
		-- is added NOT VALID again: its validity is the data's, not the
		-- schema's.
		(SELECT string_agg(l, E'\n' ORDER BY l) FROM (
			SELECT format('%s %s', conrelid::regclass, replace(pg_get_constraintdef(oid), ' NOT VALID', '')) l
			FROM pg_constraint WHERE connamespace = 'public'::regnamespace) x),
		(SELECT string_agg(l, E'\n' ORDER BY l) FROM (SELECT pg_get_triggerdef(oid) l FROM pg_trigger WHERE NOT tgisinternal) x),
		(SELECT string_agg(l, E'\n' ORDER BY l) FROM (SELECT pg_get_functiondef(oid) l FROM pg_proc WHERE pronamespace = 'public'::regnamespace) x))`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEveryMigrationGoesDownAndUpAgain: a migration rolled back by hand
// (goose down, after a failed upgrade) leaves the schema the one before
// it, from which it applies again to the same schema. Each migration's
// Down is run from its own version, down to the first.
func TestEveryMigrationGoesDownAndUpAgain(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgharness.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(), goose.WithTableName("schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	for v := Latest(); v > 0; v-- {
		at := schemaOf(ctx, t, pool)
		if _, err := p.Down(ctx); err != nil {
			t.Fatalf("down from %d: %v", v, err)
		}
		below := schemaOf(ctx, t, pool)
		if _, err := p.UpTo(ctx, v); err != nil {
			t.Fatalf("up to %d again: %v", v, err)
		}
		if again := schemaOf(ctx, t, pool); again != at {
			t.Errorf("migration %d down and up again: the schema differs from the first time:\n%s", v, lineDiff(at, again))
		}
		if _, err := p.DownTo(ctx, v-1); err != nil {
			t.Fatalf("down to %d: %v", v-1, err)
		}
		if now := schemaOf(ctx, t, pool); now != below {
			t.Errorf("migration %d's Down a second time left another schema than the first", v)
		}
	}
}

// lineDiff is the lines only one of a and b has, marked - and +.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !inb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ina[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
