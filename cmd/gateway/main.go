// Command gateway is the client-facing server of a sync-gateway pod: the
// legacy write-through REST API under /v1/documents (create, read, list,
// save with If-Match and Idempotency-Key, preserved revisions), Yjs updates
// over HTTP, the evidence API, and the Yjs sync WebSocket at /v1/sync/<doc>
// (internal/syncws over the syncer: see internal/gateway/sync.go). It
// authenticates signed bearer tokens and routes each document to its
// shard's syncer; sync connections for another shard's documents are
// forwarded to that shard's gateway.
//
// Configuration (flags override the environment the StatefulSet sets):
//
//	--listen          :8080                   client API address
//	--metrics-listen  :9090                   /metrics address ("" disables)
//	--syncer          http://127.0.0.1:8081   this pod's syncer
//	--shards          YAWP_SHARDS             number of shards
//	--shard           POD_NAME's ordinal      this pod's shard
//	--peer-pattern    YAWP_PEER_PATTERN       printf pattern (one %d) of a peer shard's syncer URL
//	--peers           ""                      comma-separated syncer URLs of shards 0..N-1 (local runs)
//	--token-key       YAWP_TOKEN_KEY          HMAC key of client tokens
//	--token-key-file  ""                      read the key from a file instead
//	--internal-token  YAWP_INTERNAL_TOKEN     syncer internal API token (default: derived from the token key)
//	--protocol-poll   2s                      how often open sync connections' cohort stages are polled
//	--sync-max-conns-per-user 32              sync WebSocket connections per user
//	--sync-max-conns  YAWP_SYNC_MAX_CONNS     sync WebSocket connections this gateway serves (0: no bound)
//	--pprof-listen    ""                      Go runtime profiles at /debug/pprof/ (keep it on loopback)
//	--spool-dir       YAWP_SPOOL_DIR          keep traces of saves not confirmed here until recorded (the pod: /tmp/unconfirmed-saves)
//
// Local run (what `make dev` does per shard i of N):
//
//	POD_NAME=demo-gateway-0 YAWP_SHARDS=2 YAWP_ROLLOUT=default/demo DATABASE_URL=... YAWP_TOKEN_KEY=... \
//	  bin/gateway --listen 127.0.0.1:18080 --metrics-listen 127.0.0.1:19090 --syncer http://127.0.0.1:18081 \
//	  --peers http://127.0.0.1:18081,http://127.0.0.1:28081
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/debugserver"
	"github.com/yawp/persistence-operator/internal/gateway"
	"github.com/yawp/persistence-operator/internal/gotune"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/syncws"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	shards, _ := strconv.Atoi(os.Getenv(contract.EnvShards))
	shard := -1
	if pod := os.Getenv(contract.EnvPodName); pod != "" {
		if n, err := syncer.ShardFromPodName(pod); err == nil {
			shard = n
		}
	}
	var (
		listen, metricsListen, syncerURL, peerPattern, peers, tokenKey, tokenKeyFile, internalToken string
		pprofListen                                                                                 string
		cfg                                                                                         gateway.Config
		protocolPoll                                                                                time.Duration
		maxConns, maxAllConns                                                                       int
	)
	flag.StringVar(&listen, "listen", fmt.Sprintf(":%d", contract.GatewayPort), "client API listen address")
	flag.StringVar(&metricsListen, "metrics-listen", fmt.Sprintf(":%d", contract.GatewayMetricsPort), "metrics listen address (empty disables)")
	flag.StringVar(&syncerURL, "syncer", fmt.Sprintf("http://127.0.0.1:%d", contract.SyncerPort), "this pod's syncer URL")
	flag.IntVar(&cfg.Shards, "shards", shards, "number of shards (env "+contract.EnvShards+")")
	flag.IntVar(&cfg.SelfShard, "shard", shard, "this pod's shard (default: the ordinal of "+contract.EnvPodName+")")
	flag.StringVar(&peerPattern, "peer-pattern", os.Getenv(contract.EnvPeerPattern), "printf pattern with one %d giving a shard's syncer URL (env "+contract.EnvPeerPattern+")")
	flag.StringVar(&peers, "peers", "", "comma-separated syncer URLs of shards 0..N-1 (overrides --peer-pattern)")
	flag.StringVar(&tokenKey, "token-key", os.Getenv(contract.EnvTokenKey), "token HMAC key (env "+contract.EnvTokenKey+")")
	flag.StringVar(&tokenKeyFile, "token-key-file", "", "file holding the token HMAC key")
	flag.StringVar(&internalToken, "internal-token", os.Getenv(contract.EnvInternalToken), "syncer internal API token (env "+contract.EnvInternalToken+")")
	flag.DurationVar(&protocolPoll, "protocol-poll", 2*time.Second, "how often the cohort stage of open sync connections is polled (protocol flips)")
	flag.IntVar(&maxConns, "sync-max-conns-per-user", 32, "sync WebSocket connections per user")
	flag.IntVar(&maxAllConns, "sync-max-conns", 0, "sync WebSocket connections this gateway holds open; past it new ones are refused with 1013 (0: no bound; env "+contract.EnvSyncMaxConns+", the rollout's spec.gateway.maxConnections)")
	flag.StringVar(&cfg.SpoolDir, "spool-dir", os.Getenv(contract.EnvSpoolDir), "directory keeping the traces of saves whose commit could not be confirmed until they are in their ledgers, so a restarted gateway records them (empty: memory only; env "+contract.EnvSpoolDir+")")
	flag.DurationVar(&cfg.BodyIdleTimeout, "body-idle-timeout", gateway.DefaultBodyIdleTimeout, "how long a request body may send nothing before the request is refused with 408 request_timeout")
	flag.DurationVar(&cfg.BodyTimeout, "body-timeout", gateway.DefaultBodyTimeout, "how long a request body may take in all before the request is refused with 408 request_timeout")
	flag.StringVar(&pprofListen, "pprof-listen", "", "address serving Go runtime profiles at /debug/pprof/ (empty: off; keep it on loopback and reach it with kubectl port-forward)")
	flag.Parse()
	// The environment gives the limit unless the flag does (read after
	// the flags, so an explicit flag overrides a bad value too).
	if !flagSet("sync-max-conns") {
		n, err := envInt(contract.EnvSyncMaxConns)
		if err != nil {
			return err
		}
		maxAllConns = n
	}
	if maxAllConns < 0 {
		return fmt.Errorf("--sync-max-conns=%d: want 0 (no bound) or more", maxAllConns)
	}
	if tokenKeyFile != "" {
		b, err := os.ReadFile(tokenKeyFile)
		if err != nil {
			return err
		}
		tokenKey = string(b)
	}
	tokenKey = string(auth.NormalizeKey(tokenKey))
	if internalToken == "" {
		internalToken = auth.InternalToken([]byte(tokenKey))
	}
	if peers != "" {
		cfg.Peers = strings.Split(peers, ",")
	}
	cfg.Syncer, cfg.PeerPattern, cfg.TokenKey, cfg.InternalToken = syncerURL, peerPattern, []byte(tokenKey), internalToken
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	// A soft limit on the Go heap under the container's memory limit; the
	// collector's target stays the default (gotune.SyncerGCPercent is the
	// syncer's alone).
	gc := gotune.Decide(os.Getenv, 0)
	gotune.Apply(gc)
	cfg.Logger.Info("garbage collector", "memory_limit", gc.MemoryLimit, "why", gc.Reason)
	cfg.Metrics = gateway.NewMetrics()
	cfg.Metrics.SetSyncConnLimit(maxAllConns)
	if tokenKey == "" {
		// The rollout names no token Secret: the gateway runs (its probes
		// answer, the pod does not crash-loop) and accepts no client.
		cfg.Logger.Warn("no token key: every client request is refused (503 no_token_key, WebSocket 4401); set " +
			contract.EnvTokenKey + " (the rollout's spec.gateway.tokenSecretRef), --token-key or --token-key-file")
	}
	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	stopProfiles, err := debugserver.Start(pprofListen, cfg.Logger)
	if err != nil {
		return err
	}
	defer stopProfiles()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	backend := g.NewSyncBackend()
	hub := syncws.NewHub(syncws.Config{Backend: backend, Auth: backend.Auth(),
		Limits: syncws.Limits{MaxConnsPerUser: maxConns, MaxConns: maxAllConns}, Logger: cfg.Logger})
	go backend.WatchProtocols(ctx, hub, protocolPoll)
	srv := &http.Server{Addr: listen, Handler: g.HandlerWithSync(hub), ReadHeaderTimeout: 10 * time.Second}
	if metricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg.MustRegister(cfg.Metrics.Collectors()...)
		mux := http.NewServeMux()
		mux.Handle(contract.PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		msrv := &http.Server{Addr: metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.ListenAndServe() }()
		defer msrv.Close()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	cfg.Logger.Info("serving", "listen", listen, "shards", cfg.Shards, "shard", cfg.SelfShard)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		// Drain sync connections first (each finishes the update it is
		// committing, flushes and closes with 1001), then the HTTP server.
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := hub.Shutdown(sctx); err != nil {
			cfg.Logger.Warn("sync connections not drained in time", "err", err)
		}
		// Then those forwarded to other shards' gateways: each ends with
		// 1001 after the frame it is passing, not cut at exit (1006).
		if err := g.ShutdownForwarded(sctx); err != nil {
			cfg.Logger.Warn("forwarded sync connections not closed in time", "err", err)
		}
		err := srv.Shutdown(sctx)
		// Traces of saves the gateway could not confirm live in its
		// memory: they get a few seconds more to reach their ledgers, and
		// the ones left are logged, the only record of them then.
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		g.FlushUnconfirmed(fctx)
		return err
	}
}

// flagSet reports whether the command line gave the flag name.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// envInt reads a non-negative integer from the environment variable name
// (unset or empty: 0).
func envInt(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a whole number of 0 or more", name, v)
	}
	return n, nil
}
