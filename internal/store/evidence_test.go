package store

import (
	"slices"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceIgnoresOtherTenantsAttempts: another tenant announcing a
// state vector for an ID before its owner creates the document (IDs are
// easy to guess) neither shows in the owner's timeline nor makes the
// owner's committed document look unsynced; its refused attempt on the
// document shows, and is no verdict on the owner's saves.
func TestEvidenceIgnoresOtherTenantsAttempts(t *testing.T) {
	e := setup(t)
	sv := yjs.EncodeStateVector(yjs.StateVector{4242: 10})
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "essay-1", Tenant: "school-b", User: "mallory", StateVector: sv}); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindCreate, Doc: "essay-1", Tenant: "school-a", User: "alice", Content: "my essay", IdempotencyKey: "c"})
	// And a refused attempt after it exists.
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "essay-1", Tenant: "school-b", User: "mallory", Content: "x"}); err == nil {
		t.Fatal("another tenant's save was accepted")
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "essay-1", Tenant: "school-a"})
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, en := range ev.Timeline {
		switch {
		case en.Tenant == "school-a":
		case en.Kind == ledger.KindRejected:
			refusals++ // who tried to reach the document
		default:
			t.Errorf("school-a's evidence shows an entry of tenant %q (user %q, kind %s)", en.Tenant, en.User, en.Kind)
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusals of another tenant shown, want 1", refusals)
	}
	if ev.Verdict != VerdictSynced {
		t.Errorf("school-a's committed document has verdict %s: %s", ev.Verdict, ev.Proof.Summary)
	}
}

// TestEvidencePendingOperationsReachedTheServer: client A's update
// depends on client B's operation, which A got peer to peer (two tabs) and
// the server has not. The server commits A's update durably and holds it
// pending; when A reconnects and announces its state vector, the evidence
// does not say A's operations never arrived (B's are the ones lacking).
func TestEvidencePendingOperationsReachedTheServer(t *testing.T) {
	e := setup(t)
	reps := e.replicas(200, 100)
	b, a := reps[0], reps[1]
	var bUp, aUp []byte
	b.OnUpdate(func(u []byte) { bUp = u })
	a.OnUpdate(func(u []byte) { aUp = u })
	bt := b.GetText(contract.YjsTextName)
	if err := bt.Insert(bt.Len(), "B", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.ApplyUpdate(bUp); err != nil {
		t.Fatal(err)
	}
	at := a.GetText(contract.YjsTextName)
	if err := at.Insert(at.Len(), "A", nil); err != nil {
		t.Fatal(err)
	}
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "a", Update: aUp}); r.Outcome != OutcomePending {
		t.Fatalf("A's update: %s", r.Outcome)
	}
	r := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "a", StateVector: a.EncodeStateVector()})
	if _, ok := r.Missing["100"]; ok {
		t.Errorf("A's held operations reported missing: %v", r.Missing)
	}
	if _, ok := r.Missing["200"]; !ok {
		t.Errorf("B's operation, which the server lacks, not reported: %v", r.Missing)
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 100})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSynced {
		t.Errorf("client 100's committed update is reported as %s: %s", ev.Verdict, ev.Proof.Summary)
	}
	// Saved, yet not in the text: the answer says so first, and why.
	if !slices.Equal(ev.Proof.Pending["100"], [][2]uint64{{0, 1}}) || ev.Proof.WaitingFor["200"] != 0 || len(ev.Proof.WaitingFor) != 1 ||
		!strings.Contains(ev.Proof.Summary, "not in the text yet") {
		t.Errorf("client 100's held operations: %+v", ev.Proof)
	}
	// For the whole document and for user a, the operation B never
	// synced heads the answer; A's held ones are among the findings.
	held := func(q EvidenceQuery) bool {
		ev, err := e.eng.Evidence(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(ev.Findings, func(f Finding) bool { return slices.Equal(f.Pending["100"], [][2]uint64{{0, 1}}) })
	}
	if !held(EvidenceQuery{Doc: "d", Tenant: "t"}) || !held(EvidenceQuery{Doc: "d", Tenant: "t", User: "a"}) {
		t.Errorf("the evidence of the document or of user a leaves out the held operations")
	}
	if held(EvidenceQuery{Doc: "d", Tenant: "t", User: "u"}) {
		t.Errorf("user u has no held operations")
	}
	ev, err = e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 200})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSavedLocallyNotSynced {
		t.Errorf("client 200's operation never reached the server, verdict %s: %s", ev.Verdict, ev.Proof.Summary)
	}
	// B's operation arrives: nothing is lacking any more.
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "b", Update: bUp})
	if ev, err = e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 200}); err != nil || ev.Verdict != VerdictSynced {
		t.Errorf("after B's update: %s, %v", ev.Verdict, err)
	}
	if ev, err = e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 100}); err != nil || ev.Verdict != VerdictSynced || ev.Proof.Pending != nil {
		t.Errorf("client 100 after B's update: %s %+v, %v", ev.Verdict, ev.Proof, err)
	}
	if d, err := e.eng.Read(t.Context(), "t", "d"); err != nil || d.Content != "xBA" {
		t.Errorf("document %+v, %v", d, err)
	}
}

// TestEvidenceKeepsTheHighestAnnouncedClock: a student's client 777 edits offline (clocks 0-19). Her other tab
// (client 888's page, synced peer to peer) only got her first ten
// operations; it connects first and announces them, then her own client
// announces all twenty and is cut before sending. The server receives the
// first ten through the other tab. Clocks 10-19 are still only on her
// machine: the evidence for client 777 must say saved-locally-not-synced (it said synced: only the latest
// announcement counted). Found by review.
func TestEvidenceKeepsTheHighestAnnouncedClock(t *testing.T) {
	e := setup(t)
	reps := e.replicas(777, 888)
	a, peer := reps[0], reps[1]
	var ups [][]byte
	a.OnUpdate(func(u []byte) { ups = append(ups, u) })
	at := a.GetText(contract.YjsTextName)
	if err := at.Insert(at.Len(), "0123456789", nil); err != nil {
		t.Fatal(err)
	}
	if err := at.Insert(at.Len(), "abcdefghij", nil); err != nil {
		t.Fatal(err)
	}
	// The other tab holds only the first ten.
	if err := peer.ApplyUpdate(ups[0]); err != nil {
		t.Fatal(err)
	}
	// Her own client announces all twenty (sync step 1), then is cut.
	r := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-1", StateVector: a.EncodeStateVector()})
	if r.Missing["777"] != [2]uint64{0, 20} {
		t.Fatalf("missing after her announcement: %v", r.Missing)
	}
	// The other tab connects later, announces, and sends what it has.
	r = e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-2", StateVector: peer.EncodeStateVector()})
	if r.Missing["777"] != [2]uint64{0, 10} {
		t.Fatalf("missing after the tab's announcement: %v", r.Missing)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-2", Update: ups[0]})
	if d, err := e.eng.Read(t.Context(), "t", "d"); err != nil || d.Content != "x0123456789" {
		t.Fatalf("document %+v %v", d, err)
	}
	for _, q := range []EvidenceQuery{{Doc: "d", Tenant: "t", Client: 777}, {Doc: "d", Tenant: "t"}, {Doc: "d", Tenant: "t", User: "stu"}} {
		ev, err := e.eng.Evidence(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Verdict != VerdictSavedLocallyNotSynced || ev.Proof.Missing["777"] != [2]uint64{10, 20} {
			t.Errorf("%q: verdict %s, proof %+v; client 777 announced clocks up to 20 and the server holds 10", ev.Subject, ev.Verdict, ev.Proof)
		}
	}
}

// TestRefusedUpdateShowsForItsClient: a Yjs update refused at the gateway
// (over the sync rate, say) is recorded with the clients whose operations
// it carried and their clocks, so evidence asked about such a client
// shows the refusal, with its entry and the update's hash (a refusal
// named no client, and ?client= never showed it). While the server lacks
// those operations the headline is saved-locally-not-synced (they exist
// only where the client kept them; it said rejected, or synced for a
// client with earlier operations committed), the refusal among the
// findings; once the client sends them again, synced.
func TestRefusedUpdateShowsForItsClient(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	u := e.clientEdit("t", "d", 4242, " more")
	res := e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-ab12cd34-7",
		Code: "websocket_1013", Reason: "update rate over 100/s for this user", Update: u})
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 4242})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSavedLocallyNotSynced || !slices.Contains(ev.Proof.Entries, res.LedgerSeq) ||
		!strings.Contains(ev.Proof.Summary, "websocket_1013") || ev.Proof.Missing["4242"] != [2]uint64{0, 5} {
		t.Fatalf("evidence for client 4242: verdict %s, proof %+v; want saved-locally-not-synced naming entry %d and the refusal", ev.Verdict, ev.Proof, res.LedgerSeq)
	}
	if !slices.ContainsFunc(ev.Findings, func(f Finding) bool {
		return f.Verdict == VerdictRejected && slices.Contains(f.Entries, res.LedgerSeq)
	}) {
		t.Errorf("the refusal is not among the findings: %+v", ev.Findings)
	}
	last := e.entries("d")[res.LedgerSeq-1]
	if !slices.Equal(last.Clients, []uint64{4242}) || last.UpdateSHA256 != ledger.SHA256Hex(u) {
		t.Errorf("the refusal's entry: clients %v, update sha256 %q", last.Clients, last.UpdateSHA256)
	}
	// The client sends it again, and it is taken.
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-ab12cd34-8", Update: u})
	if ev, err = e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 4242}); err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSynced {
		t.Errorf("evidence for client 4242 once its update was taken: %s %+v", ev.Verdict, ev.Proof)
	}
}

// TestUnconfirmedUpdateAfterACommitIsNotSynced: a client's first
// paragraph is committed; its next update reaches the gateway while the
// syncer is down, is answered as failed and recorded unconfirmed (with
// the update), and the client never comes back. Evidence about the client
// or its user says saved-locally-not-synced: the server does not hold the
// rest of the essay (it said synced, from the first commit).
func TestUnconfirmedUpdateAfterACommitIsNotSynced(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "Title\n"})
	first := e.clientEdit("t", "d", 4242, "First paragraph. ")
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-x-1", Update: first})
	// Its next edit builds on the first (synced from the server, which
	// holds it).
	rest := e.clientEdit("t", "d", 4242, "The rest of the essay.")
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-0-x-1",
		Code: "unconfirmed", Reason: "the syncer did not answer", Update: rest})
	for _, q := range []EvidenceQuery{{Doc: "d", Tenant: "t", Client: 4242}, {Doc: "d", Tenant: "t", User: "stu"}, {Doc: "d", Tenant: "t"}} {
		ev, err := e.eng.Evidence(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Verdict != VerdictSavedLocallyNotSynced || !strings.Contains(ev.Proof.Summary, "unconfirmed") {
			t.Errorf("%q: verdict %s, proof %+v", ev.Subject, ev.Verdict, ev.Proof)
		}
	}
}
