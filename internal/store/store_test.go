package store

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/yjs"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

const rollout = "default/demo"

type env struct {
	t    testing.TB
	dsn  string
	pool *pgxpool.Pool
	dp   *dataplane.Postgres
	eng  *Engine
}

func setup(t testing.TB) *env {
	t.Helper()
	return setupOn(t, pgharness.ForTest(t))
}

// setupOn is setup on the database at dsn, the engine's configuration
// changed by opts.
func setupOn(t testing.TB, dsn string, opts ...func(*Config)) *env {
	t.Helper()
	ctx := t.Context()
	dp, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := dp.RegisterRollout(ctx, rollout, "", 1); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: rollout, Holder: "test", Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	eng, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &env{t: t, dsn: dsn, pool: pool, dp: dp, eng: eng}
}

// cohort freezes a cohort of the given tenants and moves it to stage.
func (e *env) cohort(name, stage string, tenants ...string) dataplane.CohortState {
	e.t.Helper()
	ctx := e.t.Context()
	key := dataplane.CohortKey{Rollout: rollout, Cohort: name}
	st, err := e.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: tenants}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if stage != dataplane.StageLegacy {
		st = e.setStage(name, st.Epoch, stage)
	}
	return st
}

func (e *env) setStage(cohort string, expect int64, stage string) dataplane.CohortState {
	e.t.Helper()
	return e.stageAttempt(cohort, expect, stage, 1, "")
}

// stageAttempt changes a cohort's stage within an attempt, ending it with
// outcome if not "".
func (e *env) stageAttempt(cohort string, expect int64, stage string, attempt int32, outcome string) dataplane.CohortState {
	e.t.Helper()
	st, err := e.dp.SetStage(e.t.Context(), dataplane.StageChange{Key: dataplane.CohortKey{Rollout: rollout, Cohort: cohort},
		ExpectEpoch: expect, Stage: stage, Attempt: attempt, Outcome: outcome, Reason: "test", At: time.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) submit(r Request) Result {
	e.t.Helper()
	res, err := e.eng.Submit(e.t.Context(), r)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.Kind, r.Doc, err)
	}
	return res
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.t.Context(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) entries(doc string) []ledger.Entry {
	e.t.Helper()
	rows, err := LedgerRows(e.t.Context(), e.pool, doc)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []ledger.Entry
	for _, r := range rows {
		var en ledger.Entry
		if err := jsonUnmarshal(r.Body, &en); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, en)
	}
	return out
}

// clientEdit makes a Yjs client that starts from the server's state of
// doc (sync step 1 with an empty state vector), inserts text at the end and
// returns its update.
func (e *env) clientEdit(tenant, doc string, client uint64, text string) []byte {
	e.t.Helper()
	res := e.submit(Request{Kind: KindSync1, Doc: doc, Tenant: tenant, User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	c := yjs.NewDoc(yjs.Options{ClientID: client})
	if err := c.ApplyUpdate(res.Update); err != nil {
		e.t.Fatal(err)
	}
	sv := c.StateVector()
	var got []byte
	c.OnUpdate(func(u []byte) { got = u })
	tx := c.GetText(contract.YjsTextName)
	if err := tx.Insert(tx.Len(), text, nil); err != nil {
		e.t.Fatal(err)
	}
	_ = sv
	return got
}

// replicas puts tenant t's document d (text "x") in a LocalFirst cohort
// and returns Yjs replicas of the server's state for the given clients,
// as clients that synced once would hold it.
func (e *env) replicas(clients ...uint64) []*yjs.Doc {
	e.t.Helper()
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	return e.replicasOf("t", "d", clients...)
}

// replicasOf returns Yjs replicas of the server's state of tenant's doc
// (sync step 1 with an empty state vector), one per client ID.
func (e *env) replicasOf(tenant, doc string, clients ...uint64) []*yjs.Doc {
	e.t.Helper()
	res := e.submit(Request{Kind: KindSync1, Doc: doc, Tenant: tenant, User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	var out []*yjs.Doc
	for _, id := range clients {
		d := yjs.NewDoc(yjs.Options{ClientID: id})
		if err := d.ApplyUpdate(res.Update); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func ptr(s string) *string { return &s }

func TestStageTable(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	for _, tc := range []struct {
		stage string
		// legacy save writes Yjs for a document that has none yet
		yjsForNewDoc bool
		// the legacy row's content follows saves
		legacyWritten bool
	}{
		{dataplane.StageLegacy, false, true},
		{dataplane.StageDualWrite, true, true},
		{dataplane.StageBackfill, true, true},
		{dataplane.StageVerify, true, true},
		{dataplane.StageLocalFirst, true, true},
		{dataplane.StageComplete, true, true},
		{dataplane.StageLegacyRetired, true, false},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			tenant := "t-" + strings.ToLower(tc.stage)
			cs := e.cohort("c-"+strings.ToLower(tc.stage), tc.stage, tenant)
			doc := "doc-" + tenant
			// Legacy create and save.
			r := e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: tenant, User: "alice", Title: ptr("essay"), Content: "hello", IdempotencyKey: "k1"})
			if r.Outcome != OutcomeCreated || r.Revision != 1 || r.Stage.Stage != tc.stage || r.Stage.Epoch != cs.Epoch {
				t.Fatalf("create: %+v", r)
			}
			r = e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "alice", Content: "hello world", BaseRevision: 1, IdempotencyKey: "k2"})
			if r.Outcome != OutcomeSaved || r.Revision != 2 {
				t.Fatalf("save: %+v", r)
			}
			yjsRows := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = $1`, doc)
			if (yjsRows > 0) != tc.yjsForNewDoc {
				t.Errorf("legacy saves wrote %d Yjs updates; want some: %v", yjsRows, tc.yjsForNewDoc)
			}
			var content string
			if err := e.pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, doc).Scan(&content); err != nil {
				t.Fatal(err)
			}
			wantLegacy := "hello world"
			if !tc.legacyWritten {
				wantLegacy = ""
			}
			if content != wantLegacy {
				t.Errorf("legacy row content %q, want %q", content, wantLegacy)
			}
			if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = $1`, doc); n != 2 {
				t.Errorf("%d revisions in the save history, want 2", n)
			}
			// A Yjs update (the sync step 1 gives the document a Yjs
			// representation in every stage).
			u := e.clientEdit(tenant, doc, 1001, "!")
			r = e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: tenant, User: "bob", Update: u, RequestID: "y1"})
			if r.Outcome != OutcomeSaved || r.Revision != 3 {
				t.Fatalf("yjs update: %+v", r)
			}
			if err := e.pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, doc).Scan(&content); err != nil {
				t.Fatal(err)
			}
			if wantLegacy != "" {
				wantLegacy = "hello world!"
			}
			if content != wantLegacy {
				t.Errorf("after a Yjs update the legacy row holds %q, want %q", content, wantLegacy)
			}
			// Replaying the update changes nothing.
			r = e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: tenant, User: "bob", Update: u, RequestID: "y1-again"})
			if r.Outcome != OutcomeDuplicate {
				t.Errorf("replayed update: %+v", r)
			}
			// Legacy save after the document has Yjs: both written.
			before := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = $1`, doc)
			r = e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "alice", Content: "Hello world!", BaseRevision: 3, IdempotencyKey: "k3"})
			if r.Revision != 4 {
				t.Fatalf("save: %+v", r)
			}
			if after := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = $1`, doc); after != before+1 {
				t.Errorf("legacy save on a document with Yjs wrote %d updates, want 1", after-before)
			}
			d, err := e.eng.Read(ctx, tenant, doc)
			if err != nil {
				t.Fatal(err)
			}
			if d.Content != "Hello world!" || d.Revision != 4 || !d.HasYjs {
				t.Errorf("read: %+v", d)
			}
			// Every ledger entry names this stage and epoch.
			for _, en := range e.entries(doc) {
				if en.Stage != tc.stage || en.Epoch != cs.Epoch || en.ShardEpoch != e.eng.ShardEpoch() {
					t.Errorf("ledger entry %d: stage %s epoch %d shard epoch %d", en.Seq, en.Stage, en.Epoch, en.ShardEpoch)
				}
			}
			// Replays of legacy requests change nothing.
			n := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = $1`, doc)
			r = e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "alice", Content: "hello world", BaseRevision: 1, IdempotencyKey: "k2"})
			if !r.Replayed || r.Revision != 2 {
				t.Errorf("replayed save: %+v", r)
			}
			if m := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = $1`, doc); m != n {
				t.Errorf("replay added %d ledger entries", m-n)
			}
			if rep, _ := e.eng.VerifyLedger(ctx, doc); !rep.OK {
				t.Errorf("chain: %+v", rep)
			}
		})
	}
	// A tenant in no cohort saves at Legacy, epoch 0.
	r := e.submit(Request{Kind: KindCreate, Doc: "loose", Tenant: "nobody", User: "u", Content: "x"})
	if r.Stage.Stage != dataplane.StageLegacy || r.Stage.Epoch != 0 {
		t.Errorf("tenant without cohort: %+v", r.Stage)
	}
}

func TestLegacyDocWithoutYjsInLegacyStage(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLegacy, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "a"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "ab", BaseRevision: 1})
	if n := e.count(`SELECT count(*) FROM yjs_updates`); n != 0 {
		t.Errorf("Legacy stage wrote %d Yjs updates for a document without a Yjs log", n)
	}
}

func TestStaleBaseSaves(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("legacy", dataplane.StageVerify, "tl")
	e.cohort("lf", dataplane.StageLocalFirst, "tf")

	// Legacy-authoritative: applied as legacy would, superseded kept.
	e.submit(Request{Kind: KindCreate, Doc: "a", Tenant: "tl", User: "u", Content: "draft one"})
	e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tl", User: "teacher", Content: "draft one, reviewed", BaseRevision: 1, IdempotencyKey: "rev"})
	r := e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tl", User: "student", Content: "draft two", BaseRevision: 1, IdempotencyKey: "stale"})
	if r.Outcome != OutcomeOverwrittenPreserved || r.SupersededRevision != 2 || *r.Content != "draft two" {
		t.Fatalf("stale legacy save: %+v", r)
	}
	rev, err := e.eng.ReadRevision(ctx, "tl", "a", 2)
	if err != nil || rev.Content != "draft one, reviewed" {
		t.Fatalf("superseded revision: %+v %v", rev, err)
	}
	ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "a", Tenant: "tl", Request: "rev"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictOverwrittenPreserved || ev.Proof.PreservedAt != "/v1/documents/a/revisions/2" {
		t.Errorf("evidence of the overwritten save: %s %+v", ev.Verdict, ev.Proof)
	}
	// Asked about a time after everything: no claim of "no trace at any
	// layer".
	if ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "a", Tenant: "tl", Since: time.Now().Add(time.Hour)}); err != nil ||
		ev.Verdict != VerdictNeverPersisted || !strings.Contains(ev.Proof.Summary, "earlier entries exist") {
		t.Errorf("evidence since a later time: %s %+v %v", ev.Verdict, ev.Proof, err)
	}
	// Asked about what happened since then: nothing was overwritten.
	later := time.Now()
	e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tl", User: "teacher", Content: "draft three", BaseRevision: 3})
	if ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "a", Tenant: "tl", User: "teacher", Since: later}); err != nil || ev.Verdict != VerdictSynced {
		t.Errorf("evidence since the overwrite: %s %+v %v", ev.Verdict, ev.Proof, err)
	}

	// Yjs-authoritative: three-way merged.
	e.submit(Request{Kind: KindCreate, Doc: "b", Tenant: "tf", User: "u", Content: "hello world"})
	e.submit(Request{Kind: KindSave, Doc: "b", Tenant: "tf", User: "u", Content: "Hello world", BaseRevision: 1})
	r = e.submit(Request{Kind: KindSave, Doc: "b", Tenant: "tf", User: "v", Content: "hello world!", BaseRevision: 1, IdempotencyKey: "m"})
	if r.Outcome != OutcomeMerged || *r.Content != "Hello world!" {
		t.Fatalf("merge: %+v", r)
	}
	// Conflict: current text kept, the save's text preserved.
	r = e.submit(Request{Kind: KindSave, Doc: "b", Tenant: "tf", User: "w", Content: "goodbye", BaseRevision: 1, IdempotencyKey: "c"})
	if r.Outcome != OutcomeConflictPreserved || *r.Content != "Hello world!" || r.PreservedID != 1 {
		t.Fatalf("conflict: %+v", r)
	}
	p, err := e.eng.ReadPreserved(ctx, "tf", "b", 1)
	if err != nil || p.Content != "goodbye" {
		t.Fatalf("preserved: %+v %v", p, err)
	}
	ev, err = e.eng.Evidence(ctx, EvidenceQuery{Doc: "b", Tenant: "tf", Request: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictOverwrittenPreserved || ev.Proof.PreservedAt != "/v1/documents/b/preserved/1" {
		t.Errorf("evidence of the conflicting save: %s %+v", ev.Verdict, ev.Proof)
	}
	kinds := map[string]int{}
	for _, en := range e.entries("b") {
		kinds[en.Kind]++
	}
	if kinds[ledger.KindMerged] != 1 || kinds[ledger.KindPreserved] != 1 {
		t.Errorf("ledger kinds: %v", kinds)
	}
}

func TestEvidenceVerdicts(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x", IdempotencyKey: "create"})

	// synced
	ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t", Request: "create"})
	if err != nil || ev.Verdict != VerdictSynced || ev.Proof.Revision != 1 || ev.Proof.Hash == "" {
		t.Fatalf("synced: %+v %v", ev.Proof, err)
	}
	// saved-locally-not-synced: a client announces operations we never got.
	res := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "s", StateVector: yjs.EncodeStateVector(yjs.StateVector{4242: 17})})
	if res.Missing["4242"] != [2]uint64{0, 17} {
		t.Fatalf("missing: %+v", res.Missing)
	}
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t", Client: 4242})
	if ev.Verdict != VerdictSavedLocallyNotSynced || ev.Proof.LastSeen == nil {
		t.Fatalf("not synced: %s %+v", ev.Verdict, ev.Proof)
	}
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t"})
	if ev.Verdict != VerdictSavedLocallyNotSynced {
		t.Errorf("document verdict with an unsynced client: %s", ev.Verdict)
	}
	// ... and once its operations arrive, synced.
	c := yjs.NewDoc(yjs.Options{ClientID: 4242})
	_ = c.ApplyUpdate(e.clientEdit("t", "d", 9, ""))
	if err := c.ApplyUpdate(res.Update); err != nil {
		t.Fatal(err)
	}
	var u []byte
	c.OnUpdate(func(b []byte) { u = b })
	txt := c.GetText(contract.YjsTextName)
	if err := txt.Insert(txt.Len(), "seventeen chars!!", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "s", Update: u})
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t", Client: 4242})
	if ev.Verdict != VerdictSynced {
		t.Errorf("after the client's operations arrived: %s %+v", ev.Verdict, ev.Findings)
	}
	// rejected
	_, err = e.eng.Submit(ctx, Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "s", Update: []byte{0xff, 0xff, 0xff}, RequestID: "garbage"})
	if AsError(err).Code != CodeInvalidUpdate {
		t.Fatalf("garbage update: %v", err)
	}
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t", Request: "garbage"})
	if ev.Verdict != VerdictRejected || ev.Proof.Reason == "" {
		t.Errorf("rejected: %s %+v", ev.Verdict, ev.Proof)
	}
	// never-persisted
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "t", Request: "no-such-request"})
	if ev.Verdict != VerdictNeverPersisted {
		t.Errorf("never persisted: %s", ev.Verdict)
	}
	ev, _ = e.eng.Evidence(ctx, EvidenceQuery{Doc: "never", Tenant: "t"})
	if ev.Verdict != VerdictNeverPersisted || ev.Exists {
		t.Errorf("unknown document: %s", ev.Verdict)
	}
	// Another tenant sees nothing: the answer of an ID without a trace.
	other, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "d", Tenant: "other"})
	if err != nil || other.Exists || other.Verdict != VerdictNeverPersisted || len(other.Timeline) != 0 || other.Chain.Entries != 0 {
		t.Errorf("other tenant's evidence: %v %+v", err, other)
	}
}

func TestTamperedLedgerDetected(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "a"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "b"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "c"})
	if rep, _ := e.eng.VerifyLedger(ctx, "d"); !rep.OK || rep.Entries != 3 {
		t.Fatalf("fresh chain: %+v", rep)
	}
	// The trigger refuses changes.
	if _, err := e.pool.Exec(ctx, `UPDATE save_ledger SET body = replace(body, '"u"', '"mallory"') WHERE doc_id = 'd' AND seq = 2`); err == nil {
		t.Fatal("UPDATE of a ledger row was allowed")
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM save_ledger WHERE doc_id = 'd'`); err == nil {
		t.Fatal("DELETE of ledger rows was allowed")
	}
	// A superuser who disables the trigger is still caught by the chain.
	for _, sql := range []string{
		`ALTER TABLE save_ledger DISABLE TRIGGER save_ledger_no_update`,
		`UPDATE save_ledger SET body = replace(body, '"u"', '"mallory"') WHERE doc_id = 'd' AND seq = 2`,
		`ALTER TABLE save_ledger ENABLE TRIGGER save_ledger_no_update`,
	} {
		if _, err := e.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ := e.eng.VerifyLedger(ctx, "d")
	if rep.OK || len(rep.Problems) == 0 || rep.Problems[0].Seq != 2 {
		t.Fatalf("tampered chain not detected: %+v", rep)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "a"})
	snapshot := func() string {
		var s string
		if err := e.pool.QueryRow(ctx, `SELECT (SELECT string_agg(content || revision, ',') FROM documents) ||
			(SELECT count(*) FROM document_revisions) || '/' || (SELECT count(*) FROM yjs_updates)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	foreign := e.clientEdit("t", "d", 7, "x")
	before := snapshot()
	for _, tc := range []struct {
		name string
		req  Request
		code string
	}{
		{"garbage yjs", Request{Kind: KindYjs, Doc: "d", Tenant: "t", Update: []byte("not an update")}, CodeInvalidUpdate},
		{"empty yjs", Request{Kind: KindYjs, Doc: "d", Tenant: "t", Update: nil}, CodeInvalidUpdate},
		{"garbage state vector", Request{Kind: KindSync1, Doc: "d", Tenant: "t", StateVector: []byte{0xff}}, CodeInvalidSV},
		{"unknown document", Request{Kind: KindSave, Doc: "nope", Tenant: "t", Content: "x"}, CodeNotFound},
		{"wrong tenant", Request{Kind: KindSave, Doc: "d", Tenant: "evil", Content: "x"}, CodeNotFound},
		{"wrong tenant yjs", Request{Kind: KindYjs, Doc: "d", Tenant: "evil", Update: foreign}, CodeNotFound},
		{"future base", Request{Kind: KindSave, Doc: "d", Tenant: "t", Content: "x", BaseRevision: 99}, CodeUnknownRevision},
		{"oversize", Request{Kind: KindSave, Doc: "d", Tenant: "t", Content: strings.Repeat("x", contract.MaxContentBytes+1)}, CodeTooLarge},
		{"bad utf8", Request{Kind: KindSave, Doc: "d", Tenant: "t", Content: "\xff"}, CodeInvalidRequest},
		{"exists", Request{Kind: KindCreate, Doc: "d", Tenant: "t", Content: "x"}, CodeAlreadyExists},
		{"no doc id", Request{Kind: KindSave, Tenant: "t"}, CodeInvalidRequest},
		{"bad kind", Request{Kind: "drop", Doc: "d", Tenant: "t"}, CodeInvalidRequest},
	} {
		_, err := e.eng.Submit(ctx, tc.req)
		if got := AsError(err); err == nil || got.Code != tc.code {
			t.Errorf("%s: got %v, want code %s", tc.name, err, tc.code)
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("bad input changed the store: %s -> %s", before, after)
	}
	d, _ := e.eng.Read(ctx, "t", "d")
	if d.Content != "a" {
		t.Errorf("content %q", d.Content)
	}
}

func TestFencedAfterTakeover(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "a"})
	// A successor bumps the shard epoch (as Open does after taking the
	// advisory lock): this engine must not write behind it.
	if _, err := e.pool.Exec(ctx, `UPDATE shard_leases SET epoch = epoch + 1 WHERE shard = 0`); err != nil {
		t.Fatal(err)
	}
	_, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "b"})
	if AsError(err).Code != CodeFenced {
		t.Fatalf("save after takeover: %v", err)
	}
	select {
	case <-e.eng.Fenced():
	default:
		t.Error("engine not marked fenced")
	}
	// The reason is told (a syncer that stopped because its database
	// went away said another syncer had taken its shard).
	if r := e.eng.FenceReason(); !strings.Contains(r, "shard epoch is") {
		t.Errorf("fence reason %q", r)
	}
	if n := e.count(`SELECT count(*) FROM document_revisions`); n != 1 {
		t.Errorf("%d revisions after a fenced save", n)
	}
}

// TestStageFlipDuringConcurrentSaves flips the cohort's stage while
// hundreds of saves run: every acknowledged save is in the ledger exactly
// once, under the one (stage, epoch) that was current when it committed.
func TestStageFlipDuringConcurrentSaves(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	cs := e.cohort("c", dataplane.StageLegacy, "t")
	const docs, savesPerDoc = 10, 40
	for i := range docs {
		e.submit(Request{Kind: KindCreate, Doc: fmt.Sprintf("d%d", i), Tenant: "t", User: "u", Content: ""})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]Result{}
	errs := make(chan error, docs*savesPerDoc*2)
	// Yjs clients write to their own documents at the same time.
	const ydocs = 5
	yacked := map[string]Result{}
	for i := range ydocs {
		doc := fmt.Sprintf("y%d", i)
		first := e.clientEdit("t", doc, uint64(500+i), "")
		_ = first
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := yjs.NewDoc(yjs.Options{ClientID: uint64(900 + i)})
			var u []byte
			c.OnUpdate(func(b []byte) { u = b })
			txt := c.GetText(contract.YjsTextName)
			for j := range savesPerDoc {
				if err := txt.Insert(txt.Len(), fmt.Sprintf("<%d>", j), nil); err != nil {
					errs <- err
					return
				}
				rid := fmt.Sprintf("%s-y%d", doc, j)
				res, err := e.eng.Submit(ctx, Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: u, RequestID: rid})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				yacked[rid] = res
				mu.Unlock()
			}
		}()
	}
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := fmt.Sprintf("d%d", i)
			text := ""
			for j := range savesPerDoc {
				text += fmt.Sprintf("[%d]", j)
				key := fmt.Sprintf("%s-%d", doc, j)
				res, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: doc, Tenant: "t", User: "u", Content: text, IdempotencyKey: key})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked[key] = res
				mu.Unlock()
			}
		}()
	}
	epochStage := map[int64]string{cs.Epoch: dataplane.StageLegacy}
	epoch := cs.Epoch
	for _, stage := range []string{dataplane.StageDualWrite, dataplane.StageBackfill, dataplane.StageVerify, dataplane.StageLocalFirst, dataplane.StageLegacy} {
		time.Sleep(15 * time.Millisecond)
		st := e.setStage("c", epoch, stage)
		epoch = st.Epoch
		epochStage[epoch] = stage
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(acked) != docs*savesPerDoc {
		t.Fatalf("%d saves acknowledged, want %d", len(acked), docs*savesPerDoc)
	}
	seen := map[string]int{}
	epochsUsed := map[int64]int{}
	for i := range docs {
		doc := fmt.Sprintf("d%d", i)
		for _, en := range e.entries(doc) {
			if en.IdempotencyKey == "" {
				continue
			}
			seen[en.IdempotencyKey]++
			epochsUsed[en.Epoch]++
			if want, ok := epochStage[en.Epoch]; !ok || want != en.Stage {
				t.Errorf("%s committed under stage %s epoch %d; that epoch's stage is %q", en.IdempotencyKey, en.Stage, en.Epoch, want)
			}
			if r := acked[en.IdempotencyKey]; r.LedgerSeq != en.Seq || r.Stage.Epoch != en.Epoch {
				t.Errorf("%s acknowledged as %+v, ledger says seq %d epoch %d", en.IdempotencyKey, r, en.Seq, en.Epoch)
			}
		}
		if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = $1`, doc); n != savesPerDoc+1 {
			t.Errorf("%s has %d revisions, want %d", doc, n, savesPerDoc+1)
		}
		// From DualWrite on, both representations agree at every commit.
		d, err := e.eng.Read(ctx, "t", doc)
		if err != nil {
			t.Fatal(err)
		}
		if d.LegacyContent != nil {
			t.Errorf("%s: representations differ: %q vs %q", doc, d.Content, *d.LegacyContent)
		}
	}
	for k := range acked {
		if seen[k] != 1 {
			t.Errorf("save %s has %d ledger entries", k, seen[k])
		}
	}
	if len(yacked) != ydocs*savesPerDoc {
		t.Fatalf("%d Yjs updates acknowledged, want %d", len(yacked), ydocs*savesPerDoc)
	}
	for i := range ydocs {
		doc := fmt.Sprintf("y%d", i)
		n := 0
		for _, en := range e.entries(doc) {
			if en.RequestID == "" || en.Kind == ledger.KindStateVector {
				continue
			}
			n++
			if want, ok := epochStage[en.Epoch]; !ok || want != en.Stage {
				t.Errorf("%s committed under stage %s epoch %d; that epoch's stage is %q", en.RequestID, en.Stage, en.Epoch, want)
			}
			if r := yacked[en.RequestID]; r.LedgerSeq != en.Seq || r.Stage.Epoch != en.Epoch {
				t.Errorf("%s acknowledged as %+v, ledger says seq %d epoch %d", en.RequestID, r, en.Seq, en.Epoch)
			}
		}
		if n != savesPerDoc {
			t.Errorf("%s: %d Yjs updates in the ledger, want %d", doc, n, savesPerDoc)
		}
		d, err := e.eng.Read(ctx, "t", doc)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		for j := range savesPerDoc {
			want += fmt.Sprintf("<%d>", j)
		}
		if d.Content != want {
			t.Errorf("%s: text %q", doc, d.Content)
		}
	}
	t.Logf("saves per epoch: %v; group commits: %d", epochsUsed, e.eng.Batches.Load())
	// Retrying a save (the same request again) changes nothing.
	before := e.count(`SELECT count(*) FROM save_ledger`)
	for i := range docs {
		e.retry(Request{Kind: KindSave, Doc: fmt.Sprintf("d%d", i), Tenant: "t", User: "u", Content: "[0][1][2][3]", IdempotencyKey: fmt.Sprintf("d%d-3", i)}, acked)
	}
	if after := e.count(`SELECT count(*) FROM save_ledger`); after != before {
		t.Errorf("retries added %d ledger entries", after-before)
	}
}

// retry sends r again and checks it is answered as the replay of the
// acknowledged request with its key.
func (e *env) retry(r Request, acked map[string]Result) {
	e.t.Helper()
	res, err := e.eng.Submit(e.t.Context(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	if !res.Replayed || res.Revision != acked[r.IdempotencyKey].Revision {
		e.t.Errorf("retry of %s: %+v", r.IdempotencyKey, res)
	}
}

func TestColdLoadFromSnapshotAndLog(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageComplete, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: ""})
	want := ""
	for i := range 150 { // crosses the snapshot interval twice
		want += fmt.Sprint(i % 10)
		e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: want})
	}
	l := e.eng.laneOf("d")
	l.mu.Lock()
	e.eng.cache.evict("d")
	l.mu.Unlock()
	d, err := e.eng.Read(ctx, "t", "d")
	if err != nil || d.Content != want || d.Revision != 151 {
		t.Fatalf("cold read: %q rev %d, %v", d.Content, d.Revision, err)
	}
	if n := e.count(`SELECT upto_seq FROM yjs_snapshots WHERE doc_id = 'd'`); n < 128 {
		t.Errorf("snapshot covers up to %d", n)
	}
}

var _ = errors.New

// TestTinyCache runs concurrent saves on more documents than the cache
// holds: documents are evicted and reloaded from snapshot plus log between
// and during groups, and nothing is lost or doubled.
func TestTinyCache(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx := t.Context()
	_, pool, err := dataplane.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	eng, err := Open(ctx, Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: rollout, Holder: "t", CacheDocs: 2, Lanes: 2,
		SnapshotEvery: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	const docs, saves = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, docs)
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := fmt.Sprint("c", i)
			if _, err := eng.Submit(ctx, Request{Kind: KindCreate, Doc: doc, Tenant: "t", User: "u"}); err != nil {
				errs <- err
				return
			}
			c := yjs.NewDoc(yjs.Options{ClientID: uint64(100 + i)})
			var u []byte
			c.OnUpdate(func(b []byte) { u = b })
			txt := c.GetText(contract.YjsTextName)
			for j := range saves {
				if j%2 == 0 {
					_ = txt.Insert(txt.Len(), "y", nil)
					if _, err := eng.Submit(ctx, Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: u}); err != nil {
						errs <- err
						return
					}
				} else if _, err := eng.Submit(ctx, Request{Kind: KindSync1, Doc: doc, Tenant: "t", User: "u", StateVector: c.EncodeStateVector()}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range docs {
		doc := fmt.Sprint("c", i)
		d, err := eng.Read(ctx, "t", doc)
		if err != nil {
			t.Fatal(err)
		}
		if d.Content != strings.Repeat("y", (saves+1)/2) {
			t.Errorf("%s: %q", doc, d.Content)
		}
		if rep, _ := eng.VerifyLedger(ctx, doc); !rep.OK || rep.Entries != 1+saves {
			t.Errorf("%s: chain %+v", doc, rep)
		}
	}
}

// A student's long offline session arrives as one update several times the
// size of the text (deleted text stays in the history): it is accepted up
// to contract.MaxUpdateBytes, not refused at the JSON body limit.
func TestLongOfflineHistoryIsAccepted(t *testing.T) {
	e := setup(t)
	e.cohort("pilot", "DualWrite", "t")
	c := yjs.NewDoc(yjs.Options{ClientID: 77})
	txt := c.GetText(contract.YjsTextName)
	draft := strings.Repeat("a draft paragraph. ", 16000) // 304,000 bytes
	for range 4 {
		if err := txt.Insert(0, draft, nil); err != nil {
			t.Fatal(err)
		}
		if err := txt.Delete(0, txt.Len()); err != nil {
			t.Fatal(err)
		}
	}
	if err := txt.Insert(0, "final essay", nil); err != nil {
		t.Fatal(err)
	}
	u := c.EncodeStateAsUpdate(nil)
	if len(u) <= contract.MaxBodyBytes || len(u) > contract.MaxUpdateBytes {
		t.Fatalf("update is %d bytes; the test needs one between %d and %d", len(u), contract.MaxBodyBytes, contract.MaxUpdateBytes)
	}
	res := e.submit(Request{Kind: KindYjs, Doc: "offline", Tenant: "t", User: "s", Update: u, RequestID: "long-offline"})
	if res.LedgerSeq == 0 {
		t.Fatalf("the update was not committed: %+v", res)
	}
	if n := e.count(`SELECT count(*) FROM documents WHERE doc_id = 'offline' AND content = 'final essay'`); n != 1 {
		t.Fatalf("the legacy row does not hold the final text (%d rows)", n)
	}
}

// A stale save's title is merged like its text: it never silently undoes
// a rename made since its base, and a save kept aside changes neither the
// text nor the title.
func TestStaleSaveTitles(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("lf", dataplane.StageLocalFirst, "tf")
	e.cohort("legacy", dataplane.StageVerify, "tl")
	title := func(s string) *string { return &s }

	e.submit(Request{Kind: KindCreate, Doc: "a", Tenant: "tf", User: "student", Title: title("Essay"), Content: "one two three"})
	e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "teacher", Title: title("Essay (graded)"), Content: "one two three", BaseRevision: 1})
	// The student's editor sends the title it loaded with every save.
	r := e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "student", Title: title("Essay"), Content: "one two three four", BaseRevision: 1})
	if r.Outcome != OutcomeMerged || r.Title != "Essay (graded)" || *r.Content != "one two three four" {
		t.Fatalf("stale save that did not touch the title: %s %q %q", r.Outcome, r.Title, *r.Content)
	}
	// Both renamed it: the save is kept aside whole.
	r = e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "student", Title: title("My essay"), Content: "one two three four five", BaseRevision: 1})
	if r.Outcome != OutcomeConflictPreserved || r.Title != "Essay (graded)" || *r.Content != "one two three four" || r.PreservedID != 1 {
		t.Fatalf("stale save renaming a renamed document: %s %q %q %d", r.Outcome, r.Title, *r.Content, r.PreservedID)
	}
	p, err := e.eng.ReadPreserved(ctx, "tf", "a", 1)
	if err != nil || p.Title == nil || *p.Title != "My essay" || p.Content != "one two three four five" {
		t.Fatalf("preserved save: %+v %v", p, err)
	}
	// Only the save renamed it: the rename applies.
	r = e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "teacher", Title: title("Final"), Content: "one two three four", BaseRevision: 3})
	if r.Outcome != OutcomeMerged || r.Title != "Final" {
		t.Fatalf("stale save renaming a document nobody else renamed: %s %q", r.Outcome, r.Title)
	}

	// A text conflict keeps the document's title too.
	e.submit(Request{Kind: KindCreate, Doc: "b", Tenant: "tf", User: "u", Title: title("Notes"), Content: "hello world"})
	e.submit(Request{Kind: KindSave, Doc: "b", Tenant: "tf", User: "u", Content: "Hello world", BaseRevision: 1})
	r = e.submit(Request{Kind: KindSave, Doc: "b", Tenant: "tf", User: "v", Title: title("Goodbye notes"), Content: "goodbye", BaseRevision: 1})
	if r.Outcome != OutcomeConflictPreserved || r.Title != "Notes" || *r.Content != "Hello world" {
		t.Fatalf("conflicting save: %s %q %q", r.Outcome, r.Title, *r.Content)
	}
	if p, err := e.eng.ReadPreserved(ctx, "tf", "b", 1); err != nil || p.Title == nil || *p.Title != "Goodbye notes" || p.Content != "goodbye" {
		t.Fatalf("preserved conflicting save: %+v %v", p, err)
	}
	var stored string
	if err := e.pool.QueryRow(ctx, `SELECT title FROM documents WHERE doc_id = 'b'`).Scan(&stored); err != nil || stored != "Notes" {
		t.Errorf("legacy row's title: %q %v", stored, err)
	}

	// Legacy-authoritative stages behave as the old store: the save wins,
	// title included; what it overwrote stays in the history.
	e.submit(Request{Kind: KindCreate, Doc: "c", Tenant: "tl", User: "u", Title: title("Old"), Content: "x"})
	e.submit(Request{Kind: KindSave, Doc: "c", Tenant: "tl", User: "u", Title: title("Renamed"), Content: "x", BaseRevision: 1})
	r = e.submit(Request{Kind: KindSave, Doc: "c", Tenant: "tl", User: "v", Title: title("Old"), Content: "xy", BaseRevision: 1})
	if r.Outcome != OutcomeOverwrittenPreserved || r.Title != "Old" {
		t.Fatalf("stale save in Verify: %s %q", r.Outcome, r.Title)
	}
}

// TestNoOpUpdateOnLegacyDocIsOnRecord: a Yjs update that adds nothing (an
// empty one) to a legacy-only document is answered as a duplicate, but the
// document gets its Yjs representation for it (generation 1, the genesis
// of its text); that write has its ledger entry like every other, and the
// chain verifies.
func TestNoOpUpdateOnLegacyDocIsOnRecord(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "legacy text"})
	res := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: []byte{0, 0}})
	if res.Outcome != OutcomeDuplicate {
		t.Fatalf("empty update: outcome %s, want %s", res.Outcome, OutcomeDuplicate)
	}
	if n := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = 'd'`); n != 1 {
		t.Fatalf("Yjs log has %d updates, want the genesis", n)
	}
	en := e.entries("d")
	last := en[len(en)-1]
	if len(en) != 2 || last.Kind != ledger.KindCommitted || last.Outcome != OutcomeDuplicate || last.YjsSeq != 1 ||
		last.ContentSHA256 != ledger.SHA256Hex([]byte("legacy text")) || res.LedgerSeq != 2 {
		t.Errorf("ledger after the empty update: %d entries, last %+v; answer at seq %d", len(en), last, res.LedgerSeq)
	}
	if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
		t.Errorf("chain: %+v %v", rep, err)
	}
	// Once the document has its representation, an empty update is a
	// plain duplicate again: nothing written, nothing recorded.
	res = e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: []byte{0, 0}})
	if n := len(e.entries("d")); res.Outcome != OutcomeDuplicate || n != 2 {
		t.Errorf("second empty update: outcome %s, %d ledger entries, want duplicate and 2", res.Outcome, n)
	}
}
