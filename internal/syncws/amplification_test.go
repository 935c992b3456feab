package syncws

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

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
	grown := heapInUse() - before
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
