package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

func TestShardFromPodName(t *testing.T) {
	for in, want := range map[string]int{"demo-gateway-3": 3, "x-0": 0, "a-b-c-12": 12} {
		if got, err := ShardFromPodName(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"demo", "demo-", "demo-x"} {
		if _, err := ShardFromPodName(in); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

// TestHeartbeatObservesStageChanges: the syncer reports the rollout epoch
// it loaded, and a stage change reaches its report promptly (LISTEN).
func TestHeartbeatObservesStageChanges(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const rollout = "default/demo"
	if err := dp.RegisterRollout(ctx, rollout, "", 2); err != nil {
		t.Fatal(err)
	}
	key := dataplane.CohortKey{Rollout: rollout, Cohort: "pilot"}
	cs, err := dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Buckets: &dataplane.BucketRange{From: 0, To: 100}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: rollout, Shard: 1, Shards: 2, PodName: "demo-gateway-1",
			InternalToken: "tok", Heartbeat: 5 * time.Second, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("syncer did not start")
	}
	waitEpoch := func(want int64) dataplane.ShardReport {
		t.Helper()
		deadline := time.Now().Add(4 * time.Second) // less than the poll interval: LISTEN must do it
		for {
			reps, err := dp.ShardReports(ctx, rollout)
			if err != nil {
				t.Fatal(err)
			}
			if len(reps) == 1 && reps[0].ObservedEpoch == want {
				return reps[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("observed epoch never reached %d: %+v", want, reps)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rep := waitEpoch(cs.Epoch)
	if rep.Shard != 1 || len(rep.Cohorts) != 1 || rep.Cohorts[0].Cohort != "pilot" {
		t.Fatalf("report: %+v", rep)
	}
	// A save from a tenant first seen now joins the frozen bucket cohort,
	// and the cohort's document count follows.
	c := &Client{BaseURL: "http://" + addr, Token: "tok"}
	doc := ""
	for i := 0; ; i++ {
		doc = fmt.Sprint("doc-", i)
		if _, err := c.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: doc, Tenant: "new-school", User: "u", Content: "x"}); err == nil {
			break
		} else if e := store.AsError(err); e.Code != store.CodeWrongShard {
			t.Fatal(err)
		}
	}
	// Every apply was timed under its kind; a kind nobody knows cannot
	// add a label. (requestDuration is the package's: other tests add to
	// it too.)
	invalidBefore := appliesTimed(t, "invalid")
	if _, err := c.Apply(ctx, store.Request{Kind: "drop-tables", Doc: doc, Tenant: "new-school", User: "u"}); err == nil {
		t.Fatal("an unknown kind was applied")
	}
	if n := appliesTimed(t, store.KindCreate); n < 1 {
		t.Errorf("creates timed: %d", n)
	}
	if n := appliesTimed(t, "invalid") - invalidBefore; n != 1 {
		t.Errorf("the unknown kind was timed %d times as invalid, want 1", n)
	}
	if n := appliesTimed(t, "drop-tables"); n != 0 {
		t.Errorf("the unknown kind got a label of its own (%d)", n)
	}
	st, err := dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: dataplane.StageDualWrite, Attempt: 1, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	rep = waitEpoch(st.Epoch)
	t.Logf("stage change observed after %v", time.Since(t0))
	if rep.Cohorts[0].Epoch != st.Epoch || rep.Cohorts[0].Documents != 1 {
		var dbg string
		pool.QueryRow(ctx, `SELECT (SELECT string_agg(doc_id || ':' || tenant || ':' || shard, ',') FROM documents) || ' / ' || (SELECT coalesce(string_agg(tenant || ':' || cohort, ','), '') FROM cohort_members)`).Scan(&dbg) //nolint:errcheck // diagnostics only
		t.Errorf("cohort report after the flip: %+v; db: %s", rep.Cohorts[0], dbg)
	}
	r, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: doc, Tenant: "new-school", User: "u", Content: "y"})
	if err != nil || r.Stage.Stage != dataplane.StageDualWrite || r.Stage.Cohort != "pilot" {
		t.Errorf("save after the flip: %+v %v", r, err)
	}
	// The internal API refuses callers without the token (401; its
	// client reads that as the servers' mismatch: unavailable).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+PathDocuments+doc+"?tenant=new-school", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong internal token: %v %v", res, err)
	} else {
		_ = res.Body.Close()
	}
	bad := &Client{BaseURL: "http://" + addr, Token: "wrong"}
	if _, err := bad.Read(ctx, "new-school", doc); store.AsError(err).Code != store.CodeUnavailable {
		t.Errorf("wrong internal token through the client: %v", err)
	}
	cancel()
	t0 = time.Now()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	t.Logf("Run returned after %v", time.Since(t0))
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// buildSyncer builds cmd/syncer for a test that runs (and kills) it.
func buildSyncer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "syncer")
	build := exec.Command("go", "build", "-o", bin, "github.com/yawp/persistence-operator/cmd/syncer")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build syncer: %v", err)
	}
	return bin
}

// appliesTimed is how many apply calls requestDuration timed under kind.
func appliesTimed(t *testing.T, kind string) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(requestDuration)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// startSyncerProc runs the syncer binary as shard 0 of 1 on dsn and waits
// until it is ready.
func startSyncerProc(t *testing.T, bin, dsn string) (*exec.Cmd, *Client) {
	t.Helper()
	// The rollout is registered first, as the operator does before it
	// creates a gateway: a syncer takes no shard in a database without it.
	dp, pool, err := dataplane.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	err = dp.RegisterRollout(t.Context(), "default/demo", "", 1)
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--listen", addr, "--metrics-listen", "", "--heartbeat", "200ms")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "POD_NAME=demo-gateway-0", "YAWP_SHARDS=1",
		"YAWP_ROLLOUT=default/demo", "YAWP_INTERNAL_TOKEN=tok")
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Client{BaseURL: "http://" + addr, Token: "tok", HTTP: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, c, func() { _ = cmd.Process.Kill() })
	return cmd, c
}

// waitReady waits up to 30 s for the syncer behind c to answer /readyz;
// failing, it runs giveUp and fails the test.
func waitReady(t *testing.T, c *Client, giveUp func()) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get(c.BaseURL + "/readyz"); err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			giveUp()
			t.Fatal("syncer did not become ready")
		}
	}
}

// saveStream is writers saving to their own documents through a syncer,
// each save keyed, until the syncer stops answering.
type saveStream struct {
	mu               sync.Mutex
	acked, attempted []saveAttempt
	stop             chan struct{}
	wg               sync.WaitGroup
	writers          int
}

type saveAttempt struct{ doc, key, content string }

func startSaves(t *testing.T, c *Client, writers int) *saveStream {
	t.Helper()
	ctx := t.Context()
	ss := &saveStream{stop: make(chan struct{}), writers: writers}
	for i := range writers {
		if _, err := c.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: fmt.Sprint("k", i), Tenant: "t", User: "u", Content: ""}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range writers {
		ss.wg.Add(1)
		go func() {
			defer ss.wg.Done()
			doc := fmt.Sprint("k", i)
			content := ""
			for j := 0; ; j++ {
				select {
				case <-ss.stop:
					return
				default:
				}
				content += fmt.Sprintf("<%d>", j)
				a := saveAttempt{doc, fmt.Sprintf("%s-%d", doc, j), content}
				ss.mu.Lock()
				ss.attempted = append(ss.attempted, a)
				ss.mu.Unlock()
				_, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: doc, Tenant: "t", User: "u", Content: content, IdempotencyKey: a.key})
				if err != nil {
					return // the syncer (or its database) went away: this save may or may not have committed
				}
				ss.mu.Lock()
				ss.acked = append(ss.acked, a)
				ss.mu.Unlock()
			}
		}()
	}
	return ss
}

// halt stops the writers (their syncer is gone) and waits for them.
func (ss *saveStream) halt() {
	close(ss.stop)
	ss.wg.Wait()
}

// check asks a fresh syncer (c) for every acknowledged save, then retries
// every attempted one twice: each acknowledged save is there, recorded
// once, and the retries add exactly the saves that never committed.
func (ss *saveStream) check(t *testing.T, c *Client, what string) {
	t.Helper()
	ctx := t.Context()
	if len(ss.acked) < ss.writers {
		t.Fatalf("only %d saves acknowledged before %s", len(ss.acked), what)
	}
	for _, a := range ss.acked {
		ev, err := c.Evidence(ctx, a.doc, map[string][]string{"tenant": {"t"}, "request": {a.key}})
		if err != nil {
			t.Fatal(err)
		}
		if ev.Verdict != store.VerdictSynced || len(ev.Timeline) != 1 {
			t.Fatalf("acknowledged save %s after %s: verdict %s, %d entries", a.key, what, ev.Verdict, len(ev.Timeline))
		}
	}
	for _, a := range ss.attempted {
		if _, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: a.doc, Tenant: "t", User: "u", Content: a.content, IdempotencyKey: a.key}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range ss.attempted {
		r, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: a.doc, Tenant: "t", User: "u", Content: a.content, IdempotencyKey: a.key})
		if err != nil || !r.Replayed {
			t.Fatalf("second retry of %s: %+v %v", a.key, r, err)
		}
	}
	perDoc := map[string]int{}
	for _, a := range ss.attempted {
		perDoc[a.doc]++
	}
	for doc, n := range perDoc {
		d, err := c.Read(ctx, "t", doc)
		if err != nil {
			t.Fatal(err)
		}
		if d.Revision != int64(n+1) {
			t.Errorf("%s: revision %d after %d distinct saves", doc, d.Revision, n)
		}
	}
	t.Logf("%d saves acknowledged before %s, %d attempted", len(ss.acked), what, len(ss.attempted))
}

// TestKill9 runs the syncer binary, SIGKILLs it during a stream of saves,
// restarts it and checks that every acknowledged save is present and that
// retrying every attempted save duplicates nothing.
func TestKill9(t *testing.T) {
	bin := buildSyncer(t)
	dsn := pgharness.ForTest(t)
	cmd, c := startSyncerProc(t, bin, dsn)
	// The writers' saves travel as the gateway sends them under load:
	// in batches, two calls in flight.
	c.Batch = &Batches{MaxInFlight: 2}
	ss := startSaves(t, c, 8)
	time.Sleep(400 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	ss.halt()
	if c.Batch.Calls.Load() == 0 {
		t.Fatal("no saves were sent in batches")
	}
	cmd, c = startSyncerProc(t, bin, dsn)
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	ss.check(t, c, "kill -9")
}

// TestPostgresCrash: PostgreSQL itself goes down hard (immediate shutdown,
// as a crash leaves it) during a stream of saves. The syncer notices it
// lost its shard lock and stops serving at once rather than serve errors;
// it does not exit (it did before, and the kubelet's back-off for a
// container that keeps exiting made failovers in a row cost minutes), but
// takes its shard again in its process once PostgreSQL is back after
// crash recovery: every acknowledged save is there, retries duplicate
// nothing, and the process was never restarted.
func TestPostgresCrash(t *testing.T) {
	bin := buildSyncer(t)
	dir := filepath.Join(t.TempDir(), "pg")
	if os.Geteuid() == 0 {
		// t.TempDir is 0700 root: the postgres user could not reach it.
		_ = os.Chmod(filepath.Dir(dir), 0o755)
		_ = os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o755)
	}
	opts := pgharness.Options{Dir: dir, Keep: true, Fsync: true}
	srv, err := pgharness.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	dsn, err := srv.CreateDatabase(t.Context(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	cmd, c := startSyncerProc(t, bin, dsn)
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // on a failure; stopped below otherwise
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ss := startSaves(t, c, 8)
	time.Sleep(400 * time.Millisecond)

	// SIGQUIT to the postmaster: immediate shutdown, no checkpoint; the
	// restart runs crash recovery from the WAL.
	if err := syscall.Kill(srv.PID(), syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	crashed := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ss.halt()
	ready := func() bool {
		res, err := http.Get(c.BaseURL + "/readyz")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	for deadline := time.Now().Add(10 * time.Second); ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the syncer kept serving without its database (and its shard lock) for 10 s")
		}
	}
	t.Logf("the syncer stopped serving %v after PostgreSQL went down", time.Since(crashed).Round(time.Millisecond))

	opts.Keep, opts.Port = false, srv.Port()
	srv2, err := pgharness.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Stop() })
	t.Logf("PostgreSQL back %v after it went down", time.Since(crashed).Round(time.Millisecond))
	waitReady(t, c, func() { _ = cmd.Process.Kill() })
	select {
	case err := <-exited:
		t.Fatalf("the syncer exited after PostgreSQL went down (%v); it takes its shard again in its process", err)
	default:
	}
	ss.check(t, c, "PostgreSQL's crash")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Logf("the syncer stopped: %v", err)
	}
}

var _ = errors.New
