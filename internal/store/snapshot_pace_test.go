package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestLongEssaysAreNotRewrittenEvery64Keystrokes: a snapshot is a
// document's whole state, and the log was compacted into one every 64
// updates whatever the state's size, so a long essay typed a character at
// a time rewrote its whole state (here 120 KiB) every 64 characters: a
// document's lifetime writes grew with the square of its length.
// Compaction is now paced by the bytes logged since the last snapshot;
// a small document is still compacted every 64 updates, and both load
// back exactly from snapshot and log.
func TestLongEssaysAreNotRewrittenEvery64Keystrokes(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageLocalFirst, "t")
	long := strings.Repeat("It was a bright cold day in April, and the clocks were striking thirteen. ", 1650)
	texts := map[string]string{"essay": long, "note": "hi"}
	for doc, text := range texts {
		e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: "t", User: "u", Content: text})
	}
	snapshotBytes := func(doc string) (upto, size int) {
		t.Helper()
		if err := e.pool.QueryRow(ctx, `SELECT upto_seq, length(state) FROM yjs_snapshots WHERE doc_id = $1`, doc).Scan(&upto, &size); err != nil {
			t.Fatal(err)
		}
		return upto, size
	}
	if _, size := snapshotBytes("essay"); size < 100<<10 {
		t.Fatalf("the essay's snapshot is %d bytes; the test needs a long one", size)
	}
	const keystrokes = 300
	for doc := range texts {
		res := e.submit(Request{Kind: KindSync1, Doc: doc, Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
		c := yjs.NewDoc(yjs.Options{ClientID: 4242})
		if err := c.ApplyUpdate(res.Update); err != nil {
			t.Fatal(err)
		}
		var u []byte
		c.OnUpdate(func(b []byte) { u = b })
		x := c.GetText(contract.YjsTextName)
		for i := range keystrokes {
			ch := string(rune('a' + i%26))
			if err := x.Insert(x.Len(), ch, nil); err != nil {
				t.Fatal(err)
			}
			if r := e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: u}); r.Outcome != OutcomeSaved {
				t.Fatalf("keystroke %d on %s: %+v", i, doc, r)
			}
			texts[doc] += ch
		}
	}
	if upto, _ := snapshotBytes("essay"); upto > 1 {
		t.Errorf("the essay's state was rewritten after %d of %d keystrokes (%d bytes logged since its snapshot)", upto-1, keystrokes, keystrokes*30)
	}
	if upto, _ := snapshotBytes("note"); upto < keystrokes-64 {
		t.Errorf("the short note was last compacted at update %d of %d, want every 64", upto, keystrokes+1)
	}
	e.restart() // cold: snapshot plus the log after it
	for doc, want := range texts {
		d, err := e.eng.Read(ctx, "t", doc)
		if err != nil || d.Content != want {
			t.Errorf("%s after a restart: %d bytes, want %d (%v)", doc, len(d.Content), len(want), err)
		}
		// Verification materialises the Yjs side from snapshot and log.
		if res, err := e.eng.VerifyDocs(ctx, []string{doc}); err != nil || len(res) != 1 || res[0].Verdict != VerifyMatch {
			t.Errorf("%s's representations after a restart: %+v %v", doc, res, err)
		}
	}
}

// TestARecordedTraceStandsForItsUpdate: the gateway's spool keeps a
// refused update's trace instead of its text; the trace it hands in
// becomes the ledger entry's hash, clients and operations, and one that
// is malformed or too large is left out (the refusal is still recorded).
func TestARecordedTraceStandsForItsUpdate(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	c := yjs.NewDoc(yjs.Options{ClientID: 31})
	var u []byte
	c.OnUpdate(func(b []byte) { u = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, "offline words", nil); err != nil {
		t.Fatal(err)
	}
	tr := TraceUpdate(u)
	if len(tr.Clients) != 1 || tr.Clients[0] != 31 || tr.Ops["31"] != [2]uint64{0, 13} {
		t.Fatalf("trace of the update: %+v", tr)
	}
	many := &UpdateTrace{SHA256: tr.SHA256}
	for i := range MaxTraceClients + 1 {
		many.Clients = append(many.Clients, uint64(i+1))
	}
	for i, trace := range []*UpdateTrace{tr, {SHA256: "not-a-hash", Clients: []uint64{31}}, many} {
		e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "u", Code: "unconfirmed", Reason: "r", UpdateTrace: trace})
		rows, err := LedgerRows(t.Context(), e.pool, "d")
		if err != nil {
			t.Fatal(err)
		}
		body := string(rows[len(rows)-1].Body)
		kept := strings.Contains(body, tr.SHA256) && strings.Contains(body, `"clients":[31]`)
		if want := i == 0; kept != want || !strings.Contains(body, `"code":"unconfirmed"`) {
			t.Errorf("trace %d: recorded %s, want its hash and clients kept: %v", i, body, want)
		}
	}
	if ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Client: 31}); err != nil || ev.Verdict != VerdictSavedLocallyNotSynced {
		t.Errorf("evidence of client 31: %s %v", ev.Verdict, err)
	}
}
