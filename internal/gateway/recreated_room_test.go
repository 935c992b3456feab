package gateway

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// heldCopy opens a local-first client on doc through gateway 0 and waits
// until it holds want; done gets Run's error.
func heldCopy(t *testing.T, f *syncFixture, ctx context.Context, doc, user, want string) (*localfirst.Client, localfirst.Remote, <-chan error) {
	t.Helper()
	c, err := localfirst.Open(filepath.Join(t.TempDir(), user+".ylf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	remote := localfirst.Remote{URL: f.wsBase(0) + "/", DocID: doc, Token: token(t, "school-a", user, time.Hour, false)}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, remote) }()
	if err := c.WaitFor(ctx, func(s string) bool { return s == want }); err != nil {
		t.Fatalf("%s's client has %q, want %q", user, c.Text(), want)
	}
	return c, remote, done
}

// closedAsForeign waits for a client's Run to end with the 4409 close and
// checks it still shows only text.
func closedAsForeign(t *testing.T, ctx context.Context, c *localfirst.Client, done <-chan error, text string) {
	t.Helper()
	select {
	case err := <-done:
		if !localfirst.IsForeignHistory(err) {
			t.Fatalf("the client's run ended with %v, want the foreign-history close (%d)", err, contract.CloseForeignHistory)
		}
	case <-ctx.Done():
		t.Fatalf("the client of the deleted document stayed connected to the new one; it shows %q", c.Text())
	}
	if got := c.Text(); got != text {
		t.Fatalf("the client of the deleted document shows %q, want %q: it was sent the new document's text over the deleted one's", got, text)
	}
}

// TestSyncClientsOfADocumentCreatedAgainOverREST: a local-first client
// holds a document; the legacy application deletes it and the school
// creates a document with the same ID over REST. The client, answered
// from the deleted document's history, is closed with 4409 (its copy is
// foreign now) and sent nothing of the new text. Before, the create was
// relayed to it from its room's old state vector and it showed "abc"
// and "wxyz12" run together, with nothing telling it so until its next
// edit. Reset, it reads the new document.
func TestSyncClientsOfADocumentCreatedAgainOverREST(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-again", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "abc")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, remote, done := heldCopy(t, f, ctx, doc, "stu", "abc")

	deleteOutside(t, f.fixture, teacher, doc)
	f.create(teacher, doc, "wxyz12")
	closedAsForeign(t, ctx, old, done, "abc")
	if _, err := old.Reset(); err != nil {
		t.Fatal(err)
	}
	stop := f.runClient(old, remote)
	defer stop()
	if err := old.WaitFor(ctx, func(s string) bool { return s == "wxyz12" }); err != nil {
		t.Fatalf("after its reset the client has %q, want wxyz12", old.Text())
	}
	f.checkBothRepresentations(teacher, doc, "wxyz12")
}

// TestSyncClientsOfADocumentCreatedAgainBySync: as above, but the ID is
// taken again by another client typing into it over sync (its update
// creates the document) while the first client's connection is still
// open. The first client is closed with 4409 and sees nothing of the new
// document; the new one's client stays connected, gets a teacher's REST
// save live and reads its own typing back.
func TestSyncClientsOfADocumentCreatedAgainBySync(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-again", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "abc")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, _, oldDone := heldCopy(t, f, ctx, doc, "stu", "abc")

	deleteOutside(t, f.fixture, teacher, doc)
	fresh, _, freshDone := heldCopy(t, f, ctx, doc, "ana", "")
	if err := fresh.Edit(func(x *yjs.Text) error { return x.Insert(0, "new start", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	closedAsForeign(t, ctx, old, oldDone, "abc")
	d := f.readDoc(0, teacher, doc)
	r := f.do(http.MethodPut, contract.PathDocuments+"/"+doc, teacher, map[string]any{"content": d.Content + "!"},
		"If-Match", strconv.Quote(strconv.FormatInt(d.Revision, 10)))
	if r.status != http.StatusOK {
		t.Fatalf("teacher's save: %d %s", r.status, r.raw)
	}
	if err := fresh.WaitFor(ctx, func(s string) bool { return s == "new start!" }); err != nil {
		t.Fatalf("the new document's client has %q, want %q", fresh.Text(), "new start!")
	}
	select {
	case err := <-freshDone:
		t.Fatalf("the new document's client was disconnected: %v", err)
	default:
	}
	if got := old.Text(); got != "abc" {
		t.Fatalf("the deleted document's client shows %q", got)
	}
	f.checkBothRepresentations(teacher, doc, "new start!")
}

// TestAnEditOfADeletedDocumentDoesNotBringItBack: the legacy application
// deletes a document while a local-first client holds it; the client's
// next edit is refused with 4409 (its copy is of a document that is gone)
// and creates nothing. Before, the edit made the ID a new, empty document
// owned by the student, the edit waiting in it for ever for the deleted
// text it was typed into, and evidence called it synced.
func TestAnEditOfADeletedDocumentDoesNotBringItBack(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-gone", 0)
	teacher, _ := staleEditRefused(t, f, doc)
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Fatalf("the deleted document reads %d %s after the stale edit, want 404", r.status, r.raw)
	}
	// The school can still take the ID again.
	f.create(teacher, doc, "new")
	f.checkBothRepresentations(teacher, doc, "new")
}

// TestAnEditOfADeletedDocumentTypedIntoExistenceDoesNotBringItBack: as
// above, for a document a student made by typing into a new ID (it has no
// server genesis to recognise the copy by): the student's next edit,
// after the legacy application deleted the document, is refused with
// 4409 and creates nothing. Before, it made the ID a new document holding
// nothing, the edit waiting in it for ever for the text it continues.
func TestAnEditOfADeletedDocumentTypedIntoExistenceDoesNotBringItBack(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("typed-gone", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, done := heldCopy(t, f, ctx, doc, "stu", "")
	if err := c.Edit(func(x *yjs.Text) error { return x.Insert(0, "my essay", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d := f.readDoc(0, teacher, doc); d.Content != "my essay" {
		t.Fatalf("the typed document reads %q", d.Content)
	}
	deleteOutside(t, f.fixture, teacher, doc)
	if err := c.Edit(func(x *yjs.Text) error { return x.Insert(8, "!", nil) }); err != nil {
		t.Fatal(err)
	}
	closedAsForeign(t, ctx, c, done, "my essay!")
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Fatalf("the deleted document reads %d %s after the stale edit, want 404", r.status, r.raw)
	}
	// A new client may still make a document of the ID by typing.
	fresh, _, _ := heldCopy(t, f, ctx, doc, "ana", "")
	if err := fresh.Edit(func(x *yjs.Text) error { return x.Insert(0, "fresh start", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.checkBothRepresentations(teacher, doc, "fresh start")
}

// staleEditRefused: a teacher creates doc with "abc", student "stu" holds
// a copy, the legacy application deletes the document, and her next edit
// ("abcX") is refused with 4409. It returns the teacher's token and her
// client.
func staleEditRefused(t *testing.T, f *syncFixture, doc string) (string, *localfirst.Client) {
	t.Helper()
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "abc")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, _, done := heldCopy(t, f, ctx, doc, "stu", "abc")
	deleteOutside(t, f.fixture, teacher, doc)
	if err := old.Edit(func(x *yjs.Text) error { return x.Insert(3, "X", nil) }); err != nil {
		t.Fatal(err)
	}
	closedAsForeign(t, ctx, old, done, "abcX")
	return teacher, old
}

// TestAnEmptySyncStep2DoesNotBringADeletedDocumentBack: a student's
// connection reads a document; the legacy application deletes it before
// her client answers the server's sync step 1, and her answer (she has
// nothing new: an update of no operations) arrives after the deletion. It
// must not create the document again: before, it did (empty, the
// student's), the deleted document read 200 and the school's create of the
// ID got 409 already_exists. That is how
// TestSyncClientsOfADocumentCreatedAgainOverREST failed about 1 run in 25.
func TestAnEmptySyncStep2DoesNotBringADeletedDocumentBack(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-late-step2", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "abc")
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", "stu", time.Hour, false), 701)
	p.send(yprotocol.EncodeSyncStep1(p.doc.EncodeStateVector()))
	var serverSV []byte
	for serverSV == nil || p.text() != "abc" {
		m, ok, err := p.next(10 * time.Second)
		if err != nil || !ok {
			t.Fatalf("handshake: %v (timeout %v)", err, !ok)
		}
		switch {
		case m.Type != yprotocol.MessageSync:
		case m.Sync == yprotocol.SyncStep1:
			serverSV = m.Payload
		default:
			p.apply(m.Payload)
		}
	}

	deleteOutside(t, f.fixture, teacher, doc)
	sv, err := yjs.DecodeStateVector(serverSV)
	if err != nil {
		t.Fatal(err)
	}
	step2 := p.doc.EncodeStateAsUpdate(sv)
	if !bytes.Equal(step2, []byte{0, 0}) {
		t.Fatalf("the client's sync step 2 is % x, want the empty update", step2)
	}
	p.send(yprotocol.EncodeSyncStep2(step2))
	// Awareness is relayed to its sender too, after the step 2 before it
	// was handled.
	p.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: 701, Clock: 1, State: []byte(`{"user":"stu"}`)}})))
	var closed error
	for seen := false; !seen && closed == nil; {
		m, ok, err := p.next(10 * time.Second)
		if err == nil && !ok {
			t.Fatal("no awareness echo within 10 s")
		}
		closed, seen = err, m.Type == yprotocol.MessageAwareness
	}

	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Errorf("the deleted document reads %d %s after the student's empty sync step 2, want 404", r.status, r.raw)
	}
	if closed != nil {
		t.Fatalf("the student's connection closed (%v) though nobody took the ID again", closed)
	}
	f.create(teacher, doc, "wxyz12")
	f.checkBothRepresentations(teacher, doc, "wxyz12")
}
