// Command benchstore is hack/bench-store.sh's driver: it starts a durable
// throwaway PostgreSQL (fsync on), measures pgbench's single-row commit
// rate and the store's legacy saves and Yjs updates at 1, 16 and 64
// concurrent writers on that same server, and prints a table with ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

func run() error {
	dur := flag.Duration("duration", 5*time.Second, "length of each measurement")
	writersFlag := flag.String("writers", "1,16,64", "concurrent writers")
	pgbench := flag.String("pgbench", "/usr/bin/pgbench", "pgbench binary")
	lanes := flag.Int("lanes", 0, "group-commit lanes (0: the store's default)")
	flag.Parse()
	ctx := context.Background()
	srv, err := pgharness.Start(ctx, pgharness.Options{Fsync: true})
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
	eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: "bench/bench", Holder: "bench", Lanes: *lanes,
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
	fmt.Println("ratio = store saves/s over pgbench tps at the same concurrency; saves/commit = requests per group commit")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\twriters\tsaves/s\tp50 ms\tp99 ms\tsaves/commit\tpgbench tps\tratio\t")
	for _, ws := range strings.Split(*writersFlag, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(ws))
		if err != nil {
			return err
		}
		tps, err := storebench.PGBench(ctx, *pgbench, dsn, w, *dur)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "pgbench single-row commit\t%d\t%.0f\t\t\t1\t%.0f\t1.00\t\n", w, tps, tps)
		for _, kind := range []string{storebench.Legacy, storebench.Yjs} {
			st, err := storebench.Run(ctx, eng, kind, fmt.Sprintf("%s-%d", kind, w), w, *dur, 0)
			if err != nil {
				return err
			}
			per := float64(st.Saves) / float64(max(1, st.Batches))
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%.0f\t%.2f\t\n", kind, w, st.PerSecond(),
				ms(st.P50), ms(st.P99), per, tps, st.PerSecond()/tps)
		}
	}
	return tw.Flush()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
