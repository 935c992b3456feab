package store

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestSpliceBounds: for edits anywhere in texts with multi-byte
// characters, the splice rebuilds the new text exactly and its middle is
// valid UTF-8 (PostgreSQL refuses anything else in a text column).
func TestSpliceBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", " ", "é", "ü", "日", "本", "😀", "🎉"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for i := range 5000 {
		prev := word(r.IntN(40))
		runes := []rune(prev)
		at := r.IntN(len(runes) + 1)
		cut := min(len(runes)-at, r.IntN(4))
		next := string(runes[:at]) + word(r.IntN(4)) + string(runes[at+cut:])
		h, tl := spliceBounds(prev, next)
		mid := next[h : len(next)-tl]
		if h+tl > len(prev) || h+tl > len(next) {
			t.Fatalf("case %d: %q -> %q: head %d + tail %d overlap", i, prev, next, h, tl)
		}
		if got := prev[:h] + mid + prev[len(prev)-tl:]; got != next {
			t.Fatalf("case %d: %q -> %q: splice (%d, %q, %d) rebuilds %q", i, prev, next, h, mid, tl, got)
		}
		if !utf8.ValidString(mid) {
			t.Fatalf("case %d: %q -> %q: middle %q is not valid UTF-8", i, prev, next, mid)
		}
	}
	if h, tl := spliceBounds("same text", "same text"); h+tl != len("same text") {
		t.Errorf("an unchanged text keeps %d of %d bytes", h+tl, len("same text"))
	}
}

// TestRevisionsKeptAsSplices: legacy saves of a large document keep their
// history as splices (a fraction of the bytes of whole texts), every
// revision still reads back exactly as saved, chains stay short, a stale
// save merges against a base kept as a splice, and a damaged splice is
// reported instead of giving wrong text.
func TestRevisionsKeptAsSplices(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("lf", dataplane.StageLocalFirst, "tf")
	// "essay" in the Legacy stage (legacy representation only), "lf" in
	// LocalFirst (every legacy save also goes into the Yjs log).
	history := map[string]map[int64]string{}
	for doc, tenant := range map[string]string{"essay": "t1", "lf": "tf"} {
		history[doc] = saveHistory(t, e, doc, tenant)
	}
	saved, text := history["lf"], history["lf"][81]
	// A stale save (Yjs-authoritative stage) is merged against its base,
	// a revision kept as a splice, read from PostgreSQL (another group).
	base := int64(40)
	var isSplice bool
	if err := e.pool.QueryRow(ctx, `SELECT splice_text IS NOT NULL FROM document_revisions WHERE doc_id = 'lf' AND revision = $1`, base).Scan(&isSplice); err != nil || !isSplice {
		t.Fatalf("revision %d is not a splice (%v): the test needs one", base, err)
	}
	res := e.submit(Request{Kind: KindSave, Doc: "lf", Tenant: "tf", User: "v", Content: "TITLE. " + saved[base], BaseRevision: base})
	if res.Outcome != OutcomeMerged || *res.Content != "TITLE. "+text {
		t.Fatalf("stale save against a splice base: outcome %s, %d bytes", res.Outcome, len(*res.Content))
	}

	// Damage: a splice that no longer rebuilds its recorded text.
	if _, err := e.pool.Exec(ctx, `UPDATE document_revisions SET splice_text = splice_text || 'Z' WHERE doc_id = 'lf' AND revision = $1`, base); err != nil {
		t.Fatal(err)
	}
	if got, err := e.eng.ReadRevision(ctx, "tf", "lf", base); err == nil {
		t.Fatalf("a damaged splice read as %d bytes without an error", len(got.Content))
	}
	// A stale save on the damaged base has nothing to merge against: its
	// text is kept aside (conflict-preserved), the document keeps its own.
	// Only such damage does that; a failed read fails the save instead.
	res = e.submit(Request{Kind: KindSave, Doc: "lf", Tenant: "tf", User: "v", Content: "MINE. " + saved[base], BaseRevision: base})
	if res.Outcome != OutcomeConflictPreserved || *res.Content == "MINE. "+saved[base] {
		t.Fatalf("stale save on a damaged base: outcome %s", res.Outcome)
	}
}

// saveHistory creates doc with about 5 KiB of text and makes 80 legacy
// saves, each inserting a character somewhere; it checks that every
// revision reads back as saved and is kept compactly, and returns the
// texts by revision.
func saveHistory(t *testing.T, e *env, doc, tenant string) map[int64]string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	for i := range 120 {
		fmt.Fprintf(&b, "Línea %d: the river runs to the sea 🌊, ", i)
	}
	text := b.String()
	saved := map[int64]string{1: text}
	e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: tenant, User: "u", Content: text})
	r := rand.New(rand.NewPCG(3, 4))
	rev := int64(1)
	for i := range 80 {
		runes := []rune(text)
		at := r.IntN(len(runes) + 1)
		text = string(runes[:at]) + []string{"x", "ñ", "字", "👍"}[i%4] + string(runes[at:])
		res := e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "u", Content: text, BaseRevision: rev})
		if res.Outcome != OutcomeSaved || *res.Content != text {
			t.Fatalf("%s: save %d: outcome %s", doc, i, res.Outcome)
		}
		rev = res.Revision
		saved[rev] = text
	}
	for n, want := range saved {
		got, err := e.eng.ReadRevision(ctx, tenant, doc, n)
		if err != nil || got.Content != want {
			t.Fatalf("%s: revision %d reads %d bytes (%v), want the %d saved", doc, n, len(got.Content), err, len(want))
		}
	}
	var splices, keptBytes int
	if err := e.pool.QueryRow(ctx, `SELECT count(splice_text), sum(octet_length(coalesce(content, splice_text)))
		FROM document_revisions WHERE doc_id = $1`, doc).Scan(&splices, &keptBytes); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, s := range saved {
		total += len(s)
	}
	if splices < 70 || keptBytes*5 > total {
		t.Errorf("%s: %d of %d revisions are splices, keeping %d bytes for %d bytes of text", doc, splices, len(saved), keptBytes, total)
	}
	// Every splice is fewer than spliceChain revisions from one kept whole.
	var longest int
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(max(r.revision - (SELECT max(w.revision) FROM document_revisions w
		WHERE w.doc_id = r.doc_id AND w.revision < r.revision AND w.splice_text IS NULL)), 0)
		FROM document_revisions r WHERE r.doc_id = $1 AND r.splice_text IS NOT NULL`, doc).Scan(&longest); err != nil {
		t.Fatal(err)
	}
	if longest >= spliceChain {
		t.Errorf("%s: a splice is %d revisions from a whole text, want under %d", doc, longest, spliceChain)
	}
	return saved
}

// TestKeysRecordedBeforeMigration10: an idempotency key recorded in
// save_requests (where every key went before migration 00010) still
// answers its repeats, which change nothing, after the syncer restarts;
// keys recorded now live with their revision and are honoured the same
// way.
func TestKeysRecordedBeforeMigration10(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "one", IdempotencyKey: "create"})
	first := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "two", BaseRevision: 1, IdempotencyKey: "old"})
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE idem_key IS NOT NULL`); n != 2 {
		t.Fatalf("%d revisions carry their idempotency key, want 2", n)
	}
	// The store as migration 00009 left it: the records in save_requests.
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO save_requests (doc_id, idem_key, result, at)
			SELECT doc_id, idem_key, idem_result::jsonb, saved_at FROM document_revisions WHERE idem_key IS NOT NULL;
		UPDATE document_revisions SET idem_key = NULL, idem_result = NULL`); err != nil {
		t.Fatal(err)
	}
	// A restarted syncer (the document loads cold, its stages are not
	// cached yet and then are: both paths).
	e.restart()
	e.submit(Request{Kind: KindCreate, Doc: "other", Tenant: "t", User: "u", Content: "x"})
	for i := range 3 {
		again := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "two", BaseRevision: 1, IdempotencyKey: "old"})
		if !again.Replayed || again.Revision != first.Revision || again.LedgerSeq != first.LedgerSeq {
			t.Fatalf("repeat %d of a key from save_requests: %+v, want the first answer (revision %d) replayed", i, again, first.Revision)
		}
		e.submit(Request{Kind: KindSave, Doc: "other", Tenant: "t", User: "u", Content: "x", BaseRevision: 0}) // keeps stages cached
	}
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'd'`); n != 2 {
		t.Fatalf("%d revisions of d after repeats, want 2", n)
	}
	third := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "three", BaseRevision: 2, IdempotencyKey: "new"})
	again := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "three", BaseRevision: 2, IdempotencyKey: "new"})
	if !again.Replayed || again.Revision != third.Revision {
		t.Fatalf("repeat of a key recorded with its revision: %+v", again)
	}
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'd'`); n != 3 {
		t.Fatalf("%d revisions of d, want 3", n)
	}
}

// TestUpdatesArrivingOutOfOrderAreAllKept: a client's three updates
// arrive third, second, first. The second only adds to what waits for the
// first; it is logged like the others (it was answered as a duplicate and
// never logged, so a reload lost it), every revision reads back as
// acknowledged, and a legacy save after them is readable too.
func TestUpdatesArrivingOutOfOrderAreAllKept(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("lf", dataplane.StageLocalFirst, "tf")
	base := strings.Repeat("An essay about the sea. ", 125)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "tf", User: "u", Content: base})
	res := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "tf", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	c := yjs.NewDoc(yjs.Options{ClientID: 77})
	if err := c.ApplyUpdate(res.Update); err != nil {
		t.Fatal(err)
	}
	var ups [][]byte
	c.OnUpdate(func(u []byte) { ups = append(ups, u) })
	tx := c.GetText(contract.YjsTextName)
	for _, s := range []string{"A", "B", "C"} {
		if err := tx.Insert(tx.Len(), s, nil); err != nil {
			t.Fatal(err)
		}
	}
	acked := map[int64]string{}
	for _, i := range []int{1, 2, 0} {
		r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "tf", User: "u", Update: ups[i]})
		if r.Outcome == OutcomeDuplicate {
			t.Fatalf("update %d answered as a duplicate: it was never applied before", i+1)
		}
		if r.ContentSHA256 != "" {
			acked[r.Revision] = r.ContentSHA256
		}
	}
	want := base + "ABC"
	saved := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "tf", User: "u", Content: want + "!", BaseRevision: 0})
	acked[saved.Revision] = saved.ContentSHA256
	// A restarted syncer rebuilds the document from its log.
	e.restart()
	doc, err := e.eng.Read(ctx, "tf", "d")
	if err != nil || doc.Content != want+"!" {
		t.Fatalf("after a restart the document ends %q (%v), want %q", doc.Content[max(0, len(doc.Content)-5):], err, "ABC!")
	}
	for rev, sha := range acked {
		r, err := e.eng.ReadRevision(ctx, "tf", "d", rev)
		if err != nil || ledger.SHA256Hex([]byte(r.Content)) != sha {
			t.Errorf("revision %d reads %q... (%v), not the text acknowledged", rev, r.Content[max(0, len(r.Content)-5):], err)
		}
	}
}

// restart closes the engine and opens a new one on the same database, as a
// restarted syncer: every document loads cold.
func (e *env) restart() { e.restartWith(Config{}) }

// restartWith restarts the syncer's engine with cfg's tunables.
func (e *env) restartWith(cfg Config) {
	e.t.Helper()
	e.eng.Close()
	cfg.Pool, cfg.DSN, cfg.Shard, cfg.Shards, cfg.Rollout, cfg.Holder = e.pool, e.dsn, 0, 1, rollout, "restarted"
	cfg.Logger = slog.New(slog.DiscardHandler)
	eng, err := Open(e.t.Context(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(eng.Close)
	e.eng = eng
}
