// Command benchgateway is hack/bench-gateway.sh's driver (`make
// bench-gateway`): our sync gateway against Hocuspocus under the same real
// yjs client load, on the same machine, in the same run.
//
// Ours: a durable throwaway PostgreSQL (pgharness, fsync on), migrated, one
// rollout of one shard whose bench cohort is put in the LocalFirst stage;
// the real cmd/syncer and cmd/gateway binaries, built into a temporary
// directory and run as processes (so each one's RSS is measurable); the
// bench documents created through the REST API; then both processes
// restarted so that no document is in memory before the clients come.
// Every update is committed to PostgreSQL before the gateway relays it.
//
// Hocuspocus: test/yjs/hocuspocus-server.mjs, @hocuspocus/server with its
// default settings and no extension: documents only in process memory.
//
// Against each, test/yjs/bench-gateway.mjs (in -procs Node processes)
// opens -docs documents with -writers writer clients and one observer
// client each, and runs two load phases on them: -rate edits/s per writer
// (open loop: the p50/p99 update-to-relay latency), then a closed loop
// (each writer edits again as soon as the observer saw its previous edit:
// updates/s). The driver samples the servers' VmRSS before any client,
// with the documents open and after the load, and their CPU time, and
// prints a markdown table with the ratio ours/Hocuspocus. Both servers run
// at once with all their clients connected, and the phases alternate
// between them (ours, Hocuspocus; Hocuspocus, ours), so one server's
// clients idle while the other's load runs.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

const (
	rollout = "bench/gateway"
	cohort  = "bench"
	tenant  = "bench-school"
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(1)
	}
}

type options struct {
	docs, writers    int
	procs            int
	rate             float64
	max              bool
	duration, warmup time.Duration
	settle           time.Duration
	node, yjsDir     string
	bin              string
	keep             bool
	memLimit         int64
	pprof            string
	lanes            int
	stage            string
	pgstats          bool
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchgateway", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.IntVar(&o.docs, "docs", 20, "documents open at once on each server")
	fs.IntVar(&o.writers, "writers", 3, "writer clients per document (each document also has one observer client)")
	fs.IntVar(&o.procs, "procs", 1, "load generator processes (Node), the documents dealt out among them")
	fs.Float64Var(&o.rate, "rate", 5, "edits per second per writer in the fixed-rate phase, which gives p50/p99 (0: no such phase)")
	fs.BoolVar(&o.max, "max", true, "run the closed-loop phase (each writer edits again as soon as the observer saw its previous edit), which gives updates/s")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured window of each phase (after its warm-up)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window, not counted")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause before each memory sample")
	fs.StringVar(&o.node, "node", "node", "Node.js binary")
	fs.StringVar(&o.yjsDir, "yjs-dir", "test/yjs", "the pinned npm project (bench-gateway.mjs, hocuspocus-server.mjs, node_modules)")
	fs.StringVar(&o.bin, "bin", "", "run the gateway and syncer binaries in this directory instead of building ./cmd/gateway and ./cmd/syncer")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the servers' logs")
	fs.StringVar(&o.pprof, "pprof", "", "serve the syncer's and the gateway's Go runtime profiles at /debug/pprof/ on this host and the two ports after it (say 127.0.0.1:6070: the syncer's on 6071 and its metrics on 6073, the gateway's on 6072 and its metrics on 6074), to profile them while the load runs")
	fs.IntVar(&o.lanes, "lanes", 0, "the syncer's group-commit lanes (0: its default)")
	fs.StringVar(&o.stage, "stage", dataplane.StageLocalFirst, "the bench cohort's stage: LocalFirst or Complete (every update also materialises the legacy row), or LegacyRetired (legacy writes stopped: the end state)")
	fs.BoolVar(&o.pgstats, "pgstats", false, "load pg_stat_statements and print our servers' statements by PostgreSQL's time after the report")
	fs.Int64Var(&o.memLimit, "memory-limit", 2<<30, "memory limit in bytes the syncer is told it runs under, as a pod's limit reaches it (0: none, the default collector)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (flags: -docs -writers -procs -rate -max -duration -warmup -settle -node -yjs-dir -bin -keep -memory-limit -pprof -lanes -stage -pgstats)", fs.Args())
	}
	var bad []string
	if o.docs < 1 || o.docs > 10000 {
		bad = append(bad, fmt.Sprintf("-docs must be in [1, 10000], got %d", o.docs))
	}
	if o.writers < 1 || o.writers > 100 {
		bad = append(bad, fmt.Sprintf("-writers must be in [1, 100], got %d", o.writers))
	}
	if o.procs < 1 || o.procs > max(1, o.docs) || o.procs > 64 {
		bad = append(bad, fmt.Sprintf("-procs must be in [1, min(64, -docs)], got %d", o.procs))
	}
	if math.IsNaN(o.rate) || math.IsInf(o.rate, 0) || o.rate < 0 || o.rate > 1000 {
		bad = append(bad, fmt.Sprintf("-rate must be in [0, 1000] edits/s per writer (0: no fixed-rate phase), got %v", o.rate))
	}
	switch o.stage {
	case dataplane.StageLocalFirst, dataplane.StageComplete, dataplane.StageLegacyRetired:
	default:
		bad = append(bad, fmt.Sprintf("-stage must be LocalFirst, Complete or LegacyRetired (the stages where clients sync local-first), got %q", o.stage))
	}
	if o.rate == 0 && !o.max {
		bad = append(bad, "-rate 0 and -max=false leave nothing to measure")
	}
	if o.duration < time.Second {
		bad = append(bad, fmt.Sprintf("-duration must be at least 1s, got %v", o.duration))
	}
	if o.warmup < 0 {
		bad = append(bad, fmt.Sprintf("-warmup must not be negative, got %v", o.warmup))
	}
	if o.lanes < 0 || o.lanes > 64 {
		bad = append(bad, fmt.Sprintf("-lanes must be in [0, 64], got %d", o.lanes))
	}
	if o.settle < 0 {
		bad = append(bad, fmt.Sprintf("-settle must not be negative, got %v", o.settle))
	}
	if len(bad) > 0 {
		return o, errors.New(strings.Join(bad, "; "))
	}
	return o, nil
}

// phases lists the load generator's phases: the fixed rate (latency),
// then the closed loop (throughput).
func (o options) phases() []float64 {
	var ph []float64
	if o.rate > 0 {
		ph = append(ph, o.rate)
	}
	if o.max {
		ph = append(ph, 0)
	}
	return ph
}

func run(ctx context.Context, o options) error {
	yjsDir, err := filepath.Abs(o.yjsDir)
	if err != nil {
		return err
	}
	for _, p := range []string{"bench-gateway.mjs", "hocuspocus-server.mjs", "node_modules/@hocuspocus/server", "node_modules/@hocuspocus/provider", "node_modules/y-websocket"} {
		if _, err := os.Stat(filepath.Join(yjsDir, p)); err != nil {
			return fmt.Errorf("%s missing in %s: run make deps (npm ci --prefix test/yjs)", p, yjsDir)
		}
	}
	loadStart := loadAvg()
	nodeVersion, err := exec.Command(o.node, "--version").Output()
	if err != nil {
		return fmt.Errorf("node (-node %s): %w", o.node, err)
	}
	tmp, err := os.MkdirTemp("", "benchgateway-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "benchgateway: logs kept in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "benchgateway: "+format+"\n", args...) }

	binDir := tmp
	if o.bin != "" {
		if binDir, err = filepath.Abs(o.bin); err != nil {
			return err
		}
		for _, b := range []string{"syncer", "gateway"} {
			if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
				return fmt.Errorf("-bin %s: %w", o.bin, err)
			}
		}
	} else {
		logf("building cmd/syncer and cmd/gateway")
		build := exec.CommandContext(ctx, "go", "build", "-o", tmp+string(os.PathSeparator), "./cmd/syncer", "./cmd/gateway")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}

	logf("starting PostgreSQL (fsync on)")
	pgOpts := pgharness.Options{Fsync: true}
	if o.pgstats {
		pgOpts.Settings = pgharness.StatementStatsSettings()
	}
	srv, err := pgharness.Start(ctx, pgOpts)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	dsn, err := srv.CreateDatabase(ctx, "bench")
	if err != nil {
		return err
	}
	if err := setupDataPlane(ctx, dsn, o.stage); err != nil {
		return err
	}
	var statsConn *pgx.Conn
	if o.pgstats {
		if statsConn, err = pgx.Connect(ctx, dsn); err != nil {
			return err
		}
		defer statsConn.Close(context.Background())
		if err := pgharness.EnableStatementStats(ctx, statsConn); err != nil {
			return err
		}
	}

	keyBytes := make([]byte, 32)
	if _, err := rand.Read(keyBytes); err != nil {
		return err
	}
	key := hex.EncodeToString(keyBytes)
	docs := make([]string, o.docs)
	tokens := make([][]string, o.docs)
	for d := range docs {
		docs[d] = fmt.Sprintf("bench-%04d", d)
		for c := 0; c <= o.writers; c++ {
			// One user per client: the gateway limits connections and
			// updates per user, as it would for real students.
			tok, err := auth.Mint([]byte(key), auth.Claims{Tenant: tenant, User: fmt.Sprintf("d%d-c%d", d, c), Expiry: time.Now().Add(24 * time.Hour).Unix()})
			if err != nil {
				return err
			}
			tokens[d] = append(tokens[d], tok)
		}
	}
	adminTok, err := auth.Mint([]byte(key), auth.Claims{Tenant: tenant, User: "bench-admin", Expiry: time.Now().Add(24 * time.Hour).Unix()})
	if err != nil {
		return err
	}

	env := []string{
		contract.EnvDatabaseURL + "=" + dsn,
		contract.EnvRollout + "=" + rollout,
		contract.EnvShards + "=1",
		contract.EnvTokenKey + "=" + key,
		contract.EnvPodName + "=bench-gateway-0",
	}
	if o.memLimit > 0 {
		// As the operator's pods get it from their container's limit.
		env = append(env, contract.EnvMemoryLimit+"="+strconv.FormatInt(o.memLimit, 10))
	}
	startOurs := func(round int) (*ours, error) {
		return startOursProcs(ctx, binDir, tmp, env, round, o.pprof, o.lanes)
	}

	// Create the documents, then restart both processes: the baseline
	// holds no document in memory, as Hocuspocus's does not.
	logf("creating %d documents through the REST API", o.docs)
	first, err := startOurs(0)
	if err != nil {
		return err
	}
	err = createDocs(ctx, first.base, adminTok, docs)
	first.stop()
	if err != nil {
		return err
	}
	o1, err := startOurs(1)
	if err != nil {
		return err
	}
	defer o1.stop()

	// lgCfg is the load generator configuration for a share of the
	// documents (tokens only for ours).
	lgCfg := func(server, url string, withTokens bool) func(share []int) map[string]any {
		return func(share []int) map[string]any {
			ids, toks := []string{}, [][]string{}
			for _, d := range share {
				ids, toks = append(ids, docs[d]), append(toks, tokens[d])
			}
			cfg := map[string]any{
				"server": server, "url": url, "docs": ids, "writers": o.writers, "phases": o.phases(),
				"warmupMs": o.warmup.Milliseconds(), "durationMs": o.duration.Milliseconds(), "drainMs": 15000, "connectTimeoutMs": 120000,
			}
			if withTokens {
				cfg["tokens"] = toks
			}
			return cfg
		}
	}
	hp, hpVersion, hpPort, err := startHocuspocus(ctx, o.node, yjsDir, tmp)
	if err != nil {
		return err
	}
	defer hp.stop()
	hpMem := fmt.Sprintf("http://127.0.0.1:%d/bench/memory", hpPort)
	logf("%d documents x (%d writers + 1 observer) on each server, Hocuspocus %s", o.docs, o.writers, hpVersion)
	res, err := measure(ctx, o, filepath.Join(yjsDir, "bench-gateway.mjs"), []*server{
		{name: "ours", procs: []*proc{o1.gateway, o1.syncer}, pgPID: srv.PID(),
			cfgFor: lgCfg("ours", "ws"+strings.TrimPrefix(o1.base, "http")+strings.TrimSuffix(contract.PathSync, "/"), true)},
		{name: "Hocuspocus", procs: []*proc{hp}, cfgFor: lgCfg("hocuspocus", fmt.Sprintf("ws://127.0.0.1:%d", hpPort), false),
			check: func() error { return hocuspocusHolds(ctx, hpMem, o.docs) }},
	})
	if err != nil {
		return err
	}
	oursRes, hpRes := res[0], res[1]
	committed, err := committedBytes(ctx, o1.base, adminTok, docs, o.stage)
	if err != nil {
		return fmt.Errorf("ours: read back the documents: %w", err)
	}
	o1.stop()
	hp.stop()

	rep := report{
		opts: o, oursRes: oursRes, hpRes: hpRes, committedBytes: committed,
		hpVersion: hpVersion, ywsVersion: pkgVersion(yjsDir, "y-websocket"), providerVersion: pkgVersion(yjsDir, "@hocuspocus/provider"),
		yjsVersion: pkgVersion(yjsDir, "yjs"), node: strings.TrimSpace(string(nodeVersion)), cpus: runtime.NumCPU(),
		load: loadStart + " at the start, " + loadAvg() + " at the end", pgPort: srv.Port(),
	}
	rep.print(os.Stdout)
	if statsConn != nil {
		return pgharness.PrintStatementStats(ctx, statsConn, os.Stdout)
	}
	return nil
}

// setupDataPlane migrates, registers the one-shard rollout and puts the
// bench tenant's cohort in LocalFirst (Yjs clients sync durably), then,
// as a rollout would, on to stage if it is a later one.
func setupDataPlane(ctx context.Context, dsn, stage string) error {
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := dp.RegisterRollout(ctx, rollout, "", 1); err != nil {
		return err
	}
	key := dataplane.CohortKey{Rollout: rollout, Cohort: cohort}
	cs, err := dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{tenant}}, time.Now())
	if err != nil {
		return err
	}
	for _, to := range []string{dataplane.StageLocalFirst, dataplane.StageComplete, dataplane.StageLegacyRetired} {
		cs, err = dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: to, Attempt: 1,
			Reason: "Benchmark", Message: "bench-gateway: Yjs clients sync durably", At: time.Now()})
		if err != nil || to == stage {
			return err
		}
	}
	return fmt.Errorf("stage %q is not one bench-gateway runs at", stage)
}

// ours is one syncer and one gateway process (shard 0 of 1).
type ours struct {
	syncer, gateway *proc
	base            string // gateway http://host:port
}

func (o *ours) stop() {
	o.gateway.stop()
	o.syncer.stop()
}

func startOursProcs(ctx context.Context, binDir, dir string, env []string, round int, pprofAt string, lanes int) (*ours, error) {
	syncerProf, gatewayProf := []string{"--metrics-listen="}, []string{"--metrics-listen="}
	if pprofAt != "" {
		host, port, err := net.SplitHostPort(pprofAt)
		if err != nil {
			return nil, fmt.Errorf("-pprof: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65531 {
			return nil, fmt.Errorf("-pprof: port %q is not in [1, 65531]", port)
		}
		at := func(n int) string { return net.JoinHostPort(host, strconv.Itoa(p+n)) }
		syncerProf = []string{"--pprof-listen=" + at(1), "--metrics-listen=" + at(3)}
		gatewayProf = []string{"--pprof-listen=" + at(2), "--metrics-listen=" + at(4)}
		fmt.Fprintf(os.Stderr, "benchgateway: profiles: syncer at http://%s/debug/pprof/ (metrics at http://%s/metrics), gateway at http://%s/debug/pprof/ (metrics at http://%s/metrics)\n",
			at(1), at(3), at(2), at(4))
	}
	sp, err := freePort()
	if err != nil {
		return nil, err
	}
	gp, err := freePort()
	if err != nil {
		return nil, err
	}
	syncerURL := fmt.Sprintf("http://127.0.0.1:%d", sp)
	s, err := startProc("syncer", filepath.Join(dir, fmt.Sprintf("syncer-%d.log", round)), env, filepath.Join(binDir, "syncer"),
		append([]string{"--shard=0", fmt.Sprintf("--listen=127.0.0.1:%d", sp), fmt.Sprintf("--lanes=%d", lanes)}, syncerProf...)...)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, s, syncerURL+contract.PathReadyz, time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	g, err := startProc("gateway", filepath.Join(dir, fmt.Sprintf("gateway-%d.log", round)), env, filepath.Join(binDir, "gateway"),
		append([]string{"--shard=0", fmt.Sprintf("--listen=127.0.0.1:%d", gp), "--syncer=" + syncerURL}, gatewayProf...)...)
	if err != nil {
		s.stop()
		return nil, err
	}
	o := &ours{syncer: s, gateway: g, base: fmt.Sprintf("http://127.0.0.1:%d", gp)}
	if err := waitHTTP(ctx, g, o.base+contract.PathReadyz, time.Minute); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

func createDocs(ctx context.Context, base, tok string, docs []string) error {
	for _, id := range docs {
		body, _ := json.Marshal(map[string]any{"id": id, "title": "bench " + id, "content": ""})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+contract.PathDocuments, strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("create %s: %w", id, err)
		}
		raw, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return fmt.Errorf("create %s: %s: %s", id, res.Status, strings.TrimSpace(string(raw)))
		}
	}
	return nil
}

// committedBytes reads every document back through the REST API (the
// committed state), checks it is in the bench's stage with its Yjs
// representation, and sums the content lengths.
func committedBytes(ctx context.Context, base, tok string, docs []string, stage string) (int, error) {
	total := 0
	for _, id := range docs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+contract.PathDocuments+"/"+id, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var d struct {
			Content string              `json:"content"`
			Stage   dataplane.SaveStage `json:"stage"`
			HasYjs  bool                `json:"has_yjs"`
		}
		err = json.NewDecoder(res.Body).Decode(&d)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil {
			return 0, fmt.Errorf("read %s: %s", id, res.Status)
		}
		if d.Stage.Stage != stage || !d.HasYjs {
			return 0, fmt.Errorf("document %s: stage %q, Yjs representation %v; the benchmark expects %s with Yjs", id, d.Stage.Stage, d.HasYjs, stage)
		}
		total += len(d.Content)
	}
	return total, nil
}

func startHocuspocus(ctx context.Context, node, yjsDir, dir string) (*proc, string, int, error) {
	p, err := startProc("hocuspocus", filepath.Join(dir, "hocuspocus.log"), nil, node, filepath.Join(yjsDir, "hocuspocus-server.mjs"), "0")
	if err != nil {
		return nil, "", 0, err
	}
	port, version, err := readyLine(ctx, p, time.Minute)
	if err != nil {
		p.stop()
		return nil, "", 0, err
	}
	return p, version, port, nil
}

// hocuspocusHolds checks Hocuspocus's own count of open documents.
func hocuspocusHolds(ctx context.Context, url string, docs int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var m struct {
		Documents int `json:"documents"`
	}
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	if m.Documents != docs {
		return fmt.Errorf("hocuspocus holds %d documents, expected %d", m.Documents, docs)
	}
	return nil
}

func pkgVersion(yjsDir, name string) string {
	b, err := os.ReadFile(filepath.Join(yjsDir, "node_modules", name, "package.json"))
	if err != nil {
		return "?"
	}
	var p struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &p) != nil {
		return "?"
	}
	return p.Version
}

// loadAvg is the machine's 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
