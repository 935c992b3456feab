// Command benchintegrity is hack/bench-integrity.sh's driver: on a durable
// throwaway PostgreSQL (fsync on) it creates N legacy-only documents of one
// cohort on one shard, then measures in the same run, on the same server:
// a plain SELECT scan of the documents (doc_id, content), the backfill
// (store.Engine.Backfill in the syncer's batches, every document given its
// genesis under the fenced save discipline), and a full verification pass
// (store.Engine.VerifyDocs: legacy content against the materialised Yjs
// text), in documents per second, with the ratio to the scan.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
)

const (
	rollout = "bench/integrity"
	cohort  = "all"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchintegrity:", err)
		os.Exit(1)
	}
}

func run() error {
	docsFlag := flag.String("docs", "10000,100000", "document counts, comma-separated")
	batch := flag.Int("backfill-batch", 100, "documents per backfill transaction")
	vbatch := flag.Int("verify-batch", 256, "documents per verification statement")
	size := flag.Int("size", 2000, "bytes of legacy text per document")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	srv, err := pgharness.Start(ctx, pgharness.Options{Fsync: true})
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "documents\tSELECT scan docs/s\tbackfill docs/s\tbackfill/scan\tverify docs/s\tverify/scan\t")
	for i, f := range strings.Split(*docsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -docs %q", f)
		}
		dsn, err := srv.CreateDatabase(ctx, fmt.Sprintf("bench%d", i))
		if err != nil {
			return err
		}
		scan, bf, ver, err := measure(ctx, dsn, n, *size, *batch, *vbatch)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.3f\t%.0f\t%.3f\t\n", n, scan, bf, bf/scan, ver, ver/scan)
	}
	return tw.Flush()
}

func measure(ctx context.Context, dsn string, n, size, batch, vbatch int) (scan, backfill, verify float64, err error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return 0, 0, 0, err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool); err != nil {
		return 0, 0, 0, err
	}
	dp := dataplane.NewPostgres(pool)
	if err := dp.RegisterRollout(ctx, rollout, "", 1); err != nil {
		return 0, 0, 0, err
	}
	tenants := make([]string, 20)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("school-%02d", i)
	}
	cs, err := dp.FreezeCohort(ctx, dataplane.CohortKey{Rollout: rollout, Cohort: cohort}, 0, dataplane.Selector{Tenants: tenants}, time.Now())
	if err != nil {
		return 0, 0, 0, err
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT format('doc-%s', lpad(i::text, 7, '0')), format('school-%s', lpad((i % 20)::text, 2, '0')), 'u', 'essay',
		       left(repeat(format('Essay %s, paragraph text with ünïcödé. ', i), $2 / 30 + 1), $2), 1, 0, now(), now()
		FROM generate_series(1, $1) i`, n, size); err != nil {
		return 0, 0, 0, err
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE documents`); err != nil {
		return 0, 0, 0, err
	}
	for _, st := range []string{dataplane.StageDualWrite, dataplane.StageBackfill} {
		if cs, err = dp.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: rollout, Cohort: cohort},
			ExpectEpoch: cs.Epoch, Stage: st, Attempt: 1, Reason: "Bench", At: time.Now()}); err != nil {
			return 0, 0, 0, err
		}
	}

	// Plain scan: every document's ID and content, read to the client.
	t0 := time.Now()
	rows, err := pool.Query(ctx, `SELECT doc_id, content FROM documents WHERE shard = 0`)
	if err != nil {
		return 0, 0, 0, err
	}
	got := 0
	for rows.Next() {
		var id, c string
		if err := rows.Scan(&id, &c); err != nil {
			rows.Close()
			return 0, 0, 0, err
		}
		got++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, 0, err
	}
	scan = float64(got) / time.Since(t0).Seconds()

	eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: rollout, Holder: "bench",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, 0, 0, err
	}
	defer eng.Close()

	// Backfill, as the syncer does it: candidates after the checkpoint, a
	// fenced transaction per batch.
	t0 = time.Now()
	cp := store.BackfillCheckpoint{Rollout: rollout, Cohort: cohort, Epoch: cs.Epoch}
	done := 0
	for {
		ids, err := dp.BackfillCandidates(ctx, rollout, cohort, 0, cp.AfterDoc, batch)
		if err != nil {
			return 0, 0, 0, err
		}
		if len(ids) == 0 {
			break
		}
		res, err := eng.Backfill(ctx, cp, ids)
		if err != nil {
			return 0, 0, 0, err
		}
		done += res.Backfilled
		cp.AfterDoc = ids[len(ids)-1]
	}
	backfill = float64(done) / time.Since(t0).Seconds()
	if done != n {
		return 0, 0, 0, fmt.Errorf("backfilled %d of %d documents", done, n)
	}

	// A full verification pass.
	t0 = time.Now()
	docs, err := dp.ShardCohortDocs(ctx, rollout, 0, []string{cohort})
	if err != nil {
		return 0, 0, 0, err
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.Doc
	}
	match := 0
	for i := 0; i < len(ids); i += vbatch {
		res, err := eng.VerifyDocs(ctx, ids[i:min(i+vbatch, len(ids))])
		if err != nil {
			return 0, 0, 0, err
		}
		for _, r := range res {
			if r.Verdict == store.VerifyMatch {
				match++
			}
		}
	}
	verify = float64(len(ids)) / time.Since(t0).Seconds()
	if match != n {
		return 0, 0, 0, fmt.Errorf("verified %d of %d documents", match, n)
	}
	return scan, backfill, verify, nil
}
