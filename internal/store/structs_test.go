package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
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

// TestCacheIsBoundedByTheMemoryOfItsDocuments: a syncer keeps documents in
// memory bounded by their estimated bytes, not only by their number. A
// document's memory grows with its Yjs structs: with every other
// character deleted, 100,000 characters hold about 22 MiB. Bounded by
// count alone (1,024), a few such documents could exhaust a syncer; here
// a 24 MiB budget holds one of them, and every document still reads back
// whole, loaded again from the database.
func TestCacheIsBoundedByTheMemoryOfItsDocuments(t *testing.T) {
	const budget = 24 << 20
	e := setupOn(t, pgharness.ForTest(t), func(c *Config) { c.CacheBytes = budget })
	e.eng.cache.keepRecent = 0 // documents used a moment ago are not kept (TestLargeDocumentStaysWhileInUse)
	e.cohort("c", dataplane.StageLegacyRetired, "t")
	const pairs, docs = 50_000, 4
	for i := range docs {
		doc := fmt.Sprint("split", i)
		client := uint64(4242 + i)
		e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: "t", User: "u", Content: ""})
		c := yjs.NewDoc(yjs.Options{ClientID: client})
		var paste []byte
		c.OnUpdate(func(b []byte) { paste = b })
		if err := c.GetText(contract.YjsTextName).Insert(0, strings.Repeat("ab", pairs), nil); err != nil {
			t.Fatal(err)
		}
		e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: paste})
		if r := e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: deletions(client, 0, pairs)}); r.Outcome != OutcomeSaved {
			t.Fatalf("%s: deleting every other character: %s", doc, r.Outcome)
		}
		if b := e.eng.CachedBytes(); b > budget {
			t.Errorf("after %s the cache holds an estimated %d MiB, over its %d MiB", doc, b>>20, budget>>20)
		}
	}
	if n := e.eng.CachedDocuments(); n != 1 {
		t.Errorf("%d split documents in memory, want 1 under a %d MiB budget (%d MiB estimated)", n, budget>>20, e.eng.CachedBytes()>>20)
	}
	for i := range docs {
		d, err := e.eng.Read(t.Context(), "t", fmt.Sprint("split", i))
		if err != nil {
			t.Fatal(err)
		}
		if d.Content != strings.Repeat("b", pairs) {
			t.Errorf("split%d reads back %d bytes starting %.10q", i, len(d.Content), d.Content)
		}
	}
	// Small documents share the budget: many fit beside a split one.
	for i := range 50 {
		e.submit(Request{Kind: KindCreate, Doc: fmt.Sprint("small", i), Tenant: "t", User: "u", Content: "a short note"})
	}
	if n := e.eng.CachedDocuments(); n < 50 {
		t.Errorf("%d documents in memory after 50 small ones were created, want all of them", n)
	}
	if b := e.eng.CachedBytes(); b > budget {
		t.Errorf("the cache holds an estimated %d MiB, over its %d MiB", b>>20, budget>>20)
	}
}

// splitDocument creates doc and gives it 2*pairs Yjs structs (every other
// character of a paste deleted): about 22 MiB for 50,000 pairs.
func (e *env) splitDocument(doc string, client uint64, pairs int) {
	e.t.Helper()
	e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: "t", User: "u", Content: ""})
	c := yjs.NewDoc(yjs.Options{ClientID: client})
	var paste []byte
	c.OnUpdate(func(b []byte) { paste = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, strings.Repeat("ab", pairs), nil); err != nil {
		e.t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: paste})
	if r := e.submit(Request{Kind: KindYjs, Doc: doc, Tenant: "t", User: "u", Update: deletions(client, 0, pairs)}); r.Outcome != OutcomeSaved {
		e.t.Fatalf("%s: deleting every other character: %s", doc, r.Outcome)
	}
}

// TestLargeDocumentStaysWhileInUse: a document larger than the cache's
// byte budget stays in memory while it is in use; evicted by every read
// of a small document, it was decoded again for each of its saves (about
// 145 ms at 100,000 structs, 1.2 s at the struct budget, holding its
// lane). Once unused for keepRecent it goes, and past twice the budget
// even a document in use goes.
func TestLargeDocumentStaysWhileInUse(t *testing.T) {
	const budget = 16 << 20
	e := setupOn(t, pgharness.ForTest(t), func(c *Config) { c.CacheBytes = budget })
	e.eng.cache.keepRecent = time.Hour
	e.cohort("c", dataplane.StageLegacyRetired, "t")
	e.splitDocument("big", 4242, 50_000)
	rev := e.submit(Request{Kind: KindCreate, Doc: "note", Tenant: "t", User: "u", Content: "a short note"}).Revision
	for i := range 5 {
		if _, err := e.eng.Read(t.Context(), "t", "note"); err != nil {
			t.Fatal(err)
		}
		rev = e.submit(Request{Kind: KindSave, Doc: "note", Tenant: "t", User: "u", BaseRevision: rev, Content: fmt.Sprint("a short note, edited ", i)}).Revision
		if e.eng.cache.get("big") == nil {
			t.Fatal("the large document in use was evicted by a small one")
		}
	}
	// Unused for keepRecent, it goes at the next use of another document.
	e.eng.cache.keepRecent = 0
	if _, err := e.eng.Read(t.Context(), "t", "note"); err != nil {
		t.Fatal(err)
	}
	e.eng.cache.evict("note")
	if _, err := e.eng.Read(t.Context(), "t", "note"); err != nil {
		t.Fatal(err)
	}
	if e.eng.cache.get("big") != nil {
		t.Errorf("the large document stays in memory unused (%d MiB estimated, budget %d MiB)", e.eng.CachedBytes()>>20, budget>>20)
	}
	// Past twice the budget even documents in use go.
	e.eng.cache.keepRecent = time.Hour
	e.splitDocument("big2", 4343, 50_000)
	e.splitDocument("big3", 4444, 50_000)
	if b := e.eng.CachedBytes(); b > 2*budget && e.eng.CachedDocuments() > 1 {
		t.Errorf("%d documents of %d MiB in memory, over twice the %d MiB budget", e.eng.CachedDocuments(), b>>20, budget>>20)
	}
}
