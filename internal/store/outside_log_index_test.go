package store

import (
	"context"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestLookupsByDocumentReadAFewPagesOfALongOutsideLog: outside_changes
// logs every write the legacy application makes behind the gateway, and
// grows for as long as it runs. Support asking what happened to one
// document, and the syncer recording one divergence, read the log by
// document; before migration 00018 each such lookup read the whole of it
// (at 3 million rows, 0.1-0.3 s of a core per request). The server counts
// the pages each statement touched (pg_stat_statements): a lookup by
// document reads a few, whatever the log's length.
func TestLookupsByDocumentReadAFewPagesOfALongOutsideLog(t *testing.T) {
	ctx := t.Context()
	srv, err := pgharness.Start(ctx, pgharness.Options{Settings: pgharness.StatementStatsSettings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	dsn, err := srv.CreateDatabase(ctx, "outside_log")
	if err != nil {
		t.Fatal(err)
	}
	e := setupOn(t, dsn)
	cs := e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "gone", Tenant: "t", User: "alice", Content: "Hello"})
	e.submit(Request{Kind: KindSave, Doc: "gone", Tenant: "t", User: "alice", Content: "Hello, my essay"})
	e.submit(Request{Kind: KindCreate, Doc: "kept", Tenant: "t", User: "bob", Content: "Hi"})
	// A school year of the legacy application's writes to other documents.
	const logged = 200_000
	if _, err := e.pool.Exec(ctx, `INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch)
		SELECT 'legacy-' || (i % 20000), 0, i, CASE WHEN i % 10 = 0 THEN 'DELETE' ELSE 'UPDATE' END, 't', 0
		FROM generate_series(1, $1) i`, logged); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM documents WHERE doc_id = 'gone'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `ANALYZE outside_changes`); err != nil {
		t.Fatal(err)
	}
	var tablePages int64
	if err := e.pool.QueryRow(ctx, `SELECT pg_relation_size('outside_changes') / current_setting('block_size')::int`).Scan(&tablePages); err != nil {
		t.Fatal(err)
	}
	if err := pgharness.EnableStatementStats(ctx, e.pool); err != nil {
		t.Fatal(err)
	}
	lookup := func() {
		ev := e.evidence(EvidenceQuery{Doc: "gone", Tenant: "t"})
		if ev.Exists || !strings.Contains(ev.Proof.Summary, "deleted outside the gateway") {
			t.Fatalf("evidence of the deleted document: exists %v, %q", ev.Exists, ev.Proof.Summary)
		}
		if err := e.eng.RecordDivergence(ctx, "kept", DivergenceOutOfBand, "c", cs.Epoch, "verification: texts differ"); err != nil {
			t.Fatal(err)
		}
	}
	// Once first, so that what is counted is the lookups, not the
	// catalog pages a connection reads the first time it meets a table.
	lookup()
	if _, err := e.pool.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		t.Fatal(err)
	}
	lookup()
	if n := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'kept'`); n != 1 {
		t.Fatalf("%d divergences of kept recorded, want 1", n)
	}

	rows, err := e.pool.Query(context.WithoutCancel(ctx), `
		SELECT regexp_replace(query, '\s+', ' ', 'g'), calls, (shared_blks_hit + shared_blks_read) / calls
		FROM pg_stat_statements WHERE query LIKE '%outside_changes%' AND query NOT LIKE '%pg_stat_statements%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	lookups := 0
	for rows.Next() {
		var q string
		var calls, pages int64
		if err := rows.Scan(&q, &calls, &pages); err != nil {
			t.Fatal(err)
		}
		lookups++
		t.Logf("%d pages a call (%d calls): %.140s", pages, calls, q)
		// A lookup through an index reads its few levels and rows; the
		// other tables these statements read are a handful of rows here.
		if pages > 20 {
			t.Errorf("a lookup by document read %d pages of a log of %d (%d rows): %.200s", pages, tablePages, logged, q)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if lookups < 2 {
		t.Fatalf("%d statements read outside_changes; want evidence's and the divergence's", lookups)
	}
}
