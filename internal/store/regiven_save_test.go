package store

import (
	"bytes"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// regive makes the legacy application (outside the gateway) give the ID
// d to school t2: with a DELETE and an INSERT, or with an UPDATE of the
// row's tenant in place.
func (e *env) regive(inPlace bool) {
	e.t.Helper()
	stmts := []string{`DELETE FROM documents WHERE doc_id = 'd'`,
		`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		 VALUES ('d', 't2', 'bob', 'Bob''s notes', 'Bob''s text.', 1, 0, now(), now())`}
	if inPlace {
		stmts = []string{`UPDATE documents SET tenant = 't2', owner = 'bob', title = 'Bob''s notes', content = 'Bob''s text.' WHERE doc_id = 'd'`}
	}
	for _, s := range stmts {
		if _, err := e.pool.Exec(e.t.Context(), s); err != nil {
			e.t.Fatal(err)
		}
	}
}

// bothWaysOfGiving runs f once for each way the legacy application gives
// an ID to another school (regive).
func bothWaysOfGiving(t *testing.T, f func(t *testing.T, inPlace bool)) {
	for _, inPlace := range []bool{false, true} {
		t.Run(map[bool]string{false: "deleted and inserted", true: "tenant updated in place"}[inPlace], func(t *testing.T) { f(t, inPlace) })
	}
}

// aliceEssay puts schools t and t2 at LocalFirst and has alice of t
// create d.
func (e *env) aliceEssay() {
	e.t.Helper()
	e.cohort("c", dataplane.StageLocalFirst, "t", "t2")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
}

// noTextUpdate is an update from a replica of tenant's d that changes no
// text: a character inserted and deleted again, in one update. It writes
// to the Yjs log and the ledger, not to the legacy row.
func (e *env) noTextUpdate(tenant string) []byte {
	e.t.Helper()
	c := e.replicasOf(tenant, "d", 77)[0]
	var ups [][]byte
	c.OnUpdate(func(u []byte) { ups = append(ups, u) })
	tx := c.GetText(contract.YjsTextName)
	if err := tx.Insert(0, "z", nil); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Delete(0, 1); err != nil {
		e.t.Fatal(err)
	}
	u, err := yjs.MergeUpdates(ups...)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// opensAs: tenant's editor opens d (sync step 1 from an empty state
// vector) and gets want as its text; it returns the update it was sent.
func (e *env) opensAs(tenant, want string) []byte {
	e.t.Helper()
	res, err := e.eng.Submit(e.t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: tenant, User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	if err != nil {
		e.t.Fatalf("school %s's sync step 1 of its document: %v", tenant, err)
	}
	c := yjs.NewDoc(yjs.Options{ClientID: 5})
	if err := c.ApplyUpdate(res.Update); err != nil {
		e.t.Fatal(err)
	}
	if got := c.GetText(contract.YjsTextName).String(); got != want {
		e.t.Errorf("school %s's editor opens %q, want %q", tenant, got, want)
	}
	return res.Update
}

// TestASaveOfAnIDTheLegacyApplicationGaveToAnotherSchoolIsThatSchools:
// school t's document d is in the syncer's memory; the legacy application
// gives the ID to school t2. The syncer's copy said d was t's, and only
// a group writing d's row checked the copy against the row: t2's saves
// were refused not_found, and its editor's sync step 1 too, for as long
// as the copy stayed in memory (a busy shard: for ever). Every group now
// checks the rows of the documents it only reads, and reloads.
func TestASaveOfAnIDTheLegacyApplicationGaveToAnotherSchoolIsThatSchools(t *testing.T) {
	bothWaysOfGiving(t, func(t *testing.T, inPlace bool) {
		e := setup(t)
		e.aliceEssay()
		e.regive(inPlace)

		// t2's editor opens the document: sync step 1 answers with
		// Bob's text, not a refusal.
		sent := e.opensAs("t2", "Bob's text.")
		// Not even as deleted text: t2's document starts a Yjs
		// history of its own, as a replaced row does.
		if bytes.Contains(sent, []byte("Alice")) {
			t.Errorf("school t2's editor is sent school t's text: %q", sent)
		}
		// A legacy save of t2's, without a read before it.
		r, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited."})
		if err != nil {
			t.Fatalf("school t2's save: %v", err)
		}
		d, err := e.eng.Read(t.Context(), "t2", "d")
		if err != nil || d.Content != "Bob's text, edited." || d.Revision != r.Revision {
			t.Errorf("school t2 reads %q revision %d, %v; want its save, revision %d", d.Content, d.Revision, err, r.Revision)
		}
		if _, err := e.eng.Read(t.Context(), "t", "d"); !isNotFound(err) {
			t.Errorf("school t still reads the document: %v", err)
		}
	})
}

// TestASaveOfAnIDTheLegacyApplicationGaveToAnotherSchoolIsRefusedToTheFirst:
// as above, and school t's editor, still open, sends an update that
// changes no text and asks for what it lacks. The update went into the
// Yjs log of what is now t2's document (written under t's name, in t2's
// history), and the sync step 1 answered with t's old text. Both are
// refused not_found, on record, and t2's document is untouched.
func TestASaveOfAnIDTheLegacyApplicationGaveToAnotherSchoolIsRefusedToTheFirst(t *testing.T) {
	bothWaysOfGiving(t, func(t *testing.T, inPlace bool) {
		e := setup(t)
		e.aliceEssay()
		u := e.noTextUpdate("t")
		logged := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = 'd'`)
		e.regive(inPlace)

		if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", Update: u}); !isNotFound(err) {
			t.Errorf("school t's update to the document now t2's: %v, want not_found", err)
		}
		if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "alice", StateVector: yjs.EncodeStateVector(yjs.StateVector{})}); !isNotFound(err) {
			t.Errorf("school t's sync step 1 of the document now t2's: %v, want not_found", err)
		}
		// Nothing of t's went into the log (a repair may have written
		// the server's own edit, taking Bob's text in).
		if n := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = 'd' AND origin = 'client:alice' AND seq > $1`, logged); n != 0 {
			t.Errorf("school t's update was logged in t2's document (%d rows)", n)
		}
		d, err := e.eng.Read(t.Context(), "t2", "d")
		if err != nil || d.Content != "Bob's text." {
			t.Errorf("school t2 reads %q, %v; want %q", d.Content, err, "Bob's text.")
		}
		refused := 0
		for _, en := range e.entries("d") {
			if en.Kind == "rejected" && en.Tenant == "t" && en.Code == CodeNotFound {
				refused++
			}
		}
		if refused != 2 {
			t.Errorf("%d refusals of school t on record, want 2", refused)
		}
	})
}

// TestADocumentTheLegacyApplicationCreatesAfterARefusalIsFound: a save
// to an ID nobody holds is refused, and the syncer keeps that it does not
// exist; the legacy application then creates the document. Before every
// group checked the rows it only read, the school's saves and its
// editor's sync step 1 were refused not_found while the copy stayed in
// memory.
func TestADocumentTheLegacyApplicationCreatesAfterARefusalIsFound(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t2")
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "too early", BaseRevision: 1}); !isNotFound(err) {
		t.Fatalf("save of an ID nobody holds: %v, want not_found", err)
	}
	if _, err := e.pool.Exec(t.Context(), `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't2', 'bob', 'Bob''s notes', 'Bob''s text.', 1, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	e.opensAs("t2", "Bob's text.")
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited.", BaseRevision: 1}); err != nil {
		t.Fatalf("save of the document the legacy application created: %v", err)
	}
	if d, err := e.eng.Read(t.Context(), "t2", "d"); err != nil || d.Content != "Bob's text, edited." {
		t.Errorf("school t2 reads %q, %v", d.Content, err)
	}
}
