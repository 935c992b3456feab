// Package syncer runs a shard's syncer sidecar: it applies migrations,
// takes its shard (internal/store: advisory lock, shard epoch, group
// commit), serves the gateway's internal API, and heartbeats the shard's
// report (dataplane.ShardReporter) with the rollout epoch it has observed,
// so the controller's barrier can advance.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/store"
)

// Config configures a syncer.
type Config struct {
	Listen        string
	MetricsListen string
	DatabaseURL   string
	// Rollout is "namespace/name".
	Rollout string
	// RolloutUID is the PersistenceRollout object's UID (empty: not
	// checked). The syncer takes no shard in a database whose rollout of
	// that name another object registered.
	RolloutUID    string
	Shard         int
	Shards        int
	PodName       string
	InternalToken string
	Heartbeat     time.Duration
	CacheDocs     int
	// CacheBytes bounds the estimated memory of the documents in memory
	// (0: the store's default, a third of the Go memory limit).
	CacheBytes int64
	// Lanes is the number of group-commit lanes (0: the store's default).
	Lanes int
	// Integrity tunes the backfill and verification (integrity.go).
	Integrity IntegrityConfig
	Logger    *slog.Logger
	// Ready, if set, receives the internal API's address once serving.
	Ready func(addr string)
}

// ShardFromPodName returns the StatefulSet ordinal of a pod name
// ("demo-gateway-3" -> 3).
func ShardFromPodName(pod string) (int, error) {
	i := strings.LastIndexByte(pod, '-')
	if i < 0 {
		return 0, fmt.Errorf("pod name %q has no ordinal", pod)
	}
	n, err := strconv.Atoi(pod[i+1:])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("pod name %q has no ordinal", pod)
	}
	return n, nil
}

// Syncer is a running syncer.
type Syncer struct {
	cfg      Config
	pool     *pgxpool.Pool
	dp       *dataplane.Postgres
	eng      *store.Engine
	log      *slog.Logger
	observed atomic.Int64
	kick     chan struct{}
	integ    *integrity

	// The shard's cohort counts (a scan of the shard), reused by reports
	// for up to countsMaxAge unless the rollout epoch moved or the
	// backfill made progress since. Owned by the heartbeat.
	counts      map[string]dataplane.CohortCounts
	countsAt    time.Time
	countsEpoch int64

	mBackfilled prometheus.Counter
	mVerified   prometheus.Counter
	mObserved   prometheus.Gauge
	mShardEpoch prometheus.Gauge
	mReports    prometheus.Counter
	mReportErrs prometheus.Counter
}

// shutdownGrace bounds how long a stopping syncer waits for the requests
// in flight (a group commit and its answer); the pod's termination grace
// period must leave room for it.
const shutdownGrace = 10 * time.Second

// countsMaxAge is how long a report reuses the shard's cohort counts when
// nothing suggests they moved (documents created since show up within it).
const countsMaxAge = 10 * time.Second

// ObservedEpoch is the rollout epoch last loaded and reported.
func (s *Syncer) ObservedEpoch() int64 { return s.observed.Load() }

// Run runs the syncer until ctx ends (nil) or its shard is taken over or
// its lock lost (an error: the process should exit and be restarted).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.DatabaseURL == "" {
		return errors.New("no database URL (--database-url or " + contract.EnvDatabaseURL + ")")
	}
	if cfg.Rollout == "" {
		return errors.New("no rollout (--rollout or " + contract.EnvRollout + ")")
	}
	if cfg.Shards < 1 || cfg.Shard < 0 || cfg.Shard >= cfg.Shards {
		return fmt.Errorf("shard %d out of [0, %d)", cfg.Shard, cfg.Shards)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return errors.New("invalid database URL")
	}
	if pcfg.MaxConns < 16 {
		pcfg.MaxConns = 16 // group-commit lanes, reads, reports
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	// Nothing is written (not the schema, not the shard's lease) in a
	// database that does not have the rollout.
	if !waitRegistered(ctx, pool, cfg.Rollout, cfg.RolloutUID, cfg.Logger, 5*time.Second) {
		return nil // stopped while waiting
	}
	// A syncer connected as a yawp_service member (it owns nothing) waits
	// for the operator to migrate; one whose role owns the schema migrates.
	if err := migrations.UpOrWait(ctx, pool, cfg.Logger, 5*time.Second); err != nil {
		return err
	}
	if owns, err := migrations.OwnsLedger(ctx, pool); err == nil && owns {
		cfg.Logger.Warn("this syncer's database role owns the save-evidence ledger or its schema (the owner of the database owns schema public), " +
			"so it could disable the ledger's append-only trigger or drop the ledger; " +
			"give syncers a login role in yawp_service that owns nothing, not even the database (spec.database.serviceSecretRef, docs/operations.md)")
	}
	holder := cfg.PodName
	if holder == "" {
		holder = fmt.Sprintf("syncer-%d", cfg.Shard)
	}
	cfg.Logger.Info("taking shard", "shard", cfg.Shard, "shards", cfg.Shards, "rollout", cfg.Rollout)
	eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: cfg.DatabaseURL, Shard: cfg.Shard, Shards: cfg.Shards,
		Rollout: cfg.Rollout, Holder: holder, CacheDocs: cfg.CacheDocs, CacheBytes: cfg.CacheBytes, Lanes: cfg.Lanes, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	defer eng.Close()
	s := &Syncer{cfg: cfg, pool: pool, dp: dataplane.NewPostgres(pool), eng: eng, log: cfg.Logger, kick: make(chan struct{}, 1)}
	s.observed.Store(-1)
	m := newMetrics(eng)
	s.mObserved, s.mShardEpoch, s.mReports, s.mReportErrs, s.mBackfilled, s.mVerified = m.observed, m.shardEpoch, m.reports, m.reportErrs, m.backfilled, m.verified
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(m.all...)
	s.mShardEpoch.Set(float64(eng.ShardEpoch()))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: Handler(eng, cfg.InternalToken), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Requests in flight are answered before the engine closes (it is
		// deferred before this, so it closes after): a save committed at
		// shutdown is acknowledged, not left in doubt.
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle(contract.PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		msrv := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := msrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Warn("metrics listener", "err", err)
			}
		}()
		defer msrv.Close()
	}
	if cfg.InternalToken == "" {
		cfg.Logger.Warn("no internal token: the internal API refuses every call; set " + contract.EnvInternalToken + " or " + contract.EnvTokenKey)
	}
	cfg.Logger.Info("serving", "listen", ln.Addr().String(), "shard", cfg.Shard, "shard_epoch", eng.ShardEpoch())
	listening := make(chan struct{})
	// The listener's connection is its own, not the pool's: stopped and
	// waited for when this run ends, or every run Serve starts again
	// after a fence left one more connection behind.
	lctx, lcancel := context.WithCancel(ctx)
	ldone := make(chan struct{})
	go func() { defer close(ldone); s.listen(lctx, listening) }()
	defer func() { lcancel(); <-ldone }()
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		cfg.Logger.Warn("stage listener not up yet; polling every heartbeat meanwhile")
	case <-ctx.Done():
	}
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	if !cfg.Integrity.Disabled {
		s.integ = newIntegrity(s, cfg.Integrity)
		ictx, icancel := context.WithCancel(ctx)
		idone := make(chan struct{})
		go func() { defer close(idone); s.integ.run(ictx) }()
		defer func() { icancel(); <-idone }()
	}
	tick := time.NewTicker(cfg.Heartbeat)
	defer tick.Stop()
	s.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-eng.Fenced():
			// Another syncer took the shard, or this one lost its lock or
			// cannot know a commit's outcome (its database went away):
			// either way it must not write, and its restart takes the
			// shard again if nobody else holds it.
			if ctx.Err() != nil {
				return nil // stopping anyway: not a fence to report
			}
			return fmt.Errorf("%w, stopping: %s", ErrFenced, eng.FenceReason())
		case <-tick.C:
		case <-s.kick:
		}
		s.heartbeat(ctx)
	}
}

// ErrFenced is Run's error when its engine was fenced: another syncer took
// the shard, or this one lost its lock or cannot know a commit's outcome
// (its database went away or restarted).
var ErrFenced = errors.New("fenced")

// serveRetryWindow is how long after a fence Serve runs the syncer again
// through errors of its start (the database still restarting); past it an
// error ends Serve as Run's would.
const serveRetryWindow = 2 * time.Minute

// Serve is Run, run again in the same process when it is fenced, backing
// off from 1 s to 30 s (reset once a run served a minute), instead of
// returning: the pod's restart would do the same, but every PostgreSQL
// restart or failover fences every syncer, and the kubelet's back-off for
// a container that keeps exiting grows to five minutes, a shard down for
// that long after a few failovers in a row. A run that starts after a
// fence and fails (the database not back yet) is tried again for up to
// serveRetryWindow after the fence. Errors of the first start (a bad
// configuration) and any error long after a fence end Serve. Each run
// takes the shard anew: a new shard epoch, the lock waited for, nothing
// kept in memory from the run before.
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	backoff := time.Second
	var fenced time.Time
	for {
		start := time.Now()
		err := Run(ctx, cfg)
		if err == nil || ctx.Err() != nil {
			return err
		}
		switch {
		case errors.Is(err, ErrFenced):
			fenced = time.Now()
			if fenced.Sub(start) >= time.Minute {
				backoff = time.Second
			}
		case fenced.IsZero() || time.Since(fenced) > serveRetryWindow:
			return err
		}
		cfg.Logger.Warn("the syncer stopped; running it again in this process", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitRegistered waits until the database has the rollout registered,
// by the object of uid if that is known on both sides, polling every
// interval, and reports whether it has (false: ctx ended).
//
// The operator registers a rollout in its database before it creates the
// rollout's gateway, and refuses a database Secret that comes to name
// another database (one with no record of the cohorts it started) without
// rolling the pods onto it. But a pod that restarts, or is rescheduled,
// reads the Secret afresh: without this, its syncer would take its shard
// in whatever database the Secret names now (an empty server, another
// environment's), migrate it, and write students' saves there. A database
// without the rollout is not the rollout's; nor is one whose rollout of
// the same namespace and name another object registered (another
// cluster's, such as a staging copy of production that staging's operator
// took over). The syncer takes no shard and serves nothing (its gateway is
// not ready) until the Secret names the rollout's database again or the
// rollout is registered there.
func waitRegistered(ctx context.Context, pool *pgxpool.Pool, rollout, uid string, log *slog.Logger, interval time.Duration) bool {
	var told time.Time
	var toldOther string
	for {
		registered, by, err := dataplane.RegisteredAs(ctx, pool, rollout)
		other := registered && uid != "" && by != "" && by != uid
		switch {
		case err == nil && registered && !other:
			if !told.IsZero() {
				log.Info("the rollout is registered in the database: taking the shard", "rollout", rollout)
			}
			return true
		case ctx.Err() != nil:
			return false
		case err != nil:
			// Not a verdict on the database: tried again.
			log.Warn("cannot read whether the rollout is registered in the database", "rollout", rollout, "err", err)
		case other && (time.Since(told) >= time.Minute || toldOther != by):
			told, toldOther = time.Now(), by
			log.Error("the database's rollout of this name was registered by another PersistenceRollout object than this syncer's: "+
				"another cluster's or environment's database (a copy of this one's?), so the database Secret names another database now. "+
				"This syncer takes no shard and writes nothing there; point the Secret back at the rollout's database "+
				"(docs/operations.md, \"A database Secret that names another database\")", "rollout", rollout, "uid", uid, "registered_by", by)
		case !other && time.Since(told) >= time.Minute:
			told = time.Now()
			log.Error("the database has no record of this syncer's rollout: the operator registers a rollout in its database "+
				"before it creates the gateway, so the database Secret names another database now (edited or swapped since). "+
				"This syncer takes no shard and writes nothing there; point the Secret back at the rollout's database "+
				"(docs/operations.md, \"A database Secret that names another database\")", "rollout", rollout)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}

// heartbeat checks the shard lock, observes the rollout and reports.
func (s *Syncer) heartbeat(ctx context.Context) {
	if err := s.eng.CheckLock(ctx); err != nil {
		return
	}
	if err := s.report(ctx); err != nil {
		s.mReportErrs.Inc()
		s.log.Warn("shard report", "err", err)
		return
	}
	s.mReports.Inc()
}

func (s *Syncer) report(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	obs, err := s.dp.Observe(ctx, s.cfg.Rollout)
	if err != nil {
		return err
	}
	if !obs.Registered {
		return nil // the controller has not registered the rollout yet
	}
	if obs.Shards != s.cfg.Shards {
		s.log.Error("rollout shard count differs from this syncer's", "rollout_shards", obs.Shards, "shards", s.cfg.Shards)
	}
	backfilled := s.integ != nil && s.integ.progressed.Swap(false)
	if s.counts == nil || backfilled || obs.Epoch != s.countsEpoch || time.Since(s.countsAt) >= countsMaxAge {
		counts, err := s.dp.CohortIntegrity(ctx, s.cfg.Rollout, s.cfg.Shard)
		if err != nil {
			return err
		}
		s.counts, s.countsAt, s.countsEpoch = counts, time.Now(), obs.Epoch
	}
	counts := s.counts
	gapAfter := 10 * time.Minute
	if s.integ != nil {
		gapAfter = s.integ.cfg.GapAfter
	}
	div, err := s.dp.CohortDivergences(ctx, s.cfg.Rollout, s.cfg.Shard, gapAfter, maxSamples)
	if err != nil {
		return err
	}
	now := time.Now() // with its monotonic reading: ReportShard takes the counts' age from it
	rep := dataplane.ShardReport{Rollout: s.cfg.Rollout, Shard: s.cfg.Shard, ObservedEpoch: obs.Epoch,
		Holder: fmt.Sprintf("%s#%d", s.holder(), s.eng.ShardEpoch()), ReportedAt: now}
	for _, c := range obs.Cohorts {
		rep.Cohorts = append(rep.Cohorts, s.integ.cohortReport(c, counts[c.Cohort], div[c.Cohort], now))
	}
	if err := s.dp.ReportShard(ctx, rep); err != nil {
		return err
	}
	if s.observed.Swap(obs.Epoch) != obs.Epoch {
		s.log.Info("observed rollout epoch", "epoch", obs.Epoch, "cohorts", len(obs.Cohorts))
	}
	s.mObserved.Set(float64(obs.Epoch))
	return nil
}

func (s *Syncer) holder() string {
	if s.cfg.PodName != "" {
		return s.cfg.PodName
	}
	return fmt.Sprintf("syncer-%d", s.cfg.Shard)
}

// listen LISTENs on dataplane.NotifyChannel and kicks a heartbeat on every
// stage change; the ticker is the poll fallback.
func (s *Syncer) listen(ctx context.Context, listening chan struct{}) {
	for ctx.Err() == nil {
		conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{dataplane.NotifyChannel}.Sanitize())
			if err == nil {
				if listening != nil {
					close(listening)
					listening = nil
				}
				// Changes made while not listening are picked up now.
				select {
				case s.kick <- struct{}{}:
				default:
				}
			}
			for err == nil {
				nt, werr := conn.WaitForNotification(ctx)
				if werr != nil {
					err = werr
					break
				}
				if nt.Payload == s.cfg.Rollout {
					select {
					case s.kick <- struct{}{}:
					default:
					}
				}
			}
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("stage listener reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
