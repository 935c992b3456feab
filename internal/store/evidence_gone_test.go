package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestEvidenceOfADocumentWhoseRowWasDeletedOutsideTheGateway: a student
// cannot find her essay; it was saved (synced), then its row deleted by
// the legacy application. Until a request for the document put the
// deletion on record (at Legacy, never), support read only "synced:
// committed as revision 2", as if the text were still there. The
// finding now says the document no longer exists, when its row went (as
// the database logged it) and after which ledger entry, also from a
// syncer whose clock runs ahead of the database's (it said only "the
// deletion is not on record yet", the deletion's time being before the
// save's).
func TestEvidenceOfADocumentWhoseRowWasDeletedOutsideTheGateway(t *testing.T) {
	for _, c := range []struct {
		stage string
		skew  time.Duration
	}{{dataplane.StageLegacy, 0}, {dataplane.StageDualWrite, 0}, {dataplane.StageLegacy, 10 * time.Minute}} {
		stage := c.stage
		t.Run(fmt.Sprintf("%s/syncer clock %+v", stage, c.skew), func(t *testing.T) {
			e := setupOn(t, pgharness.ForTest(t), func(cfg *Config) { cfg.Clock = func() time.Time { return time.Now().Add(c.skew) } })
			e.cohort("c", stage, "t")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Hello"})
			saved := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Hello, my essay"})
			before := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
			if strings.Contains(before.Proof.Summary, "no longer exists") {
				t.Fatalf("before the deletion: %q", before.Proof.Summary)
			}
			// The deletion as the legacy application makes it: its own
			// transaction, stamped by PostgreSQL's clock.
			var deletedAt time.Time
			if err := e.pool.QueryRow(t.Context(), `WITH d AS (DELETE FROM documents WHERE doc_id = 'd' RETURNING 1) SELECT now() FROM d`).Scan(&deletedAt); err != nil {
				t.Fatal(err)
			}
			ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
			t.Logf("%s: %s", ev.Verdict, ev.Proof.Summary)
			want := fmt.Sprintf("the document no longer exists: its row was deleted outside the gateway on %s, after ledger entry %d (the database logged the deletion",
				deletedAt.UTC().Format(time.RFC3339), saved.LedgerSeq)
			if ev.Exists || ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, want) {
				t.Errorf("exists %v, %s %q; want synced saying %q", ev.Exists, ev.Verdict, ev.Proof.Summary, want)
			}
			// Asked about alice's save itself, the same.
			if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", User: "alice"}); !strings.Contains(ev.Proof.Summary, "no longer exists") {
				t.Errorf("asked about alice: %s %q", ev.Verdict, ev.Proof.Summary)
			}
			// Another school asking learns nothing of it.
			if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "other"}); strings.Contains(ev.Proof.Summary, "no longer exists") {
				t.Errorf("another school is told: %q", ev.Proof.Summary)
			}
		})
	}
}

// TestEvidenceOfARefusalOfADocumentWhoseRowWasDeletedOutsideTheGateway:
// a student's save of the text she had just saved is refused (her token
// had expired); then the legacy application deletes the row. Asked about
// the refused request, support read "the same text ... was already
// committed by request k1", and told her the essay was safe: nothing said
// the document was gone, as the synced finding of the same answer did.
// A refusal's finding says so too (when the database logged the deletion,
// after which ledger entry), with or without a note on its work.
func TestEvidenceOfARefusalOfADocumentWhoseRowWasDeletedOutsideTheGateway(t *testing.T) {
	for _, stage := range []string{dataplane.StageLegacy, dataplane.StageDualWrite} {
		t.Run(stage, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", stage, "t")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Hello"})
			saved := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "k1", Content: "Hello, my essay"})
			// As the gateway records a save refused for an expired token
			// (with its text's hash) and one refused before its body was
			// read (without).
			e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-1", Code: "token_expired", Reason: "token expired", Content: "Hello, my essay"})
			e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-2", Code: "rate_limited", Reason: "too many requests"})
			var deletedAt time.Time
			if err := e.pool.QueryRow(t.Context(), `WITH d AS (DELETE FROM documents WHERE doc_id = 'd' RETURNING 1) SELECT now() FROM d`).Scan(&deletedAt); err != nil {
				t.Fatal(err)
			}
			gone := fmt.Sprintf("the document no longer exists: its row was deleted outside the gateway on %s, after ledger entry %d",
				deletedAt.UTC().Format(time.RFC3339), saved.LedgerSeq)
			ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "night-1"})
			t.Logf("%s: %s", ev.Verdict, ev.Proof.Summary)
			if ev.Verdict != VerdictRejected || !strings.Contains(ev.Proof.Summary, "was already committed by request k1") || !strings.Contains(ev.Proof.Summary, gone) {
				t.Errorf("night-1: %s %q; want rejected, already committed by k1, saying %q", ev.Verdict, ev.Proof.Summary, gone)
			}
			ev = e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "night-2"})
			if ev.Verdict != VerdictRejected || !strings.HasPrefix(ev.Proof.Summary, "refused: rate_limited") || !strings.Contains(ev.Proof.Summary, gone) {
				t.Errorf("night-2: %s %q; want rejected saying %q", ev.Verdict, ev.Proof.Summary, gone)
			}
			// The whole document: the synced finding says it as before.
			ev = e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
			if ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, gone) {
				t.Errorf("whole document: %s %q", ev.Verdict, ev.Proof.Summary)
			}
		})
	}
}
