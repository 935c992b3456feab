// Command benchstore is hack/bench-store.sh's driver: it starts a durable
// throwaway PostgreSQL (fsync on), measures pgbench's single-row commit
// rate and the store's legacy saves and Yjs updates at 1, 16 and 64
// concurrent writers on that same server, beside each kind's own rows
// written one transaction per save by pgbench, and prints a table with
// ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/gotune"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/store/storebench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchstore:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	dur := flag.Duration("duration", 5*time.Second, "length of each measurement")
	writersFlag := flag.String("writers", "1,16,64,256", "concurrent writers")
	pgbench := flag.String("pgbench", "/usr/bin/pgbench", "pgbench binary")
	lanes := flag.Int("lanes", 0, "group-commit lanes (0: the store's default)")
	gather := flag.Duration("gather", 0, "group-commit gather delay (0: the store's default; negative: none)")
	kinds := flag.String("kinds", storebench.Legacy+","+storebench.Yjs, "workloads to run")
	pgstats := flag.Bool("pgstats", false, "load pg_stat_statements and print the store's statements by server time after the runs")
	memLimit := flag.Int64("memory-limit", 2<<30, "memory limit in bytes the store runs under, as a syncer pod's limit reaches it (0: none, the default collector)")
	docBytes := flag.Int("doc-bytes", 0, "each document's text when created: about this many bytes of prose (0: empty)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the store's side to this file")
	flag.Parse()
	ctx := context.Background()
	// The store's process sized as a syncer's under a pod's memory limit.
	gc := gotune.Decide(func(k string) string {
		if k == contract.EnvMemoryLimit && *memLimit > 0 {
			return strconv.FormatInt(*memLimit, 10)
		}
		return os.Getenv(k)
	}, gotune.SyncerGCPercent)
	gotune.Apply(gc)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// pgbench opens a connection per client.
	opts := pgharness.Options{Fsync: true, Settings: map[string]string{"max_connections": "600"}}
	if *pgstats {
		maps.Copy(opts.Settings, pgharness.StatementStatsSettings())
	}
	srv, err := pgharness.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	dsn, err := srv.CreateDatabase(ctx, "bench")
	if err != nil {
		return err
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool); err != nil {
		return err
	}
	if *pgstats {
		if err := pgharness.EnableStatementStats(ctx, pool); err != nil {
			return err
		}
		defer func() {
			if err == nil {
				err = pgharness.PrintStatementStats(ctx, pool, os.Stdout)
			}
		}()
	}
	eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: "bench/bench", Holder: "bench", Lanes: *lanes, GatherDelay: *gather,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer eng.Close()
	var version string
	if out, err := exec.Command(*pgbench, "--version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("PostgreSQL at 127.0.0.1:%d, fsync on, synchronous_commit on; %s; %v per measurement; %d CPUs, load %s\n",
		srv.Port(), version, *dur, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	if gc.GCPercent > 0 {
		fmt.Printf("Go collector of the store's process: GOGC=%d, soft limit %d MiB (%s)\n", gc.GCPercent, gc.MemoryLimit>>20, gc.Reason)
	} else {
		fmt.Printf("Go collector of the store's process: as the runtime is configured (%s)\n", gc.Reason)
	}
	fmt.Printf("each save types one character into its writer's document; documents start with %d bytes of text\n", *docBytes)
	fmt.Println("ratio = store saves/s over pgbench tps at the same concurrency; saves/commit = requests per group commit;")
	fmt.Println("pgbench <kind> rows = the rows a save of that kind writes (document row, revision, ledger entry; Yjs: and the update), in one statement")
	fmt.Println("and one commit per save, on copies of the store's tables; vs rows = store saves/s over its tps at the same concurrency")
	if *docBytes > 0 {
		fmt.Println("pgbench row rewrite = the write-through store's own write per save, alone: a document-sized row rewritten with one character typed, one per")
		fmt.Println("transaction; vs rewrite = store saves/s over its tps at the same concurrency")
	}
	fmt.Println("CPU µs = CPU time per save or transaction: PostgreSQL's processes, and the client's (the store with its writers, or pgbench)")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\twriters\tsaves/s\tp50 ms\tp99 ms\tsaves/commit\tgather µs\tbuild µs\tsend+commit µs\ttext at end\tPG CPU µs\tclient CPU µs\tpgbench tps\tratio\tvs rows\t"+
		map[bool]string{true: "vs rewrite\t"}[*docBytes > 0])
	// The best rate each side reached at any concurrency: the rate
	// PostgreSQL sustains for single-row commits is pgbench's best.
	type best struct {
		rate    float64
		writers int
	}
	peaks := map[string]best{}
	grown, saved := map[string]map[string]int64{}, map[string]int64{} // per workload: bytes per table, saves
	note := func(kind string, w int, rate float64) {
		if rate > peaks[kind].rate {
			peaks[kind] = best{rate, w}
		}
	}
	for _, ws := range strings.Split(*writersFlag, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(ws))
		if err != nil {
			return err
		}
		pg0 := serverCPU(srv.PID())
		pb, err := storebench.PGBench(ctx, *pgbench, dsn, w, *dur)
		if err != nil {
			return err
		}
		tps := pb.TPS
		fmt.Fprintf(tw, "pgbench single-row commit\t%d\t%.0f\t\t\t1\t\t\t\t\t%s\t%s\t%.0f\t1.00\t\t\n", w, tps,
			perOp(serverCPU(srv.PID())-pg0, pb.Txns), perOp(pb.ClientCPU, pb.Txns), tps)
		note("pgbench", w, tps)
		var rewrite float64
		if *docBytes > 0 {
			pg0 := serverCPU(srv.PID())
			rw, err := storebench.PGBenchRewrite(ctx, *pgbench, dsn, w, *docBytes, *dur)
			if err != nil {
				return err
			}
			rewrite = rw.TPS
			fmt.Fprintf(tw, "pgbench row rewrite\t%d\t%.0f\t\t\t1\t\t\t\t\t%s\t%s\t%.0f\t%.2f\t\t1.00\t\n", w, rewrite,
				perOp(serverCPU(srv.PID())-pg0, rw.Txns), perOp(rw.ClientCPU, rw.Txns), tps, rewrite/tps)
			note("rewrite", w, rewrite)
		}
		// Each kind's own rows, one transaction per save, by pgbench.
		rows := map[string]float64{}
		for _, kind := range strings.Split(*kinds, ",") {
			pg0 := serverCPU(srv.PID())
			sr, err := storebench.PGBenchSaveRows(ctx, *pgbench, dsn, w, *docBytes, kind == storebench.Yjs, *dur)
			if err != nil {
				return err
			}
			rows[kind] = sr.TPS
			fmt.Fprintf(tw, "pgbench %s rows\t%d\t%.0f\t\t\t1\t\t\t\t\t%s\t%s\t%.0f\t%.2f\t1.00\t%s\n", kind, w, sr.TPS,
				perOp(serverCPU(srv.PID())-pg0, sr.Txns), perOp(sr.ClientCPU, sr.Txns), tps, sr.TPS/tps,
				map[bool]string{true: fmt.Sprintf("%.2f\t", sr.TPS/max(1, rewrite))}[*docBytes > 0])
			note(kind+" rows", w, sr.TPS)
		}
		for _, kind := range strings.Split(*kinds, ",") {
			sz0, err := tableBytes(ctx, pool)
			if err != nil {
				return err
			}
			g0, b0, c0 := eng.GatherNanos.Load(), eng.BuildNanos.Load(), eng.CommitNanos.Load()
			pg0, self0 := serverCPU(srv.PID()), selfCPU()
			st, err := storebench.Run(ctx, eng, storebench.Workload{Kind: kind, Prefix: fmt.Sprintf("%s-%d", kind, w), Writers: w, Duration: *dur, DocBytes: *docBytes})
			if err != nil {
				return err
			}
			sz1, err := tableBytes(ctx, pool)
			if err != nil {
				return err
			}
			if grown[kind] == nil {
				grown[kind] = map[string]int64{}
			}
			for t, n := range sz1 {
				grown[kind][t] += n - sz0[t]
			}
			saved[kind] += int64(st.Saves)
			per := float64(st.Saves) / float64(max(1, st.Batches))
			groups := float64(max(1, st.Batches)) * 1000
			pgCPU, selfUsed := serverCPU(srv.PID())-pg0, selfCPU()-self0
			vs := ""
			if rewrite > 0 {
				vs = fmt.Sprintf("%.2f\t", st.PerSecond()/rewrite)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%.0f\t%.0f\t%.0f\t%.1f KiB\t%s\t%s\t%.0f\t%.2f\t%.2f\t%s\n", kind, w, st.PerSecond(),
				ms(st.P50), ms(st.P99), per, float64(eng.GatherNanos.Load()-g0)/groups, float64(eng.BuildNanos.Load()-b0)/groups,
				float64(eng.CommitNanos.Load()-c0)/groups, float64(st.TextBytes)/1024, perOp(pgCPU, int64(st.Saves)), perOp(selfUsed, int64(st.Saves)),
				tps, st.PerSecond()/tps, st.PerSecond()/max(1, rows[kind]), vs)
			note(kind, w, st.PerSecond())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println()
	pg := peaks["pgbench"]
	fmt.Printf("peak: pgbench %.0f tps (%d clients)", pg.rate, pg.writers)
	if rw, ok := peaks["rewrite"]; ok {
		fmt.Printf("; pgbench row rewrite %.0f tps (%d clients)", rw.rate, rw.writers)
	}
	for _, kind := range strings.Split(*kinds, ",") {
		r := peaks[kind+" rows"]
		fmt.Printf("; pgbench %s rows %.0f tps (%d clients)", kind, r.rate, r.writers)
	}
	for _, kind := range strings.Split(*kinds, ",") {
		p := peaks[kind]
		fmt.Printf("; %s %.0f/s (%d writers, ratio %.2f, %.2f of its rows'", kind, p.rate, p.writers, p.rate/max(1, pg.rate), p.rate/max(1, peaks[kind+" rows"].rate))
		if rw, ok := peaks["rewrite"]; ok {
			fmt.Printf(", %.2f of the row rewrite's", p.rate/max(1, rw.rate))
		}
		fmt.Print(")")
	}
	fmt.Println()
	fmt.Println()
	return printDisk(strings.Split(*kinds, ","), grown, saved)
}

// printDisk prints what each workload's saves took on disk per table.
func printDisk(kinds []string, grown map[string]map[string]int64, saved map[string]int64) error {
	fmt.Println("disk per save: what the store's tables (with their indexes and TOAST) grew by over the runs, divided by the saves")
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tsaves\t"+strings.Join(storeTables, " B\t")+" B\ttotal B\t")
	for _, kind := range kinds {
		fmt.Fprintf(tw, "%s\t%d\t", kind, saved[kind])
		var total int64
		for _, t := range storeTables {
			total += grown[kind][t]
			fmt.Fprintf(tw, "%.0f\t", float64(grown[kind][t])/float64(max(1, saved[kind])))
		}
		fmt.Fprintf(tw, "%.0f\t\n", float64(total)/float64(max(1, saved[kind])))
	}
	return tw.Flush()
}

// storeTables are the tables a save writes to.
var storeTables = []string{"documents", "document_revisions", "save_ledger", "yjs_updates", "yjs_snapshots"}

// tableBytes is the size on disk of each of storeTables, with its
// indexes and TOAST.
func tableBytes(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	out := map[string]int64{}
	rows, err := pool.Query(ctx, `SELECT t, pg_total_relation_size(t::regclass) FROM unnest($1::text[]) AS t`, storeTables)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// perOp is d per operation in µs, or "-" when unknown.
func perOp(d time.Duration, n int64) string {
	if d <= 0 || n <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d.Microseconds())/float64(n), 'f', 0, 64)
}
