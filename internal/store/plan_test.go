package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestGroupUpdatePlanProbesTheIndex: under the lanes' settings the row
// update's generic plan (and its check of the rows the group only read)
// probes the primary key even where statistics say
// a sequential scan is cheaper (a small table), which make bench-store
// measured at 53 blocks read per single-row update.
func TestGroupUpdatePlanProbesTheIndex(t *testing.T) {
	ctx := t.Context()
	dsn := pgharness.ForTest(t)
	_, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT 'd' || i, 't', 'u', '', repeat('x', 500), 1, 0, now(), now() FROM generate_series(1, 50) i;
		ANALYZE documents`); err != nil {
		t.Fatal(err)
	}
	plan := func(settings bool) string {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if settings {
			if _, err := tx.Exec(ctx, laneSettings); err != nil {
				t.Fatal(err)
			}
		} else if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			t.Fatal(err)
		}
		// PREPARE outlives the transaction; each call names its own.
		name := map[bool]string{false: "upd_plain", true: "upd_group"}[settings]
		if _, err := tx.Exec(ctx, `PREPARE `+name+`(text[], text[], text[], bigint[], timestamptz, bigint[], int, text[], bigint[]) AS `+updateDocumentsSQL); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE `+name+`('{d1}', '{t}', '{y}', '{2}', now(), '{-1}', 1, '{d2,d3}', '{0,-1}')`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	// The premise: left to statistics, this table gets a sequential scan.
	if p := plan(false); !strings.Contains(p, "Seq Scan on documents") {
		t.Logf("without the group's settings the plan already avoids a sequential scan:\n%s", p)
	}
	// Both the update and the check of the rows the group only read
	// probe it.
	p := plan(true)
	if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Hash Join") || strings.Contains(p, "Merge Join") ||
		strings.Count(p, "Scan using documents_pkey") < 2 {
		t.Fatalf("the group's row update or row check does not probe the primary key:\n%s", p)
	}
}

// TestLargeTextIsCompressedWithLZ4: a save's text over the TOAST threshold
// is stored lz4-compressed in the legacy row and in its revision
// (migration 00008), where the server supports lz4, and reads back whole.
func TestLargeTextIsCompressedWithLZ4(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	var lz4 bool
	if err := e.pool.QueryRow(ctx, `SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	if !lz4 {
		t.Skip("this PostgreSQL was built without lz4: the migration keeps pglz")
	}
	var para strings.Builder
	for i := range 400 {
		fmt.Fprintf(&para, "Sentence %d of a long essay about rivers and the sea. ", i)
	}
	text := para.String()
	e.submit(Request{Kind: KindCreate, Doc: "big", Tenant: "t1", User: "u1", Content: "short"})
	res := e.submit(Request{Kind: KindSave, Doc: "big", Tenant: "t1", User: "u1", BaseRevision: 1, Content: text})
	var doc, rev *string
	if err := e.pool.QueryRow(ctx, `SELECT pg_column_compression(d.content), pg_column_compression(r.content)
		FROM documents d JOIN document_revisions r ON r.doc_id = d.doc_id AND r.revision = $2 WHERE d.doc_id = $1`,
		"big", res.Revision).Scan(&doc, &rev); err != nil {
		t.Fatal(err)
	}
	if doc == nil || *doc != "lz4" || rev == nil || *rev != "lz4" {
		t.Fatalf("%d bytes of text stored with compression %v (row) and %v (revision), want lz4 for both", len(text), deref(doc), deref(rev))
	}
	got, err := e.eng.Read(ctx, "t1", "big")
	if err != nil {
		t.Fatal(err)
	}
	if got.Content != text {
		t.Fatalf("read back %d bytes, want the %d saved", len(got.Content), len(text))
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestLaneConnectionsKeepTheirSettings: the settings a group commit relies
// on hold on the lanes' connections whatever the database's defaults say:
// a save is acknowledged only once durable even where the database turned
// synchronous_commit off, and the syncer's own writes of legacy rows are
// not taken for outside changes.
func TestLaneConnectionsKeepTheirSettings(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	if _, err := e.pool.Exec(ctx, `DO $$ BEGIN
		EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database());
		EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_custom_plan', current_database());
		EXECUTE format('ALTER DATABASE %I SET enable_seqscan = on', current_database());
	END $$`); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "a"})
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "ab", BaseRevision: 1}); r.Revision != 2 {
		t.Fatalf("save: %+v", r)
	}
	if n := e.count(`SELECT count(*) FROM outside_changes`); n != 0 {
		t.Fatalf("the syncer's own writes were logged as %d outside changes", n)
	}
	// The connection the save used, opened after the defaults changed.
	conn, err := e.eng.lanePool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for name, want := range map[string]string{"synchronous_commit": "on", "yawp.syncer": "on", "plan_cache_mode": "force_generic_plan",
		"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"} {
		var got string
		if err := conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s on a lane connection = %q, want %q", name, got, want)
		}
	}
	// The premise: any other new connection gets the database's defaults.
	other, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var sc string
	if err := other.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&sc); err != nil {
		t.Fatal(err)
	}
	if sc != "off" {
		t.Fatalf("a new connection has synchronous_commit = %s after ALTER DATABASE", sc)
	}
}
