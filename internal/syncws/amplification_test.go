package syncws

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// bigAwareness is one awareness message of one client whose state is a
// JSON string, the whole message just under the 64 KiB awareness limit.
func bigAwareness(client uint64) []byte {
	state := `"` + strings.Repeat("a", 65536-64) + `"`
	return yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: client, Clock: 1, State: []byte(state)}}))
}

func drain(c *client) {
	go func() {
		for {
			if _, _, err := c.ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestQueryAwarenessOfANonReaderIsBounded: a room remembers up to 1024
// awareness states of up to 64 KiB each, and every query-awareness
// message (1 byte) makes the hub encode all of them into a message queued
// for the sender. A client that asked and did not read made the gateway
// hold one copy per query until the write timeout (120 bytes in, 362 MiB
// held with 100 states); a query while a copy is still queued for the
// client is not answered again. Found by the security review.
func TestQueryAwarenessOfANonReaderIsBounded(t *testing.T) {
	// Big states are no longer remembered by default (MaxAwarenessState);
	// raised here, so that what is tested is the bound on queued copies.
	s := newTestServer(t, Limits{MaxAwarenessState: 64 << 10, MaxConnAwareness: 8 << 20})
	tok := token(t, "school-a", "mallory")
	const states = 100 // of the 1024 a room keeps; 6.4 MiB
	for i := range 2 {
		f := dial(t, s.wsURL("amp")+"?token="+tok, nil)
		drain(f)
		for j := range states / 2 {
			if err := f.send(bigAwareness(uint64(1000 + i*states + j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "room holds the states", func() bool {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		for _, rm := range s.hub.rooms {
			return len(rm.awareness) == states
		}
		return false
	})
	// The attacker connects and never reads. (Its greeting already
	// holds one copy.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.wsURL("amp")+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	time.Sleep(200 * time.Millisecond)
	before := heapInUse()
	const queries = 120 // the awareness burst
	for range queries {
		if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeQueryAwareness()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	// Signed: the heap may shrink meanwhile (other tests' garbage
	// collected), and an unsigned difference wrapped round to 16 EiB and
	// failed the test (seen in CI).
	grown := int64(heapInUse()) - int64(before)
	t.Logf("%d query-awareness messages (%d bytes sent) -> gateway heap +%d MiB", queries, queries, grown>>20)
	if grown > 64<<20 {
		t.Fatalf("AMPLIFICATION: %d one-byte query-awareness messages made the hub hold %d MiB (room of %d states; a full room of 1024 x 64 KiB holds 10x that per query)", queries, grown>>20, states)
	}
}

// TestAwarenessClientsOfAConnectionAreBounded: a connection remembers the
// awareness clients it named (to announce their removal when it closes),
// at most as many as a room remembers: each 64 KiB message may name about
// 10,900 new ones, and the set grew without bound (1.3 million IDs after
// 120 messages). Found by the security review.
func TestAwarenessClientsOfAConnectionAreBounded(t *testing.T) {
	s := newTestServer(t, Limits{})
	c := dial(t, s.wsURL("ids")+"?token="+token(t, "school-a", "mallory"), nil)
	const perMsg, msgs = 10000, 5
	next := uint64(1 << 14)
	for range msgs {
		es := make([]yprotocol.AwarenessEntry, perMsg)
		for i := range es {
			es[i] = yprotocol.AwarenessEntry{ClientID: next, Clock: 0, State: []byte("0")}
			next++
		}
		if err := c.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(es))); err != nil {
			t.Fatal(err)
		}
	}
	// A message after them is processed once they are. The hub relays
	// awareness to the sender too, in order, so once its copy of this
	// removal comes back every earlier message has been processed.
	first := uint64(1 << 14)
	gone := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: first, Clock: 1, State: []byte("null")}}))
	if err := c.send(gone); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("the removal sent after the flood never came back")
		}
		m, err := c.next()
		if err != nil {
			t.Fatalf("reading the relayed awareness: %v", err)
		}
		if m.Type != yprotocol.MessageAwareness {
			continue
		}
		for _, e := range m.Awareness {
			if e.ClientID == first && e.Removed() {
				seen = true
			}
		}
	}
	s.hub.mu.Lock()
	n := -1
	for k := range s.hub.conns {
		n = len(k.clients)
	}
	s.hub.mu.Unlock()
	if n < 0 || n > 1024 {
		t.Fatalf("one connection remembers %d awareness clients after naming %d", n, perMsg*msgs)
	}
}

// bigDocument makes doc a document of tenant's holding about size bytes
// of text, written by a client of tok that reads what it is sent.
func bigDocument(t *testing.T, s *testServer, tok, doc string, size int) {
	t.Helper()
	src := yjs.NewDoc(yjs.Options{ClientID: 7})
	if err := src.GetText(contract.YjsTextName).Insert(0, strings.Repeat("essay ", size/6), nil); err != nil {
		t.Fatal(err)
	}
	w := dial(t, s.wsURL(doc)+"?token="+tok, nil)
	drain(w)
	if err := w.send(yprotocol.EncodeUpdate(src.EncodeStateAsUpdate(nil))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the document", func() bool { return len(s.be.Text(doc)) >= size/6*6 })
}

// TestSyncStep1OfANonReaderIsBounded: every sync step 1 (a few bytes) is
// answered with everything the server holds beyond the client's state
// vector: for an empty one, the whole document. A client that sent step
// 1s and did not read made the hub hold one copy per message until the
// write timeout (200 messages of 4 bytes: +400 MiB for a 2 MiB document;
// a user may hold 32 connections). A step 1 whose answer is held in an
// answer still queued for the client is not answered again.
func TestSyncStep1OfANonReaderIsBounded(t *testing.T) {
	// Each step 1 costs an encoding of the whole document: about 90 ms
	// under the race detector, where the hub's default write timeout
	// (10 s) closed this client, which reads nothing, before half of them
	// were handled, and they never all were. The timeout is not what is
	// tested here, and held longer the answers have longer to pile up.
	s := newTestServer(t, Limits{WriteTimeout: time.Minute})
	tok := token(t, "school-a", "mallory")
	const size = 2 << 20
	bigDocument(t, s, tok, "big", size)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.wsURL("big")+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	before := heapInUse()
	const step1s = 200 // of the user's burst of 400
	for range step1s {
		if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeSyncStep1([]byte{0})); err != nil {
			t.Fatal(err)
		}
	}
	// The hub answers in order: once the announcements are all in, the
	// answers are queued.
	for deadline := time.Now().Add(50 * time.Second); len(s.be.Announcements()) < step1s; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d step 1s processed in 50 s", len(s.be.Announcements()), step1s)
		}
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("%d sync step 1s (%d bytes sent) -> hub heap %+d MiB", step1s, step1s*4, grown>>20)
	if grown > 16*size {
		t.Fatalf("AMPLIFICATION: %d sync step 1s of 4 bytes made the hub hold %d MiB (a document of %d MiB)", step1s, grown>>20, size>>20)
	}
}

// TestSyncStep1NotHeldInAQueuedAnswerIsAnswered: a step 1 whose state
// vector lacks what an answer still queued for the client left out (the
// client holds less than it said before) is answered, whether or not the
// earlier answer has been read.
func TestSyncStep1NotHeldInAQueuedAnswerIsAnswered(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok := token(t, "school-a", "ada")
	bigDocument(t, s, tok, "essay", 1<<20)
	c := dial(t, s.wsURL("essay")+"?token="+tok, nil)
	full := yjs.EncodeStateVector(s.be.StateVector("essay"))
	for _, sv := range [][]byte{full, full, {0}} {
		if err := c.send(yprotocol.EncodeSyncStep1(sv)); err != nil {
			t.Fatal(err)
		}
	}
	// The answers to the first two hold nothing (the second may go
	// unanswered: the first's holds all it lacks); the third's must hold
	// the document.
	want := s.be.Text("essay")
	for {
		m := c.nextOf(yprotocol.MessageSync, yprotocol.SyncStep2)
		d := yjs.NewDoc(yjs.Options{ClientID: 9})
		if err := d.ApplyUpdate(m.Payload); err != nil {
			t.Fatal(err)
		}
		if d.GetText(contract.YjsTextName).String() == want {
			return
		}
	}
}
