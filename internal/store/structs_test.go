package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// deletions is a v1 update holding no structs and a delete set of client's
// clocks [from+2k, from+2k+1) for k < n: every other character.
func deletions(client, from uint64, n int) []byte {
	u := yprotocol.AppendVarUint(nil, 0) // no structs
	u = yprotocol.AppendVarUint(u, 1)    // one client in the delete set
	u = yprotocol.AppendVarUint(u, client)
	u = yprotocol.AppendVarUint(u, uint64(n))
	for k := range n {
		u = yprotocol.AppendVarUint(u, from+2*uint64(k))
		u = yprotocol.AppendVarUint(u, 1)
	}
	return u
}

// TestUpdateThatCouldSplitADocumentPastItsBudgetIsRefused: deleting every
// other character of a long paste splits it into a struct per character,
// and a syncer's memory grows with structs (150-250 bytes each), not text:
// 2 MiB pasted, then 4 MiB of such deletions, made a syncer hold hundreds
// of MiB for one document. An update that could take a document past
// contract.MaxDocStructs is refused (413 too_large), with nothing applied;
// a smaller one is taken. Found by the security review.
func TestUpdateThatCouldSplitADocumentPastItsBudgetIsRefused(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLegacyRetired, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: ""})
	const chars = contract.MaxDocStructs + 200_000
	c := yjs.NewDoc(yjs.Options{ClientID: 4242})
	var paste []byte
	c.OnUpdate(func(b []byte) { paste = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, strings.Repeat("ab", chars/2), nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: paste})
	_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: deletions(4242, 0, chars/2)})
	if err == nil || AsError(err).Code != CodeTooLarge {
		t.Fatalf("deleting every other character of %d: %v, want %s", chars, err, CodeTooLarge)
	}
	if n := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = 'd' AND length(update) > 1000000`); n != 1 {
		t.Errorf("%d large updates in the log, want the paste alone", n)
	}
	// A hundred deletions are taken.
	r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: deletions(4242, 0, 100)})
	if r.Outcome != OutcomeSaved {
		t.Fatalf("a hundred deletions: %s", r.Outcome)
	}
	d, err := e.eng.Read(t.Context(), "t", "d")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("b", 100) + strings.Repeat("ab", chars/2-100); d.Content != want {
		t.Errorf("after a hundred deletions the text starts %.20q and is %d bytes, want %d", d.Content, len(d.Content), len(want))
	}
}
