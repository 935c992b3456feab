package pgharness

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StatementStatsSettings are the server settings a benchmark adds to
// [Options.Settings] to print [PrintStatementStats] afterwards:
// pg_stat_statements loaded (with utility statements and planning
// time) and WAL I/O timed.
func StatementStatsSettings() map[string]string {
	return map[string]string{"shared_preload_libraries": "pg_stat_statements",
		"pg_stat_statements.track_utility": "on", "pg_stat_statements.track_planning": "on", "track_wal_io_timing": "on"}
}

// Querier is what the statement statistics are read with: a *pgx.Conn
// or a *pgxpool.Pool.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EnableStatementStats creates pg_stat_statements in the database q is
// connected to (the server must run with [StatementStatsSettings]).
func EnableStatementStats(ctx context.Context, q Querier) error {
	_, err := q.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
	return err
}

// PrintStatementStats writes the 25 statements that took the most server
// time (calls, rows, execution and planning time, mean, WAL, blocks), the
// documents table's updates (how many were HOT) and the server's WAL
// flushes, for a benchmark's -pgstats.
func PrintStatementStats(ctx context.Context, q Querier, w io.Writer) error {
	rows, err := q.Query(ctx, `
		SELECT calls, rows, total_exec_time, total_plan_time, mean_exec_time, wal_records, wal_fpi, wal_bytes, shared_blks_hit + shared_blks_read + shared_blks_dirtied, regexp_replace(query, '\s+', ' ', 'g')
		FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "calls\trows\texec ms\tplan ms\tmean µs\tWAL recs\tWAL FPIs\tWAL KiB\tblocks\tstatement")
	for rows.Next() {
		var calls, n, walRecs, walFPI, blocks int64
		var execMS, plan, mean, walBytes float64
		var s string
		if err := rows.Scan(&calls, &n, &execMS, &plan, &mean, &walRecs, &walFPI, &walBytes, &blocks, &s); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.1f\t%d\t%d\t%.0f\t%d\t%.90s\n", calls, n, execMS, plan, mean*1000, walRecs, walFPI, walBytes/1024, blocks, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var upd, hot int64
	if err := q.QueryRow(ctx, `SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'documents'`).Scan(&upd, &hot); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ndocuments: %d row updates, %d of them HOT\n", upd, hot)
	// The whole run's WAL (a peer's too): how often it was flushed and
	// what a flush cost (track_wal_io_timing).
	var recs, bytes, writes, syncs int64
	var writeMs, syncMs float64
	if err := q.QueryRow(ctx, `SELECT wal_records, wal_bytes::bigint, wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal`).
		Scan(&recs, &bytes, &writes, &syncs, &writeMs, &syncMs); err != nil {
		return err
	}
	fmt.Fprintf(w, "WAL: %d records, %.1f MiB, %d writes (%.0f µs each), %d syncs (%.0f µs each)\n", recs, float64(bytes)/(1<<20),
		writes, 1000*writeMs/float64(max(1, writes)), syncs, 1000*syncMs/float64(max(1, syncs)))
	return nil
}
