package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestEvidenceOfAnotherSchoolsRefusedUpdateOnTheSameID: a student of
// school t2 sends an update to the ID of school t's document (a copy of
// a t student's update: the same operations). It is refused (not_found).
// School t's evidence said of that refusal "every operation it carried
// ... was already committed by request first-1": a claim that another
// school's request was a save of, or held work of, this document. It is
// said to be another school's request, which could not reach the
// document and says nothing of its saves.
func TestEvidenceOfAnotherSchoolsRefusedUpdateOnTheSameID(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t", "t2")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task."})
	stu := e.replicasOf("t", "d", 601)[0]
	u := insertAtEnd(t, stu, " My paragraph.")
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "first-1", Update: u})
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t2", User: "mallory", RequestID: "x-1", Update: u}); !isNotFound(err) {
		t.Fatalf("another school's update: %v", err)
	}
	for _, q := range []EvidenceQuery{{}, {Request: "x-1"}, {Client: 601}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		for _, f := range ev.Findings {
			if f.Verdict != VerdictRejected {
				continue
			}
			t.Logf("%s: %s", q.subject(), f.Summary)
			if strings.Contains(f.Summary, "committed") || f.Revision != 0 || len(f.Entries) != 1 {
				t.Errorf("%s: another school's refusal presented as this document's work: %q (revision %d, entries %v)", q.subject(), f.Summary, f.Revision, f.Entries)
			}
			if want := "a request of another school, refused without reaching this document"; !strings.Contains(f.Summary, want) {
				t.Errorf("%s: %q does not say %q", q.subject(), f.Summary, want)
			}
		}
	}
}

// TestEvidenceOfATamperedLedgerEntry: a superuser disables the ledger's
// trigger and rewrites entry 2 of a document's chain (the request's key,
// then, in a second document, the stored hash). evidence verify reports
// the entry; the evidence answer carried the same problem only in its
// chain section, while its findings said "synced: committed as revision
// 2" resting on that very entry, or, asked about the key the entry had,
// "never-persisted: no trace at any layer". Every finding resting on the
// entry says it fails the check, an answer that finds nothing says the
// chain is broken, and both name the entries evidence verify names.
func TestEvidenceOfATamperedLedgerEntry(t *testing.T) {
	for _, tc := range []struct{ name, tamper string }{
		{"body", `UPDATE save_ledger SET body = replace(body, '"k2"', '"k9"') WHERE doc_id = $1 AND seq = 2`},
		{"hash", `UPDATE save_ledger SET hash = sha256(hash) WHERE doc_id = $1 AND seq = 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			ctx := t.Context()
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", IdempotencyKey: "k1", Content: "a"})
			e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", IdempotencyKey: "k2", Content: "b"})
			e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", IdempotencyKey: "k3", Content: "c"})
			for _, sql := range []string{`ALTER TABLE save_ledger DISABLE TRIGGER save_ledger_no_update`, tc.tamper,
				`ALTER TABLE save_ledger ENABLE TRIGGER save_ledger_no_update`} {
				var args []any
				if strings.Contains(sql, "$1") {
					args = []any{"d"}
				}
				if _, err := e.pool.Exec(ctx, sql, args...); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := e.eng.VerifyLedger(ctx, "d")
			if err != nil || rep.OK || len(rep.Problems) == 0 || rep.Problems[0].Seq != 2 {
				t.Fatalf("evidence verify: %+v %v", rep, err)
			}
			var seqs []int64
			for _, p := range rep.Problems {
				seqs = append(seqs, p.Seq)
			}
			seqs = slices.Compact(seqs)
			key := "k2"
			if tc.name == "body" {
				key = "k9"
			}
			for _, q := range []EvidenceQuery{{}, {Request: key}, {Request: "k2"}, {Revision: 2}, {User: "u"}, {Request: "k3"}} {
				q.Doc, q.Tenant = "d", "t"
				ev := e.evidence(q)
				t.Logf("%s: %s: %s", q.subject(), ev.Verdict, ev.Proof.Summary)
				if !slices.Equal(ev.Chain.Problems, rep.Problems) {
					t.Errorf("%s: evidence's chain problems %+v, evidence verify's %+v", q.subject(), ev.Chain.Problems, rep.Problems)
				}
				for _, f := range ev.Findings {
					if slices.Contains(f.Entries, 2) && !strings.Contains(f.Summary, "ledger entry 2, which this rests on, fails the hash-chain check") {
						t.Errorf("%s: a %s finding resting on the tampered entry 2 does not say so: %q", q.subject(), f.Verdict, f.Summary)
					}
				}
				want := fmt.Sprintf("the ledger's hash chain fails its check at %s", entryList(seqs))
				if !strings.Contains(ev.Proof.Summary, want) && !slices.Contains(ev.Proof.Entries, 2) {
					t.Errorf("%s: %s %q does not say %q", q.subject(), ev.Verdict, ev.Proof.Summary, want)
				}
			}
		})
	}
}

// entryList names ledger positions as a summary does.
func entryList(seqs []int64) string {
	s := make([]string, len(seqs))
	for i, n := range seqs {
		s[i] = fmt.Sprint(n)
	}
	if len(s) == 1 {
		return "ledger entry " + s[0]
	}
	return "ledger entries " + strings.Join(s, ", ")
}

// TestEvidenceOfAnUnknownRequest: asked about a request no entry names
// (a mistyped key, a request that never reached the gateway), evidence
// answered "no trace at any layer: no ledger entry, revision, Yjs update
// or client state vector names it", which did not say what was looked
// for or where. It names the document and the request.
func TestEvidenceOfAnUnknownRequest(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", IdempotencyKey: "k1", Content: "a"})
	for _, doc := range []string{"d", "never-used"} {
		ev := e.evidence(EvidenceQuery{Doc: doc, Tenant: "t", Request: "k-typo"})
		want := fmt.Sprintf("no entry in the ledger of document %s names request k-typo", doc)
		if ev.Verdict != VerdictNeverPersisted || !strings.HasPrefix(ev.Proof.Summary, want) {
			t.Errorf("document %s: %s %q; want never-persisted saying %q", doc, ev.Verdict, ev.Proof.Summary, want)
		}
	}
}
