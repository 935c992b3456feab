package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
)

// TestAnEmptyTabReconnectingAfterADeletionDoesNotBringTheDocumentBack:
// a teacher creates an assignment with no text yet and a student has it
// open in a browser tab (a stock y-websocket client; she typed nothing,
// so her copy is empty). Her connection drops, the legacy application
// deletes the document, and her tab reconnects; another student opens
// the deleted ID in a fresh tab. Neither typed anything, and neither may
// bring the document back: before, the empty sync step 2 each tab answers
// the server's sync step 1 with made the ID a document again (empty, a
// student's), the deleted assignment read 200 and the school's create of
// the ID got 409 already_exists. The school takes the ID again, and the
// open tabs show its text.
func TestAnEmptyTabReconnectingAfterADeletionDoesNotBringTheDocumentBack(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("assignment-gone", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "")
	tab := startFlipClient(t, f.wsBase(0), doc, token(t, "school-a", "stu", time.Hour, false))
	if a := tab.do(map[string]any{"op": "connect"}); !a.OK || a.Text != "" {
		t.Fatalf("the student's tab did not sync: %+v", a)
	}
	tab.do(map[string]any{"op": "disconnect"})
	deleteOutside(t, f.fixture, teacher, doc)

	if a := tab.do(map[string]any{"op": "connect"}); !a.OK {
		t.Fatalf("the student's tab did not reconnect: %+v", a)
	}
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Errorf("after the empty tab reconnected, the deleted assignment reads %d %s, want 404", r.status, r.raw)
	}
	fresh := startFlipClient(t, f.wsBase(1), doc, token(t, "school-a", "ana", time.Hour, false))
	if a := fresh.do(map[string]any{"op": "connect"}); !a.OK {
		t.Fatalf("the fresh tab did not sync: %+v", a)
	}
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Errorf("after a fresh tab opened the ID, the deleted assignment reads %d %s, want 404", r.status, r.raw)
	}

	if r := f.do(http.MethodPost, contract.PathDocuments, teacher, map[string]any{"id": doc, "content": "Write about autumn."}); r.status != http.StatusCreated {
		t.Fatalf("the school's create of the deleted assignment's ID: %d %s, want 201", r.status, r.raw)
	}
	for name, c := range map[string]*flipClient{"reconnected": tab, "fresh": fresh} {
		if a := c.do(map[string]any{"op": "waitText", "want": "Write about autumn.", "timeoutMs": 10000}); !a.OK {
			t.Errorf("the %s tab shows %q, want the new assignment's text", name, a.Text)
		}
	}
	f.checkBothRepresentations(teacher, doc, "Write about autumn.")
}

// TestOpeningANewIDWithoutTypingLeavesItFreeForAnotherSchool: document
// IDs are one name space across schools. A student of school-b has
// "essay" open; a student of school-a opens the same ID in a tab and types
// nothing; then school-b's student writes her essay, and a student of
// school-b who opens the ID later reads it. Before, a tab made the ID its
// school's document just by opening it (its empty sync step 2): school-b's
// tab, typed into by nobody yet, took the ID and school-a's tab was
// refused with 4403. With that step 2 no longer committed but the hub
// unchanged, the hub claimed the free ID for school-a when its tab
// answered, closing school-b's open tab (4403: y-websocket stops
// reconnecting), and school-b's essay was saved nowhere. Now the ID is
// school-b's once she types, and school-a's tab sees nothing of it.
func TestOpeningANewIDWithoutTypingLeavesItFreeForAnotherSchool(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay", 0)
	tokA := token(t, "school-a", "ada", time.Hour, false)
	tokB := token(t, "school-b", "bea", time.Hour, false)
	b := startFlipClient(t, f.wsBase(1), doc, tokB)
	if r := b.do(map[string]any{"op": "connect"}); !r.OK {
		t.Fatalf("school-b's tab did not sync: %+v", r)
	}
	a := startFlipClient(t, f.wsBase(0), doc, tokA)
	if r := a.do(map[string]any{"op": "connect"}); !r.OK {
		t.Fatalf("school-a's tab did not sync: %+v", r)
	}
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokA, nil); r.status != http.StatusNotFound {
		t.Errorf("school-a's tab, opened and left empty, made the ID a document: %d %s", r.status, r.raw)
	}
	b.do(map[string]any{"op": "insert", "at": 0, "text": "Bea's essay"})
	saved := func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokB, nil)
		return r.status == http.StatusOK && r.body["content"] == "Bea's essay"
	}
	for deadline := time.Now().Add(10 * time.Second); !saved(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("school-b's essay, typed into its open tab, never reached the server: the tab was closed as another school's")
		}
	}
	later := startFlipClient(t, f.wsBase(0), doc, token(t, "school-b", "cy", time.Hour, false))
	if r := later.do(map[string]any{"op": "connect"}); !r.OK || r.Text != "Bea's essay" {
		t.Errorf("a later tab of school-b shows %+v, want Bea's essay", r)
	}
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokA, nil); r.status != http.StatusNotFound {
		t.Errorf("school-a reads school-b's essay: %d %s", r.status, r.raw)
	}
	if r := a.do(map[string]any{"op": "text"}); r.Text != "" {
		t.Errorf("school-a's tab shows %q of school-b's essay", r.Text)
	}
}
