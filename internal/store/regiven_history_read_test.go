package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestHistoryOfAnIDTheLegacyApplicationGaveToAnotherSchoolStaysItsOwn:
// school t's essay has revisions and preserved text; the legacy
// application (outside the gateway) deletes its row and creates a row
// with the same ID for school t2. A revision or preserved text read
// checked the tenant against the document's row only, so a t2 token
// read school t's essay, title and all, at /revisions/1. What was
// written under t stays t's to read (evidence points t there); t2 reads
// only what its own document wrote.
//
// The same when the legacy application changes the row's tenant in place.
func TestHistoryOfAnIDTheLegacyApplicationGaveToAnotherSchoolStaysItsOwn(t *testing.T) {
	bothWaysOfGiving(t, func(t *testing.T, inPlace bool) {
		testHistoryOfAnIDGivenToAnotherSchool(t, inPlace)
	})
}

func testHistoryOfAnIDGivenToAnotherSchool(t *testing.T, inPlace bool) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Title: ptr("Alice's essay"), Content: "Alice's first draft."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "peer", BaseRevision: 1, Content: "Alice's second draft."})
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", BaseRevision: 1, Content: "Alice's private notes."}); r.Outcome != OutcomeConflictPreserved {
		t.Fatalf("alice's conflicting save: %+v", r)
	}
	e.regive(inPlace)
	refusedToT2 := func(when string) {
		t.Helper()
		for rev := int64(1); rev <= 2; rev++ {
			if r, err := e.eng.ReadRevision(ctx, "t2", "d", rev); !isNotFound(err) {
				t.Errorf("%s: school t2 reads school t's revision %d: %q %q, %v; want not_found", when, rev, r.Title, r.Content, err)
			}
		}
		if p, err := e.eng.ReadPreserved(ctx, "t2", "d", 1); !isNotFound(err) {
			t.Errorf("%s: school t2 reads school t's preserved text 1: %q, %v; want not_found", when, p.Content, err)
		}
		// School t still reads its own history.
		if r, err := e.eng.ReadRevision(ctx, "t", "d", 2); err != nil || r.Content != "Alice's second draft." {
			t.Errorf("%s: school t reads its revision 2: %q, %v", when, r.Content, err)
		}
		if p, err := e.eng.ReadPreserved(ctx, "t", "d", 1); err != nil || p.Content != "Alice's private notes." {
			t.Errorf("%s: school t reads its preserved text 1: %q, %v", when, p.Content, err)
		}
	}
	refusedToT2("before any request touched the new row")

	// Once school t2 saves through the gateway, the row's text is taken
	// into the history (repair) and its save follows: those are t2's.
	// (Its editor loads the document first: a read drops the copy of
	// school t's row the syncer held.)
	if d, err := e.eng.Read(ctx, "t2", "d"); err != nil || d.Content != "Bob's text." {
		t.Fatalf("school t2 reads its document: %q, %v", d.Content, err)
	}
	res := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited."})
	refusedToT2("after school t2's save")
	if r, err := e.eng.ReadRevision(ctx, "t2", "d", res.Revision); err != nil || r.Content != "Bob's text, edited." {
		t.Errorf("school t2 reads its own revision %d: %q, %v", res.Revision, r.Content, err)
	}
	if _, err := e.eng.ReadRevision(ctx, "t", "d", res.Revision); !isNotFound(err) {
		t.Errorf("school t reads school t2's revision %d: %v", res.Revision, err)
	}
}

// isNotFound: err is the not_found answer a school gets for what is not
// its own.
func isNotFound(err error) bool {
	return err != nil && AsError(err).Code == CodeNotFound
}
