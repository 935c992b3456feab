package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
)

const itRollout = "default/demo"

// legacyFixture registers a one-shard rollout with cohort "pilot" of
// tenants s1 and s2 at Legacy, and inserts n legacy-only documents of
// theirs (as the existing store left them) plus 10 of tenant "other",
// in no cohort.
func legacyFixture(t *testing.T, dsn string, n int) (*dataplane.Postgres, *pgxpool.Pool, dataplane.CohortState) {
	t.Helper()
	ctx := t.Context()
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := dp.RegisterRollout(ctx, itRollout, "", 1); err != nil {
		t.Fatal(err)
	}
	cs, err := dp.FreezeCohort(ctx, dataplane.CohortKey{Rollout: itRollout, Cohort: "pilot"}, 0,
		dataplane.Selector{Tenants: []string{"s1", "s2"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tenants (tenant, bucket) VALUES ('other', 0) ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT format('doc-%s', lpad(i::text, 6, '0')), CASE WHEN i % 2 = 0 THEN 's1' ELSE 's2' END, 'u', '',
		       format('legacy text %s: ünïcödé 👋 ', i) || repeat('x', i % 50), 1 + i % 3, 0, now(), now()
		FROM generate_series(1, $1) i
		UNION ALL
		SELECT format('other-%s', i), 'other', 'u', '', 'other text', 1, 0, now(), now() FROM generate_series(1, 10) i`, n); err != nil {
		t.Fatal(err)
	}
	return dp, pool, cs
}

// setStage moves cohort pilot to stage within its first attempt.
func setStage(t *testing.T, dp *dataplane.Postgres, expect int64, stage string) dataplane.CohortState {
	t.Helper()
	return stageAttempt(t, dp, expect, stage, 1, "")
}

// waitReport polls the shard's report of cohort pilot until ok holds.
func waitReport(t *testing.T, dp *dataplane.Postgres, what string, timeout time.Duration, ok func(dataplane.CohortReport) bool) dataplane.CohortReport {
	t.Helper()
	rep, held := pollReport(t, dp, timeout, ok)
	if !held {
		t.Fatalf("%s: never happened; last report %+v", what, rep)
	}
	return rep
}

// waitReportOrLast is waitReport returning the last report instead of
// failing.
func waitReportOrLast(t *testing.T, dp *dataplane.Postgres, timeout time.Duration, ok func(dataplane.CohortReport) bool) dataplane.CohortReport {
	t.Helper()
	rep, _ := pollReport(t, dp, timeout, ok)
	return rep
}

// pollReport polls the shard's report of cohort pilot until ok holds
// (true) or timeout passes (false, with the last report seen).
func pollReport(t *testing.T, dp *dataplane.Postgres, timeout time.Duration, ok func(dataplane.CohortReport) bool) (dataplane.CohortReport, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last dataplane.CohortReport
	for {
		reps, err := dp.ShardReports(t.Context(), itRollout)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			for _, c := range r.Cohorts {
				if c.Cohort == "pilot" {
					last = c
					if ok(c) {
						return c, true
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return last, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scalar(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkOneGenesisEach: every document of the cohort has exactly one
// backfill genesis and one backfill ledger entry, the others none.
func checkOneGenesisEach(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	if got := scalar(t, pool, `SELECT count(DISTINCT doc_id) FROM yjs_updates WHERE origin = $1 AND doc_id LIKE 'doc-%'`, store.OriginBackfill); got != int64(n) {
		t.Errorf("%d documents have a genesis, want %d", got, n)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM (SELECT doc_id FROM yjs_updates WHERE origin = $1 GROUP BY doc_id HAVING count(*) > 1) x`, store.OriginBackfill); got != 0 {
		t.Errorf("%d documents have more than one genesis", got)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM (SELECT doc_id FROM save_ledger WHERE kind = $1 GROUP BY doc_id HAVING count(*) <> 1) x`, ledger.KindBackfill); got != 0 {
		t.Errorf("%d documents have other than one backfill ledger entry", got)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM save_ledger WHERE kind = $1`, ledger.KindBackfill); got != int64(n) {
		t.Errorf("%d backfill ledger entries, want %d", got, n)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM yjs_snapshots WHERE doc_id LIKE 'other-%'`); got != 0 {
		t.Errorf("%d documents outside the cohort were backfilled", got)
	}
}

// TestIntegrityBackfillAndVerify: a cohort moved to Backfill is migrated
// by the syncer and reported complete at its epoch; verification reaches
// every document; a legacy row changed behind the syncer's back is
// reported mismatched with its ID.
func TestIntegrityBackfillAndVerify(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 400
	dp, pool, cs := legacyFixture(t, dsn, n)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: itRollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Integrity: IntegrityConfig{BackfillRate: -1, BackfillBatch: 50, VerifyEvery: 100 * time.Millisecond, VerifyFullEvery: time.Hour}})
	}()
	rep := waitReport(t, dp, "legacy report", 30*time.Second, func(c dataplane.CohortReport) bool { return c.Epoch == cs.Epoch })
	if rep.Documents != n || rep.Backfilled != 0 || rep.BackfillComplete || rep.Verified != 0 {
		t.Fatalf("at Legacy: %+v", rep)
	}
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	rep = waitReport(t, dp, "DualWrite report", 30*time.Second, func(c dataplane.CohortReport) bool { return c.Epoch == cs.Epoch })
	if rep.Backfilled != 0 || rep.Verified != 0 || rep.Mismatched != 0 {
		t.Fatalf("at DualWrite, before the backfill: %+v", rep)
	}
	cs = setStage(t, dp, cs.Epoch, dataplane.StageBackfill)
	t0 := time.Now()
	rep = waitReport(t, dp, "backfill complete", 45*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete && c.Verified == n
	})
	t.Logf("backfilled and verified %d documents in %v", n, time.Since(t0))
	if rep.Documents != n || rep.Backfilled != n || rep.Mismatched != 0 || len(rep.SampleMismatches) != 0 {
		t.Fatalf("after the backfill: %+v", rep)
	}
	checkOneGenesisEach(t, pool, n)

	cs = setStage(t, dp, cs.Epoch, dataplane.StageVerify)
	rep = waitReport(t, dp, "verified at Verify", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n
	})
	// A legacy row changed behind the syncer's back: caught by the next
	// incremental pass.
	const tampered = "doc-000123"
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'changed behind the syncer''s back' WHERE doc_id = $1`, tampered); err != nil {
		t.Fatal(err)
	}
	// It is repaired at once (the row's change merged into the Yjs side),
	// and stays counted as a mismatch found under this epoch, with its ID.
	// (A report taken between the divergence's record and its repair
	// shows it open, with the last pass's verified count: wait for the
	// repair.)
	rep = waitReport(t, dp, "mismatch found and repaired", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Mismatched == 1 && c.Verified == n-1 && c.OpenDivergences == 0
	})
	if rep.Epoch != cs.Epoch || rep.OpenDivergences != 0 || !slices.Equal(rep.SampleMismatches, []string{tampered}) {
		t.Fatalf("after the out-of-band write: %+v", rep)
	}
	// (Verified == n-1: its Yjs text equals the row again, but it is
	// counted once, as the mismatch found: verified + mismatched is what
	// the pass has checked, which the controller compares with the
	// documents.)
	var legacy, by string
	if err := pool.QueryRow(ctx, `SELECT d.content, r.saved_by FROM documents d
		JOIN document_revisions r ON r.doc_id = d.doc_id AND r.revision = d.revision WHERE d.doc_id = $1`, tampered).Scan(&legacy, &by); err != nil {
		t.Fatal(err)
	}
	if legacy != "changed behind the syncer's back" || by != "outside-the-gateway" {
		t.Fatalf("after the repair: legacy %q, revision by %q", legacy, by)
	}
	// A new epoch (a rollback and a new attempt) starts the count again.
	cs = setStage(t, dp, cs.Epoch, dataplane.StageLegacy)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	rep = waitReport(t, dp, "new epoch", 30*time.Second, func(c dataplane.CohortReport) bool { return c.Epoch == cs.Epoch && c.Verified == n })
	if rep.Mismatched != 0 || rep.OpenDivergences != 0 {
		t.Fatalf("a new epoch still counts the old mismatch: %+v", rep)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestBackfillResumesAfterKill9: a syncer SIGKILLed in the middle of a
// rate-limited backfill resumes from its checkpoint when restarted, and
// every document ends with exactly one genesis.
func TestBackfillResumesAfterKill9(t *testing.T) {
	bin := buildSyncer(t)
	dsn := pgharness.ForTest(t)
	const n = 1000
	dp, pool, cs := legacyFixture(t, dsn, n)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageBackfill)
	start := func(rate string) *exec.Cmd {
		cmd := exec.Command(bin, "--listen", freeAddr(t), "--metrics-listen", "", "--heartbeat", "200ms",
			"--backfill-rate", rate, "--backfill-batch", "20", "--verify-every", "200ms")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "POD_NAME=demo-gateway-0", "YAWP_SHARDS=1",
			"YAWP_ROLLOUT="+itRollout, "YAWP_INTERNAL_TOKEN=tok")
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := start("400")
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Wait until the backfill is under way, then kill -9.
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if scalar(t, pool, `SELECT count(*) FROM yjs_snapshots WHERE doc_id LIKE 'doc-%'`) >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backfill did not start")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	partial := scalar(t, pool, `SELECT count(*) FROM yjs_snapshots WHERE doc_id LIKE 'doc-%'`)
	cp := scalar(t, pool, `SELECT backfilled FROM backfill_checkpoints WHERE rollout = $1 AND cohort = 'pilot' AND shard = 0`, itRollout)
	t.Logf("killed after %d of %d documents (checkpoint: %d)", partial, n, cp)
	if partial >= n {
		t.Fatalf("the backfill finished before the kill (%d documents); the test proves nothing", partial)
	}
	if cp != partial {
		t.Fatalf("checkpoint says %d backfilled, %d documents have a genesis", cp, partial)
	}
	cmd = start("-1")
	killed = false
	rep := waitReport(t, dp, "backfill complete after restart", 45*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete && c.Verified == n
	})
	if rep.Documents != n || rep.Backfilled != n || rep.Mismatched != 0 {
		t.Fatalf("after restart: %+v", rep)
	}
	checkOneGenesisEach(t, pool, n)
	// The checkpoint counted each document once across both runs.
	if got := scalar(t, pool, `SELECT backfilled FROM backfill_checkpoints WHERE rollout = $1 AND cohort = 'pilot' AND shard = 0`, itRollout); got != n {
		t.Errorf("checkpoint counts %d backfilled documents, want %d", got, n)
	}
	_ = fmt.Sprint
}

// TestBackfillRacesSaves: saves of the cohort's documents run while the
// backfill migrates them; each document gets its Yjs representation once
// (by the backfill or by a save, never both), every acknowledged save is
// what the document holds, and verification finds both sides equal.
func TestBackfillRacesSaves(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 600
	dp, pool, cs := legacyFixture(t, dsn, n)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: itRollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Ready: func(a string) { ready <- a },
			Integrity: IntegrityConfig{BackfillRate: 1500, BackfillBatch: 25, VerifyEvery: 100 * time.Millisecond, VerifyFullEvery: time.Hour}})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("syncer did not start")
	}
	c := &Client{BaseURL: "http://" + addr, Token: "tok"}
	cs = setStage(t, dp, cs.Epoch, dataplane.StageBackfill)
	const writers = 4
	acked := make([]map[string]string, writers)
	errs := make(chan error, writers)
	stop := make(chan struct{})
	for w := range writers {
		acked[w] = map[string]string{}
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				// Writer w owns the documents whose number is w mod writers.
				k := 1 + w + writers*((i*7)%(n/writers))
				doc, tenant := fmt.Sprintf("doc-%06d", k), "s2"
				if k%2 == 0 {
					tenant = "s1"
				}
				content := fmt.Sprintf("saved by %d, #%d", w, i)
				if _, err := c.Apply(ctx, store.Request{Kind: store.KindSave, Doc: doc, Tenant: tenant, User: "u", Content: content}); err != nil {
					errs <- err
					return
				}
				acked[w][doc] = content
			}
		}()
	}
	waitReport(t, dp, "backfill complete under saves", 45*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete
	})
	close(stop)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rep := waitReport(t, dp, "all verified", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n
	})
	if rep.Documents != n || rep.Backfilled != n || rep.Mismatched != 0 {
		t.Fatalf("after the backfill: %+v", rep)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM (SELECT doc_id FROM yjs_updates WHERE origin IN ($1, 'server:init') GROUP BY doc_id HAVING count(*) > 1) x`, store.OriginBackfill); got != 0 {
		t.Errorf("%d documents were given a Yjs representation twice", got)
	}
	saved := 0
	for w := range writers {
		for doc, content := range acked[w] {
			saved++
			var got string
			if err := pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, doc).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != content {
				t.Errorf("%s: holds %q, the last acknowledged save was %q", doc, got, content)
			}
		}
	}
	t.Logf("%d documents saved during the backfill; %d backfilled", saved, scalar(t, pool, `SELECT count(*) FROM yjs_updates WHERE origin = $1`, store.OriginBackfill))
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// runIntegritySyncer runs the syncer of shard 0 of 1 on dsn until the
// test ends, with fast integrity passes (an incremental one every 100 ms,
// a full one every fullEvery), and checks that it then exits cleanly.
func runIntegritySyncer(t *testing.T, dsn string, fullEvery time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: itRollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Integrity: IntegrityConfig{BackfillRate: -1, BackfillBatch: 50, VerifyEvery: 100 * time.Millisecond, VerifyFullEvery: fullEvery}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer: %v", err)
		}
	})
}

// atVerify starts a syncer (a full pass hourly) on a new database of n
// legacy documents in cohort pilot (legacyFixture) and walks the cohort to
// Verify (toVerify): its DSN, data plane, pool, state and first report
// there with every document verified.
func atVerify(t *testing.T, n int) (string, *dataplane.Postgres, *pgxpool.Pool, dataplane.CohortState, dataplane.CohortReport) {
	t.Helper()
	dsn := pgharness.ForTest(t)
	dp, pool, cs := legacyFixture(t, dsn, n)
	runIntegritySyncer(t, dsn, time.Hour)
	cs, rep := toVerify(t, dp, cs, int64(n))
	return dsn, dp, pool, cs, rep
}

// toVerify walks legacyFixture's cohort of n documents through DualWrite
// and Backfill to Verify, and returns its state and the first report
// there with every document verified.
func toVerify(t *testing.T, dp *dataplane.Postgres, cs dataplane.CohortState, n int64) (dataplane.CohortState, dataplane.CohortReport) {
	t.Helper()
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageBackfill)
	waitReport(t, dp, "backfilled", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete && c.Verified == n
	})
	cs = setStage(t, dp, cs.Epoch, dataplane.StageVerify)
	rep := waitReport(t, dp, "verified at Verify", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n
	})
	return cs, rep
}
