// Command syncer is the shard's persistence engine, the second container of
// every sync-gateway pod: the only writer of its shard's documents. It
// applies migrations, takes its shard (advisory lock + shard epoch), serves
// the gateway's internal API and heartbeats its shard report.
//
// Configuration (flags override the environment the StatefulSet sets):
//
//	--database-url   DATABASE_URL         PostgreSQL DSN
//	--rollout        YAWP_ROLLOUT         "namespace/name" of the PersistenceRollout
//	--shards         YAWP_SHARDS          number of shards
//	--shard          POD_NAME's ordinal   this shard ("demo-gateway-3" -> 3)
//	--internal-token YAWP_INTERNAL_TOKEN  internal API token (default: derived from YAWP_TOKEN_KEY)
//	--listen         :8081                internal API address
//	--metrics-listen :9091                /metrics address ("" disables)
//	--heartbeat      2s                   shard report interval
//	--cache-docs     1024                 documents kept in memory
//	--backfill-rate  500                  backfill documents per second (negative: unlimited)
//	--backfill-batch 100                  documents per backfill transaction
//	--verify-every   1s                   incremental verification interval
//	--verify-full-every 1m                full verification interval
//	--pprof-listen   ""                   Go runtime profiles at /debug/pprof/ (keep it on loopback)
//
// Local run (what `make dev` does per shard i of N):
//
//	POD_NAME=demo-gateway-0 YAWP_SHARDS=2 YAWP_ROLLOUT=default/demo DATABASE_URL=... YAWP_TOKEN_KEY=... \
//	  bin/syncer --listen 127.0.0.1:18081 --metrics-listen 127.0.0.1:19091
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/debugserver"
	"github.com/yawp/persistence-operator/internal/gotune"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "syncer:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := syncer.Config{}
	shards, _ := strconv.Atoi(os.Getenv(contract.EnvShards))
	shard := -1
	if pod := os.Getenv(contract.EnvPodName); pod != "" {
		if n, err := syncer.ShardFromPodName(pod); err == nil {
			shard = n
		}
	}
	// The rollout's spec.gateway.syncer reaches the syncer as environment
	// variables; they are the flags' defaults.
	backfillRate, err := envFloat(contract.EnvBackfillRate, 500)
	if err != nil {
		return err
	}
	fullEvery, err := envDuration(contract.EnvVerifyFullEvery, time.Minute)
	if err != nil {
		return err
	}
	gapAfter, err := envDuration(contract.EnvGapAfter, 10*time.Minute)
	if err != nil {
		return err
	}
	token := os.Getenv(contract.EnvInternalToken)
	if token == "" {
		token = auth.InternalToken(auth.NormalizeKey(os.Getenv(contract.EnvTokenKey)))
	}
	flag.StringVar(&cfg.Listen, "listen", fmt.Sprintf(":%d", contract.SyncerPort), "internal API listen address")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", fmt.Sprintf(":%d", contract.SyncerMetricsPort), "metrics listen address (empty disables)")
	flag.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv(contract.EnvDatabaseURL), "PostgreSQL URL (env "+contract.EnvDatabaseURL+")")
	flag.StringVar(&cfg.Rollout, "rollout", os.Getenv(contract.EnvRollout), "rollout namespace/name (env "+contract.EnvRollout+")")
	flag.StringVar(&cfg.RolloutUID, "rollout-uid", os.Getenv(contract.EnvRolloutUID),
		"the PersistenceRollout object's UID: no shard is taken in a database whose rollout another object registered (env "+contract.EnvRolloutUID+"; empty: not checked)")
	flag.IntVar(&cfg.Shards, "shards", shards, "number of shards (env "+contract.EnvShards+")")
	flag.IntVar(&cfg.Shard, "shard", shard, "this shard (default: the ordinal of "+contract.EnvPodName+")")
	flag.StringVar(&cfg.InternalToken, "internal-token", token, "internal API token (env "+contract.EnvInternalToken+", default derived from "+contract.EnvTokenKey+")")
	flag.DurationVar(&cfg.Heartbeat, "heartbeat", 2*time.Second, "shard report interval")
	flag.IntVar(&cfg.CacheDocs, "cache-docs", 1024, "documents kept in memory")
	flag.Int64Var(&cfg.CacheBytes, "cache-bytes", 0, "estimated bytes of the documents kept in memory (0: a third of the memory limit, else 512 MiB)")
	flag.IntVar(&cfg.Lanes, "lanes", 0, "group-commit lanes, each committing on its own connection (0: the store's default, 2)")
	flag.Float64Var(&cfg.Integrity.BackfillRate, "backfill-rate", backfillRate, "backfill rate limit in documents per second (negative: unlimited; env "+contract.EnvBackfillRate+")")
	flag.IntVar(&cfg.Integrity.BackfillBatch, "backfill-batch", 100, "documents per backfill transaction")
	flag.DurationVar(&cfg.Integrity.VerifyEvery, "verify-every", time.Second, "interval of incremental verification passes")
	flag.DurationVar(&cfg.Integrity.VerifyFullEvery, "verify-full-every", fullEvery, "interval of full verification passes (env "+contract.EnvVerifyFullEvery+")")
	flag.DurationVar(&cfg.Integrity.GapAfter, "gap-after", gapAfter, "how long a client may hold operations the server lacks before they count as an evidence gap (env "+contract.EnvGapAfter+")")
	pprofListen := flag.String("pprof-listen", "", "address serving Go runtime profiles at /debug/pprof/ (empty: off; keep it on loopback and reach it with kubectl port-forward)")
	flag.Parse()
	cfg.PodName = os.Getenv(contract.EnvPodName)
	if cfg.PodName == "" {
		cfg.PodName, _ = os.Hostname()
	}
	if cfg.Shard < 0 {
		return fmt.Errorf("no shard: set --shard or %s=<name>-<ordinal>", contract.EnvPodName)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	gc := gotune.Decide(os.Getenv, gotune.SyncerGCPercent)
	gotune.Apply(gc)
	if cfg.CacheBytes == 0 && gc.MemoryLimit == 0 {
		// GOGC set by hand leaves the Go memory limit alone; the cache
		// is still sized to the container.
		if n := gotune.ContainerLimit(os.Getenv); n > 0 {
			cfg.CacheBytes = store.DefaultCacheBytes(n)
		}
	}
	cfg.Logger.Info("garbage collector", "gc_percent", gc.GCPercent, "memory_limit", gc.MemoryLimit, "why", gc.Reason)
	stopProfiles, err := debugserver.Start(*pprofListen, cfg.Logger)
	if err != nil {
		return err
	}
	defer stopProfiles()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return syncer.Serve(ctx, cfg)
}

// envFloat reads a number from the environment (def when unset).
func envFloat(name string, def float64) (float64, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a number", name, v)
	}
	return f, nil
}

// envDuration reads a Go duration from the environment (def when unset).
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: not a positive duration such as 1m", name, v)
	}
	return d, nil
}
