package store

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// pendingSetup: client 100's first update (request "r1") is integrated and
// makes revision 2; later client 100 sends an update building on client
// 200's operation the server never received (held pending).
func pendingSetup(t *testing.T) *env {
	e := setup(t)
	reps := e.replicas(100, 200)
	a, b := reps[0], reps[1]
	var aUp, bUp []byte
	a.OnUpdate(func(u []byte) { aUp = u })
	b.OnUpdate(func(u []byte) { bUp = u })
	at := a.GetText(contract.YjsTextName)
	if err := at.Insert(at.Len(), "a", nil); err != nil {
		t.Fatal(err)
	}
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "a", RequestID: "r1", Update: aUp}); r.Outcome != OutcomeSaved || r.Revision != 2 {
		t.Fatalf("A's first update: %+v", r)
	}
	if err := b.ApplyUpdate(aUp); err != nil {
		t.Fatal(err)
	}
	bt := b.GetText(contract.YjsTextName)
	if err := bt.Insert(bt.Len(), "B", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.ApplyUpdate(bUp); err != nil {
		t.Fatal(err)
	}
	if err := at.Insert(at.Len(), "A", nil); err != nil {
		t.Fatal(err)
	}
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "a", RequestID: "r2", Update: aUp}); r.Outcome != OutcomePending {
		t.Fatalf("A's second update: %+v", r)
	}
	return e
}

// Asking about request r1 (integrated, in the text as revision 2) must
// not answer with the later update's held operations.
func TestPendingFindingLeavesIntegratedRequestsAlone(t *testing.T) {
	e := pendingSetup(t)
	for _, q := range []EvidenceQuery{{Doc: "d", Tenant: "t", Request: "r1"}, {Doc: "d", Tenant: "t", Revision: 2}} {
		ev, err := e.eng.Evidence(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Proof.Pending != nil || ev.Proof.Hash == "" {
			t.Errorf("%s: proof is %+v; r1's operations are in the text (revision 2), its proof should be its commit", ev.Subject, ev.Proof)
		}
	}
}

// docs/api.md: "With since, only entries from that time on count, so a
// time after the last entry gives never-persisted even for an existing
// document."
func TestPendingFindingHonoursSince(t *testing.T) {
	e := pendingSetup(t)
	later := time.Now().Add(time.Hour)
	for _, q := range []EvidenceQuery{{Doc: "d", Tenant: "t", Since: later}, {Doc: "d", Tenant: "t", User: "u", Since: later}} {
		ev, err := e.eng.Evidence(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Verdict != VerdictNeverPersisted {
			t.Errorf("subject %q since an hour from now: verdict %s (timeline %d entries): %s", ev.Subject, ev.Verdict, len(ev.Timeline), ev.Proof.Summary)
		}
	}
}

// Client 100's updates U1..U4 (three clocks each); the server receives U2
// and U4 only. It holds clocks 3-5 and 9-11 pending and lacks 0-2 and 6-8;
// the pending finding must not claim it holds 6-8.
func TestPendingRangesKeepTheirGaps(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	a := e.replicasOf("t", "d", 100)[0]
	var ups [][]byte
	a.OnUpdate(func(u []byte) { ups = append(ups, u) })
	at := a.GetText(contract.YjsTextName)
	for _, s := range []string{"abc", "def", "ghi", "jkl"} {
		if err := at.Insert(at.Len(), s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(ups) != 4 {
		t.Fatalf("%d updates", len(ups))
	}
	for _, i := range []int{1, 3} {
		if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "a", Update: ups[i]}); r.Outcome != OutcomePending {
			t.Fatalf("U%d: %s", i+1, r.Outcome)
		}
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 100})
	if err != nil {
		t.Fatal(err)
	}
	if p := ev.Proof.Pending["100"]; !slices.Equal(p, [][2]uint64{{3, 6}, {9, 12}}) || !strings.Contains(ev.Proof.Summary, "clocks 3-5, client 100's at clocks 9-11") {
		t.Errorf("client 100's held operations: %v %q; want clocks 3-5 and 9-11 (it never received 6-8)", p, ev.Proof.Summary)
	}
}

// TestRevisionProofIsTheCommitThatMadeIt: revision 2 is made by request
// r1; a later update (r2) held pending changes no text, yet its ledger
// entry carries revision 2. The proof of "revision 2" must be r1's commit,
// and r2 is no part of its timeline (it was the proof before). Found by
// review.
func TestRevisionProofIsTheCommitThatMadeIt(t *testing.T) {
	e := pendingSetup(t)
	var r1 int64
	for _, en := range e.entries("d") {
		if en.RequestID == "r1" {
			r1 = en.Seq
		}
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Revision: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ev.Proof.Entries, []int64{r1}) {
		t.Errorf("revision 2's proof names ledger entries %v (%s); it was made by r1, entry %d", ev.Proof.Entries, ev.Proof.Summary, r1)
	}
	for _, tl := range ev.Timeline {
		if tl.RequestID == "r2" {
			t.Errorf("revision 2's timeline shows r2 (entry %d, outcome %s), an update that is not in revision 2", tl.Seq, tl.Outcome)
		}
	}
}
