package syncer

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// runSyncerWithAPI runs shard 0 of 1 with fast integrity passes and an API
// the test can call; stop ends it (a pod restart).
func runSyncerWithAPI(t *testing.T, dsn string, fullEvery time.Duration) (c *Client, stop func()) {
	t.Helper()
	return runSyncerEvery(t, dsn, 100*time.Millisecond, fullEvery)
}

// runSyncerEvery is runSyncerWithAPI with incremental verification passes
// verifyEvery apart.
func runSyncerEvery(t *testing.T, dsn string, verifyEvery, fullEvery time.Duration) (c *Client, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := freeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: addr, DatabaseURL: dsn, Rollout: itRollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Integrity: IntegrityConfig{BackfillRate: -1, BackfillBatch: 50, VerifyEvery: verifyEvery, VerifyFullEvery: fullEvery}})
	}()
	c = &Client{BaseURL: "http://" + addr, Token: "tok", HTTP: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, c, cancel)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer: %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func stageAttempt(t *testing.T, dp *dataplane.Postgres, expect int64, stage string, attempt int32, outcome string) dataplane.CohortState {
	t.Helper()
	st, err := dp.SetStage(t.Context(), dataplane.StageChange{Key: dataplane.CohortKey{Rollout: itRollout, Cohort: "pilot"},
		ExpectEpoch: expect, Stage: stage, Attempt: attempt, Outcome: outcome, Reason: "Test", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestOfflineEditSurvivesARepairWhileRolledBack: a local-first student
// edits offline at LocalFirst; the cohort is rolled back; the legacy
// application appends to the row directly; the syncer repairs at Legacy;
// the student reconnects. Both edits must be in the text once, both sides
// must agree, and evidence must say synced for the student's client.
func TestOfflineEditSurvivesARepairWhileRolledBack(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 20
	dp, pool, cs := legacyFixture(t, dsn, n)
	c, _ := runSyncerWithAPI(t, dsn, time.Hour)
	ctx := t.Context()
	cs, _ = toVerify(t, dp, cs, n)
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLocalFirst, 1, "")
	const doc, tenant = "doc-000004", "s1"

	s1, err := c.Apply(ctx, store.Request{Kind: store.KindSync1, Doc: doc, Tenant: tenant, User: "stud", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	if err != nil {
		t.Fatal(err)
	}
	x := yjs.NewDoc(yjs.Options{ClientID: 4242})
	if err := x.ApplyUpdate(s1.Update); err != nil {
		t.Fatal(err)
	}
	tx := x.GetText(contract.YjsTextName)
	i := strings.Index(tx.String(), ":")
	if err := tx.Insert(i+1, " [student offline]", nil); err != nil {
		t.Fatal(err)
	}
	// It announces what it holds, then goes offline.
	if _, err := c.Apply(ctx, store.Request{Kind: store.KindSync1, Doc: doc, Tenant: tenant, User: "stud", StateVector: x.EncodeStateVector()}); err != nil {
		t.Fatal(err)
	}

	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = content || ' [teacher, legacy app]', revision = revision + 1 WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	waitReport(t, dp, "repaired at Legacy", 30*time.Second, func(r dataplane.CohortReport) bool {
		return r.Epoch == cs.Epoch && r.Mismatched == 1
	})

	// Back online (still at Legacy).
	s2, err := c.Apply(ctx, store.Request{Kind: store.KindSync1, Doc: doc, Tenant: tenant, User: "stud", StateVector: x.EncodeStateVector()})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.ApplyUpdate(s2.Update); err != nil {
		t.Fatal(err)
	}
	sv, err := yjs.DecodeStateVector(s2.StateVector)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, store.Request{Kind: store.KindYjs, Doc: doc, Tenant: tenant, User: "stud", Update: x.EncodeStateAsUpdate(sv)}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Read(ctx, tenant, doc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("text after: %q (client %q)", d.Content, tx.String())
	if strings.Count(d.Content, "[student offline]") != 1 || strings.Count(d.Content, "[teacher, legacy app]") != 1 {
		t.Errorf("text %q: want each edit once", d.Content)
	}
	if tx.String() != d.Content {
		t.Errorf("client has %q, server %q", tx.String(), d.Content)
	}
	var row string
	_ = pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, doc).Scan(&row)
	if row != d.Content {
		t.Errorf("row %q, read %q", row, d.Content)
	}
	ev, err := c.Evidence(ctx, doc, url.Values{"tenant": {tenant}, "client": {strconv.Itoa(4242)}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != store.VerdictSynced {
		t.Errorf("evidence for the student's client: %s (%s)", ev.Verdict, ev.Proof.Summary)
	}
	// The next attempt counts nothing.
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageDualWrite, 2, "")
	rep := waitReport(t, dp, "attempt 2 verified", 30*time.Second, func(r dataplane.CohortReport) bool {
		return r.Epoch == cs.Epoch && r.Verified+r.Mismatched == n
	})
	if rep.Mismatched != 0 {
		t.Errorf("attempt 2: %d mismatched %v", rep.Mismatched, rep.SampleMismatches)
	}
}

// TestDeletionWhileRolledBackStaysAfterARestart: a row deleted outside
// the gateway while the cohort is rolled back to Legacy (legacy
// authoritative: the deletion stands). The next attempt reaches
// LocalFirst and the syncer restarts, as pods do: a read of the document
// must not bring it back from its Yjs side. The deletion standing was
// kept only in memory, and after a restart the row was made again.
func TestDeletionWhileRolledBackStaysAfterARestart(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 20
	dp, pool, cs := legacyFixture(t, dsn, n)
	c, stop := runSyncerWithAPI(t, dsn, time.Hour)
	ctx := t.Context()
	cs, _ = toVerify(t, dp, cs, n)
	const doc, tenant = "doc-000004", "s1"
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	waitReport(t, dp, "Legacy report", 10*time.Second, func(r dataplane.CohortReport) bool { return r.Epoch == cs.Epoch })
	if _, err := pool.Exec(ctx, `DELETE FROM documents WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the incremental passes see the deletion; it stands at Legacy
	if _, err := c.Read(ctx, tenant, doc); err == nil {
		t.Fatal("readable at Legacy after its deletion")
	}
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageDualWrite, 2, "")
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageBackfill, 2, "")
	waitReport(t, dp, "backfilled", 30*time.Second, func(r dataplane.CohortReport) bool {
		return r.Epoch == cs.Epoch && r.BackfillComplete && r.Verified == n-1
	})
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageVerify, 2, "")
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLocalFirst, 2, "")
	waitReport(t, dp, "LocalFirst verified", 30*time.Second, func(r dataplane.CohortReport) bool {
		return r.Epoch == cs.Epoch && r.Verified == n-1
	})
	if got := scalar(t, pool, `SELECT count(*) FROM documents WHERE doc_id = $1`, doc); got != 0 {
		t.Fatalf("the row deleted at Legacy is back before any restart")
	}
	stop()
	c, _ = runSyncerWithAPI(t, dsn, time.Hour)
	d, err := c.Read(ctx, tenant, doc)
	if err == nil {
		t.Errorf("a document deleted while the cohort was at Legacy (legacy authoritative, deletion logged as standing) "+
			"is back at LocalFirst after a restart: read %q", d.Content)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM documents WHERE doc_id = $1`, doc); got != 0 {
		t.Errorf("its legacy row was made again (%d rows); ledger: %d repaired entries", got,
			scalar(t, pool, `SELECT count(*) FROM save_ledger WHERE doc_id = $1 AND kind = 'repaired'`, doc))
	}
}

// TestWriteDuringANewAttemptCountsForItWhenAPassBeganAtLegacy: a full
// pass that began while the cohort was rolled back to Legacy (epoch E_L)
// is still running when the new attempt starts (E_2). A row written
// outside the gateway after that, and verified later in the same pass,
// was recorded under E_L, so attempt 2's gate never saw a write made
// during it. A row written before the attempt began, found by the same
// pass after it began, counts under E_L (migration 00014): it was
// counted against attempt 2. A lock on divergences only stretches the pass so the window
// is hit every time; a long full pass over a big cohort opens it alone.
func TestWriteDuringANewAttemptCountsForItWhenAPassBeganAtLegacy(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 300 // two verification batches of 256
	dp, pool, cs := legacyFixture(t, dsn, n)
	runSyncerWithAPI(t, dsn, 100*time.Millisecond) // every pass full
	ctx := t.Context()
	cs, _ = toVerify(t, dp, cs, n)
	csL := stageAttempt(t, dp, cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	waitReport(t, dp, "Legacy report", 10*time.Second, func(r dataplane.CohortReport) bool { return r.Epoch == csL.Epoch })

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(context.Background()) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE divergences IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	// A legitimate Legacy-period write in the first batch.
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'legacy-period write', revision = revision + 1 WHERE doc_id = 'doc-000001'`); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); scalar(t, pool,
		// (The statement starts with its CTE: pg_stat_activity shows the
		// first 1024 bytes, which may end before its INSERT.)
		`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WITH cur AS (SELECT epoch, attempt FROM rollout_cohorts%'`) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Legacy pass never reached the mismatch")
		}
	}
	// The new attempt starts; then the legacy application writes a row
	// of the second batch: a write during attempt 2.
	cs2 := stageAttempt(t, dp, csL.Epoch, dataplane.StageDualWrite, 2, "")
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'written during attempt 2', revision = revision + 1 WHERE doc_id = 'doc-000300'`); err != nil {
		t.Fatal(err)
	}
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	maxMis := int64(0)
	var samples []string
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		rep, _ := pollReport(t, dp, 0, func(dataplane.CohortReport) bool { return true })
		if rep.Epoch == cs2.Epoch && rep.Mismatched > maxMis {
			maxMis, samples = rep.Mismatched, rep.SampleMismatches
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The Legacy-period write, found by the same pass after the attempt
	// began, is not the attempt's: counted under the epoch it was made in.
	if maxMis != 1 || len(samples) != 1 || samples[0] != "doc-000300" {
		t.Errorf("attempt 2 counted %d mismatched %v, want doc-000300 alone (doc-000001 was written at Legacy)", maxMis, samples)
	}
	if got := scalar(t, pool, `SELECT min(epoch) FROM divergences WHERE doc_id = 'doc-000001'`); got != csL.Epoch {
		t.Errorf("doc-000001's divergence is counted under epoch %d, want the Legacy epoch %d it was written in", got, csL.Epoch)
	}
	var divEpoch, ledgerEpoch int64
	_ = pool.QueryRow(ctx, `SELECT epoch FROM divergences WHERE doc_id = 'doc-000300' ORDER BY detected_at DESC LIMIT 1`).Scan(&divEpoch)
	_ = pool.QueryRow(ctx, `SELECT (body::jsonb->>'epoch')::bigint FROM save_ledger WHERE doc_id = 'doc-000300' AND kind = 'repaired' ORDER BY seq DESC LIMIT 1`).Scan(&ledgerEpoch)
	t.Logf("Legacy epoch %d, attempt-2 epoch %d; doc-000300's divergence recorded under %d, its repair ledgered under %d", csL.Epoch, cs2.Epoch, divEpoch, ledgerEpoch)
	if maxMis == 0 {
		t.Errorf("doc-000300 was written outside the gateway after attempt 2 started (epoch %d), yet no report of attempt 2 counted a mismatch: "+
			"the pass begun at Legacy recorded it under epoch %d and repaired it", cs2.Epoch, divEpoch)
	}
}

// TestWhichCohortsAreVerifiedAtLegacy: a pass lists a Legacy cohort only
// if it left Legacy and came back (its documents have the Yjs side an
// attempt built). Not one frozen and never started, nor one a person
// rolled back (intent: Rollback) before it ever left Legacy: full passes
// over documents without a Yjs side every minute would find nothing.
func TestWhichCohortsAreVerifiedAtLegacy(t *testing.T) {
	obs := dataplane.Observation{Cohorts: []dataplane.CohortStage{
		{Cohort: "frozen", Stage: dataplane.StageLegacy, Epoch: 1, Attempt: 1},
		{Cohort: "rolled-back", Stage: dataplane.StageLegacy, Epoch: 2, Attempt: 1, Outcome: dataplane.OutcomeRolledBack, LeftLegacy: true},
		{Cohort: "halted", Stage: dataplane.StageVerify, Epoch: 3, Attempt: 1, Outcome: dataplane.OutcomeHalted, LeftLegacy: true},
		{Cohort: "rolled-back-before-it-started", Stage: dataplane.StageLegacy, Epoch: 4, Attempt: 1, Outcome: dataplane.OutcomeRolledBack},
		{Cohort: "retried", Stage: dataplane.StageDualWrite, Epoch: 5, Attempt: 2, LeftLegacy: true},
	}}
	got, _ := verifiedCohorts(obs)
	if want := []string{"rolled-back", "halted", "retried"}; !slices.Equal(got, want) {
		t.Errorf("verified %v, want %v", got, want)
	}
}
