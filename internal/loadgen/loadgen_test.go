package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/gateway"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/syncws"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

var testKey = []byte("loadgen-test-key")

const (
	testRollout = "default/demo"
	testShards  = 2
)

// system is two shards in process, each a syncer (store.Engine behind
// the internal API) and a gateway with its sync Hub, on a fresh database.
type system struct {
	dsn      string
	dp       *dataplane.Postgres
	pool     *pgxpool.Pool
	gateways []string
}

func startSystem(t *testing.T) *system {
	t.Helper()
	ctx := t.Context()
	dsn := pgharness.ForTest(t)
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := dp.RegisterRollout(ctx, testRollout, "", testShards); err != nil {
		t.Fatal(err)
	}
	itok := auth.InternalToken(testKey)
	s := &system{dsn: dsn, dp: dp, pool: pool}
	var syncers []string
	for i := range testShards {
		eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: dsn, Shard: i, Shards: testShards, Rollout: testRollout,
			Holder: fmt.Sprint("loadgen-test-", i), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		srv := httptest.NewServer(syncer.Handler(eng, itok))
		t.Cleanup(srv.Close)
		syncers = append(syncers, srv.URL)
	}
	// Each gateway needs every gateway's URL: the handlers are set once
	// all servers listen.
	handlers := make([]atomic.Pointer[http.Handler], testShards)
	for i := range testShards {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handlers[i].Load()).ServeHTTP(w, r) }))
		t.Cleanup(srv.Close)
		s.gateways = append(s.gateways, srv.URL)
	}
	for i := range testShards {
		g, err := gateway.New(gateway.Config{Shards: testShards, SelfShard: i, Syncer: syncers[i], Peers: s.gateways, TokenKey: testKey,
			InternalToken: itok, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		be := g.NewSyncBackend()
		hub := syncws.NewHub(syncws.Config{Backend: be, Auth: be.Auth()})
		wctx, cancel := context.WithCancel(context.Background())
		go be.WatchProtocols(wctx, hub, 100*time.Millisecond)
		t.Cleanup(func() {
			cancel()
			sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
			defer c2()
			_ = hub.Shutdown(sctx)
		})
		h := g.HandlerWithSync(hub)
		handlers[i].Store(&h)
	}
	return s
}

// walk moves a cohort through stages, one every step, as the controller
// would (without its gates).
func walk(ctx context.Context, t *testing.T, dp *dataplane.Postgres, key dataplane.CohortKey, epoch int64, step time.Duration, stages ...string) {
	for _, st := range stages {
		select {
		case <-ctx.Done():
			return
		case <-time.After(step):
		}
		cs, err := dp.SetStage(context.WithoutCancel(ctx), dataplane.StageChange{Key: key, ExpectEpoch: epoch, Stage: st, Attempt: 1, Reason: "Test", At: time.Now()})
		if err != nil {
			t.Errorf("set stage %s: %v", st, err)
			return
		}
		epoch = cs.Epoch
	}
}

// TestWorkloadAuditPasses runs a small mixed workload while one tenant's
// cohort walks from Legacy to LocalFirst and the other stays Legacy, and
// expects a clean audit; then it removes an acknowledged revision and
// tampers with a legacy row, and expects the audit to name both.
func TestWorkloadAuditPasses(t *testing.T) {
	sys := startSystem(t)
	ctx := t.Context()
	key := dataplane.CohortKey{Rollout: testRollout, Cohort: "pilot"}
	cs, err := sys.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{"school-1"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	g, err := New(ctx, Config{
		Gateways: sys.gateways, TokenKey: testKey, DatabaseURL: sys.dsn,
		Tenants: 2, Docs: 5, Seed: 7, Duration: 4 * time.Second, Concurrency: 4,
		Mix:      Mix{Legacy: 0.5, LocalFirst: 0.4, OutOfBand: 0.1, Offline: 0.3},
		StateDir: t.TempDir(), Progress: &progress, ProgressEvery: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	walked := make(chan struct{})
	go func() {
		defer close(walked)
		walk(wctx, t, sys.dp, key, cs.Epoch, 600*time.Millisecond,
			dataplane.StageDualWrite, dataplane.StageBackfill, dataplane.StageVerify, dataplane.StageLocalFirst)
	}()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	<-walked
	t.Logf("progress:\n%s", progress.String())
	if !strings.Contains(progress.String(), "ops=") {
		t.Fatal("no progress line")
	}
	rep, err := g.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	t.Logf("audit:\n%s", out.String())
	if !rep.OK() {
		t.Fatalf("audit failed: %+v", rep.Failures)
	}
	legacy, yjsAcks := g.Acks()
	if len(legacy) <= 10 || len(yjsAcks) == 0 || rep.OutOfBandWrites == 0 || rep.OfflineEpisodes == 0 || rep.Compared == 0 {
		t.Fatalf("the workload did too little: %d legacy acks, %d local-first clients, %d out-of-band writes, %d offline episodes, %d documents compared",
			len(legacy), len(yjsAcks), rep.OutOfBandWrites, rep.OfflineEpisodes, rep.Compared)
	}
	if !strings.Contains(progress.String(), "offline=") {
		t.Fatal("progress line lacks offline clients")
	}

	t.Run("fails when an acknowledged save is gone", func(t *testing.T) {
		// A save acknowledged after the create (revision > 1) whose
		// revision row we delete, as a faulty store would lose it.
		i := slices.IndexFunc(legacy, func(a LegacyAck) bool { return a.Revision > 1 })
		victim := legacy[i]
		if _, err := sys.pool.Exec(ctx, `DELETE FROM document_revisions WHERE doc_id = $1 AND revision = $2`, victim.Doc, victim.Revision); err != nil {
			t.Fatal(err)
		}
		// And a document with a Yjs representation gets a legacy row
		// that no longer matches, and holds no out-of-band change.
		var tampered string
		for _, d := range g.docs {
			if d.tenant == "school-1" {
				var has bool
				if err := sys.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM yjs_updates WHERE doc_id = $1)`, d.id).Scan(&has); err != nil {
					t.Fatal(err)
				}
				if has {
					tampered = d.id
					break
				}
			}
		}
		if tampered == "" {
			t.Fatal("no document with a Yjs representation to tamper with")
		}
		if _, err := sys.pool.Exec(ctx, `UPDATE documents SET content = 'tampered' WHERE doc_id = $1`, tampered); err != nil {
			t.Fatal(err)
		}
		// And a third document's ledger is cut short at its last
		// acknowledged legacy save, by someone who can disable the
		// append-only trigger: the chain left is intact, the receipt
		// the save was answered with is not.
		cut := cutLedgerAtLastReceipt(t, sys.pool, legacy, victim.Doc, tampered)
		rep, err := g.Audit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatal("the audit passed with an acknowledged revision deleted and a legacy row tampered with")
		}
		has := func(check, doc string) bool {
			return slices.ContainsFunc(rep.Failures, func(f Failure) bool { return f.Check == check && f.Doc == doc })
		}
		if !has(CheckLegacySave, victim.Doc) {
			t.Errorf("no %s failure for %s revision %d: %+v", CheckLegacySave, victim.Doc, victim.Revision, rep.Failures)
		}
		if !has(CheckEqual, tampered) {
			t.Errorf("no %s failure for %s: %+v", CheckEqual, tampered, rep.Failures)
		}
		if !slices.ContainsFunc(rep.Failures, func(f Failure) bool {
			return f.Check == CheckChain && f.Doc == cut.Doc && strings.Contains(f.Detail, "receipt "+cut.Receipt+" is missing")
		}) {
			t.Errorf("no %s failure naming receipt %s of %s: %+v", CheckChain, cut.Receipt, cut.Doc, rep.Failures)
		}
	})
}

// cutLedgerAtLastReceipt picks a document with acknowledged legacy saves
// (none of exclude) and deletes its ledger from its last acknowledged
// save's entry on, as someone who can disable the append-only trigger
// could; it returns that save.
func cutLedgerAtLastReceipt(t *testing.T, pool *pgxpool.Pool, legacy []LegacyAck, exclude ...string) LegacyAck {
	t.Helper()
	ctx := t.Context()
	var cut LegacyAck
	for _, a := range legacy {
		if !slices.Contains(exclude, a.Doc) && a.Receipt != "" {
			cut = a
			break
		}
	}
	if cut.Doc == "" {
		t.Fatal("no other document with an acknowledged legacy save")
	}
	for _, a := range legacy {
		if a.Doc == cut.Doc && a.Receipt != "" && mustSeq(t, a.Receipt) > mustSeq(t, cut.Receipt) {
			cut = a
		}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`ALTER TABLE save_ledger DISABLE TRIGGER save_ledger_no_update`,
		`DELETE FROM save_ledger WHERE doc_id = $1 AND seq >= $2`,
		`ALTER TABLE save_ledger ENABLE TRIGGER save_ledger_no_update`,
	} {
		var args []any
		if strings.HasPrefix(q, "DELETE") {
			args = []any{cut.Doc, mustSeq(t, cut.Receipt)}
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return cut
}

func mustSeq(t *testing.T, receipt string) int64 {
	t.Helper()
	rc, err := ledger.ParseReceipt(receipt)
	if err != nil {
		t.Fatal(err)
	}
	return rc.Seq
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Gateways: []string{"http://x"}, TokenKey: []byte("k"), Tenants: 1, Docs: 1, Duration: time.Second, Concurrency: 1, Mix: DefaultMix, DatabaseURL: "postgres://x"}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"valid", func(*Config) {}, ""},
		{"no gateway", func(c *Config) { c.Gateways = nil }, "no gateway"},
		{"bad gateway", func(c *Config) { c.Gateways = []string{"localhost:8080"} }, "http://"},
		{"no key", func(c *Config) { c.TokenKey = nil }, "token key"},
		{"no tenants", func(c *Config) { c.Tenants = 0 }, "tenants"},
		{"no docs", func(c *Config) { c.Docs = 0 }, "docs"},
		{"no bound", func(c *Config) { c.Duration = 0 }, "duration"},
		{"fraction", func(c *Config) { c.Mix.Offline = 1.5 }, "offline"},
		{"empty mix", func(c *Config) { c.Mix = Mix{} }, "no operations"},
		{"out-of-band without database", func(c *Config) { c.DatabaseURL = "" }, "database URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TestWorkloadWithoutDatabase: with no database URL the audit reads both
// representations through the gateway (a sync step 1 for the Yjs text).
func TestWorkloadWithoutDatabase(t *testing.T) {
	sys := startSystem(t)
	ctx := t.Context()
	key := dataplane.CohortKey{Rollout: testRollout, Cohort: "pilot"}
	cs, err := sys.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{"school-1"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: dataplane.StageLocalFirst, Attempt: 1, Reason: "Test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	g := seededRun(t, Config{Gateways: sys.gateways[:1], TokenKey: testKey, Tenants: 1, Docs: 3, Seed: 3, Ops: 60, Concurrency: 2,
		Mix: Mix{Legacy: 0.5, LocalFirst: 0.5, Offline: 0.3}})
	rep, err := g.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	t.Logf("audit:\n%s", out.String())
	if !rep.OK() || rep.ViaDatabase || rep.Compared != 3 || rep.YjsAcks == 0 {
		t.Fatalf("want a clean audit through the gateway comparing all 3 documents with local-first acks, got %+v", rep)
	}
}

// TestSeedLegacy: seeded rows are documents the gateway serves, in the
// tenant's Legacy stage, with their tenants registered for bucket cohorts;
// seeding again inserts nothing.
func TestSeedLegacy(t *testing.T) {
	sys := startSystem(t)
	ctx := t.Context()
	seed := LegacySeed{Tenants: []string{"school-1", "school-4"}, Docs: 6, Shards: testShards}
	for i, want := range []int{6, 0} {
		n, err := SeedLegacy(ctx, sys.pool, seed)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("seed %d inserted %d documents, want %d", i+1, n, want)
		}
	}
	var tenants int
	if err := sys.pool.QueryRow(ctx, `SELECT count(*) FROM tenants WHERE tenant = ANY($1)`, seed.Tenants).Scan(&tenants); err != nil {
		t.Fatal(err)
	}
	if tenants != 2 {
		t.Fatalf("%d seeded tenants registered, want 2", tenants)
	}
	r := &rest{http: http.DefaultClient, key: testKey, tokens: map[[3]string]string{}}
	for i := range 6 {
		tenant := seed.Tenants[i%2]
		d, err := r.read(ctx, sys.gateways[i%2], tenant, "reader", SeededDocumentID(i))
		if err != nil {
			t.Fatal(err)
		}
		if d.Revision != 1 || d.HasYjs || d.Stage.Stage != dataplane.StageLegacy || !strings.Contains(d.Content, tenant) {
			t.Fatalf("seeded document %d reads %+v", i, d)
		}
		rev, err := r.revision(ctx, sys.gateways[0], tenant, SeededDocumentID(i), 1)
		if err != nil || rev.Content != d.Content {
			t.Fatalf("revision 1 of seeded document %d: %+v, %v", i, rev, err)
		}
	}
}

// TestSecondRunWithTheSameSeed: running the workload again, as the README
// suggests, with the same seed against the same documents is a clean run
// of its own. Its idempotency keys were the first run's (lg<seed>-w<w>-<n>),
// so about half its saves were refused idempotency_key_reused (422), and
// the audit still said PASSED: such refusals now fail it.
func TestSecondRunWithTheSameSeed(t *testing.T) {
	sys := startSystem(t)
	ctx := t.Context()
	for run := 1; run <= 2; run++ {
		g := seededRun(t, Config{Gateways: sys.gateways, TokenKey: testKey, DatabaseURL: sys.dsn, Tenants: 1, Docs: 2, Seed: 9,
			Ops: 40, Concurrency: 2, Mix: Mix{Legacy: 1}})
		rep, err := g.Audit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g.errMu.Lock()
		errs := maps.Clone(g.errs)
		g.errMu.Unlock()
		legacy, _ := g.Acks()
		if !rep.OK() || len(errs) != 0 || len(legacy) < 30 {
			t.Errorf("run %d: audit ok %v (%+v), errors %v, %d saves acknowledged", run, rep.OK(), rep.Failures, errs, len(legacy))
		}
	}
}

// TestAuditFailsOnUnexpectedRefusals: a run whose requests were refused
// for reasons no correct run meets (a key reused, a malformed request)
// does not pass its audit, however its saves fared.
func TestAuditFailsOnUnexpectedRefusals(t *testing.T) {
	sys := startSystem(t)
	ctx := t.Context()
	g := seededRun(t, Config{Gateways: sys.gateways, TokenKey: testKey, Tenants: 1, Docs: 1, Seed: 4, Ops: 4, Concurrency: 1, Mix: Mix{Legacy: 1}})
	g.fail("idempotency_key_reused")
	g.fail("unavailable(retried)") // load: no failure
	rep, err := g.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.FailureCount != 1 || rep.Failures[0].Check != CheckRefusals {
		t.Fatalf("audit after a refused key: ok %v, failures %+v", rep.OK(), rep.Failures)
	}
}

// seededRun makes a generator for cfg, seeds its documents and runs its
// workload; it is closed when the test ends.
func seededRun(t *testing.T, cfg Config) *Generator {
	t.Helper()
	g, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	if err := g.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	return g
}
