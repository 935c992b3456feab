package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// replaceRow deletes document d's row and creates a row with the same ID
// for tenant as the legacy application does, each in its own transaction
// stamped by PostgreSQL's clock, and returns when each happened.
func (e *env) replaceRow(doc, tenant, owner, title, content string) (deletedAt, createdAt time.Time) {
	e.t.Helper()
	ctx := e.t.Context()
	if err := e.pool.QueryRow(ctx, `WITH d AS (DELETE FROM documents WHERE doc_id = $1 RETURNING 1) SELECT now() FROM d`, doc).Scan(&deletedAt); err != nil {
		e.t.Fatal(err)
	}
	if err := e.pool.QueryRow(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 1, 0, now(), now()) RETURNING created_at`, doc, tenant, owner, title, content).Scan(&createdAt); err != nil {
		e.t.Fatal(err)
	}
	return deletedAt, createdAt
}

// TestEvidenceOfADocumentReplacedOutsideTheGateway: alice's essay is
// saved (k1); the legacy application deletes its row and creates a new
// document with the same ID for carol of the same school. Evidence
// answered "synced: committed as revision 2" from alice's save, as if
// the row at the ID now were that document: support told carol her
// document held alice's essay. The old entries are now said to be of the
// document deleted then, and the answer says when the row was replaced;
// once carol saves through the gateway, her save heads the answer, which
// still says the row was replaced and which ledger entries are older.
//
// The syncer's clock need not agree with the database's: with it ten
// minutes behind, carol's save was said to be of the deleted document
// (its entry stamped before the row's creation), and ten minutes ahead
// the replacement was not seen at all. The ledger's position at each
// change is what places the entries now.
func TestEvidenceOfADocumentReplacedOutsideTheGateway(t *testing.T) {
	for _, c := range []struct {
		stage string
		skew  time.Duration
	}{{dataplane.StageLegacy, 0}, {dataplane.StageDualWrite, 0}, {dataplane.StageLegacy, -10 * time.Minute}, {dataplane.StageDualWrite, 10 * time.Minute}} {
		stage := c.stage
		t.Run(fmt.Sprintf("%s/syncer clock %+v", stage, c.skew), func(t *testing.T) {
			e := setupOn(t, pgharness.ForTest(t), func(cfg *Config) { cfg.Clock = func() time.Time { return time.Now().Add(c.skew) } })
			e.cohort("c", stage, "t")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Hello"})
			saved := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "k1", Content: "Hello, my essay"})
			deletedAt, createdAt := e.replaceRow("d", "t", "carol", "Carol's notes", "Carol's own text.")
			del, ins := deletedAt.UTC().Format(time.RFC3339), createdAt.UTC().Format(time.RFC3339)

			ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
			t.Logf("%s: %s", ev.Verdict, ev.Proof.Summary)
			want := fmt.Sprintf("the document at this ID is a row created outside the gateway on %s (revision 1", ins)
			wantReplaced := fmt.Sprintf("which replaced one deleted outside the gateway on %s", del)
			if !ev.Exists || ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, want) || !strings.Contains(ev.Proof.Summary, wantReplaced) {
				t.Errorf("whole document: %s %q; want synced saying %q and %q", ev.Verdict, ev.Proof.Summary, want, wantReplaced)
			}
			old := fmt.Sprintf("that was the document deleted outside the gateway on %s, not the one at this ID now", del)
			for _, f := range ev.Findings {
				if f.Revision == saved.Revision && f.Verdict == VerdictSynced && !strings.Contains(f.Summary, old) {
					t.Errorf("alice's save presented as the current document's: %q; want it to say %q", f.Summary, old)
				}
			}
			ev = e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "k1"})
			if ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, old) {
				t.Errorf("request k1: %s %q; want synced saying %q", ev.Verdict, ev.Proof.Summary, old)
			}

			res := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "carol", IdempotencyKey: "c1", Content: "Carol's own text, edited."})
			ev = e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
			t.Logf("after carol's save: %s: %s", ev.Verdict, ev.Proof.Summary)
			replaced := fmt.Sprintf("the document's row was replaced outside the gateway: deleted on %s and created again with this ID on %s, so ledger entries up to %d are of the document deleted then",
				del, ins, saved.LedgerSeq)
			if ev.Verdict != VerdictSynced || ev.Proof.Revision != res.Revision || !strings.Contains(ev.Proof.Summary, replaced) {
				t.Errorf("after carol's save: %s revision %d %q; want synced revision %d saying %q", ev.Verdict, ev.Proof.Revision, ev.Proof.Summary, res.Revision, replaced)
			}
		})
	}
}

// TestEvidenceOfAnIDTheLegacyApplicationGaveToAnotherSchool: school t's
// essay (its title, its requests, a refusal of one) is deleted by the
// legacy application, which creates a row with the same ID for school
// t2. School t2's evidence showed school t's refusal (its request ID,
// user and text hash) as an attempt to reach t2's document, and asked
// about alice, "alice saved 2 revisions ... (/v1/documents/d/revisions/2)"
// from school t's history. No answer to t2 names anything of school t's;
// school t hears that its document was deleted, and nothing of t2's.
//
// Given in place (the row's tenant updated, as a transfer between schools
// may be done), it is the same: the database logs a change of tenant as
// the row deleted for the first school and created for the second.
func TestEvidenceOfAnIDTheLegacyApplicationGaveToAnotherSchool(t *testing.T) {
	t.Run("deleted and inserted", func(t *testing.T) {
		testEvidenceOfAnIDGivenToAnotherSchool(t, func(e *env) time.Time {
			deletedAt, _ := e.replaceRow("d", "t2", "bob", "Bob's notes", "Bob's text.")
			return deletedAt
		})
	})
	t.Run("tenant updated in place", func(t *testing.T) {
		testEvidenceOfAnIDGivenToAnotherSchool(t, func(e *env) time.Time {
			var at time.Time
			if err := e.pool.QueryRow(t.Context(), `WITH u AS (UPDATE documents SET tenant = 't2', owner = 'bob', title = 'Bob''s notes', content = 'Bob''s text.'
				WHERE doc_id = 'd' RETURNING 1) SELECT now() FROM u`).Scan(&at); err != nil {
				t.Fatal(err)
			}
			return at
		})
	})
}

func testEvidenceOfAnIDGivenToAnotherSchool(t *testing.T, give func(*env) time.Time) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "t-create", Title: ptr("Alice's secret essay"), Content: "Alice's draft."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "t-save", Content: "Alice's essay."})
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "t-refused", Code: "token_expired", Reason: "token expired", Content: "Alice's essay."})
	deletedAt := give(e)
	secrets := []string{"t-create", "t-save", "t-refused", "alice", "Alice", ledger.SHA256Hex([]byte("Alice's essay.")), ledger.SHA256Hex([]byte("Alice's draft."))}
	check := func(when string) {
		t.Helper()
		for _, q := range []EvidenceQuery{{}, {Request: "t-refused"}, {Request: "t-save"}, {User: "alice"}, {Revision: 1}, {Revision: 2}, {Client: 1}} {
			q.Doc, q.Tenant = "d", "t2"
			ev := e.evidence(q)
			ev.Subject = "" // the asker's own words
			b, _ := json.Marshal(ev)
			for _, s := range secrets {
				if s == q.Request {
					continue // the asker's own words, said back ("no entry ... names request t-save")
				}
				if strings.Contains(string(b), s) {
					t.Errorf("%s: school t2 asking about %q is told %q of school t's: %s", when, q.subject(), s, b)
					break
				}
			}
		}
	}
	check("before any request touched the new row")
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited."})
	check("after school t2's save")

	// School t: its document is gone, not "synced" as if still there; and
	// nothing of school t2's document.
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
	t.Logf("school t: %s: %s", ev.Verdict, ev.Proof.Summary)
	gone := fmt.Sprintf("the document no longer exists: its row was deleted outside the gateway on %s", deletedAt.UTC().Format(time.RFC3339))
	if ev.Exists || ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, gone) {
		t.Errorf("school t: exists %v, %s %q; want synced saying %q", ev.Exists, ev.Verdict, ev.Proof.Summary, gone)
	}
	b, _ := json.Marshal(ev)
	for _, s := range []string{"bob", "Bob", "t2"} {
		if strings.Contains(string(b), s) {
			t.Errorf("school t is told %q of school t2's: %s", s, b)
		}
	}
}
