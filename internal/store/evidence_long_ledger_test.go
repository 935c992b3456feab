package store

import (
	"fmt"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// longLedgerWithUnsentWork: a document whose ledger holds some 5,000
// entries (a class's sessions: syncs and updates), and twelve tabs of
// user "stu" that announced operations they never sent. The note on
// documents deleted outside the gateway once measured, for each entry of
// such a ledger, the state vector the ledger held before it (every entry
// read again per entry, per unsynced client: about 2 s an answer here),
// though only a deletion needs it; BenchmarkEvidenceOfALongLedger
// measures the answer.
func longLedgerWithUnsentWork(tb testing.TB) *env {
	e := setup(tb)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task."})
	w := e.replicasOf("t", "d", 4242)[0]
	const rounds = 2500 // two entries each
	for i := range rounds {
		u := insertAtEnd(tb, w, "y")
		e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: fmt.Sprintf("s%d", i%30), StateVector: w.EncodeStateVector()})
		e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: fmt.Sprintf("s%d", i%30), Update: u})
	}
	for i := range 12 {
		stu := e.replicasOf("t", "d", uint64(700+i))[0]
		insertAtEnd(tb, stu, " an unsent paragraph")
		e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu", RequestID: fmt.Sprintf("hello-%d", i), StateVector: stu.EncodeStateVector()})
	}
	return e
}

// TestEvidenceOfALongLedgerWithUnsentWork: on a long ledger, the tabs'
// unsent work still answers saved-locally-not-synced, for the whole
// document and for their user.
func TestEvidenceOfALongLedgerWithUnsentWork(t *testing.T) {
	if testing.Short() {
		t.Skip("a long ledger")
	}
	e := longLedgerWithUnsentWork(t)
	for _, q := range []EvidenceQuery{{}, {User: "stu"}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		if ev.Verdict != VerdictSavedLocallyNotSynced {
			t.Errorf("%q: %s (%s), want saved-locally-not-synced", ev.Subject, ev.Verdict, ev.Proof.Summary)
		}
	}
}

// BenchmarkEvidenceOfALongLedger: one evidence answer on the ledger of
// longLedgerWithUnsentWork (80 ms per answer when written; about 2 s
// before the deletion note looked for deletions first).
func BenchmarkEvidenceOfALongLedger(b *testing.B) {
	e := longLedgerWithUnsentWork(b)
	for _, q := range []EvidenceQuery{{}, {User: "stu"}} {
		q.Doc, q.Tenant = "d", "t"
		b.Run(fmt.Sprintf("subject=%q", q.User), func(b *testing.B) {
			for b.Loop() {
				if _, err := e.eng.Evidence(b.Context(), q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
