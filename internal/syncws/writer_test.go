package syncws

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// connIDs is the Session.ConnID of every open connection.
func connIDs(h *Hub) map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := map[string]bool{}
	for c := range h.conns {
		ids[c.s.ConnID] = true
	}
	return ids
}

// TestMessagesReachAClientInTheOrderTheyWereQueuedWhileItsWriterComesAndGoes:
// a connection's writer runs only while messages wait and a new one
// starts for the next; relayed updates must still arrive in the order
// they were relayed (a client reading about as fast as they come empties
// the queue again and again).
func TestMessagesReachAClientInTheOrderTheyWereQueuedWhileItsWriterComesAndGoes(t *testing.T) {
	s := newTestServer(t, Limits{SendQueue: 1 << 16})
	c := dial(t, s.wsURL("order")+"?token="+token(t, "school-a", "ada"), nil)
	waitFor(t, "registered", func() bool { return s.hub.Stats().Conns == 1 })
	e := newEditor(3)
	ups := make([][]byte, 2000)
	for i := range ups {
		ups[i] = e.insert(t, "x")
	}
	go func() {
		for i, u := range ups {
			s.hub.Publish("school-a", "order", u)
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the queue run dry
			}
		}
	}()
	for i := range ups {
		m := c.nextOf(yprotocol.MessageSync, yprotocol.SyncUpdate)
		if !bytes.Equal(m.Payload, ups[i]) {
			t.Fatalf("update %d arrived out of order", i)
		}
	}
}

// TestAMessageQueuedJustBeforeAGracefulCloseIsWrittenBeforeTheClose: a
// close after a flush (CloseConnections) that comes as the writer finds
// the queue empty and exits must still be seen by a writer, which writes
// what was queued before it and then closes with the code.
func TestAMessageQueuedJustBeforeAGracefulCloseIsWrittenBeforeTheClose(t *testing.T) {
	s := newTestServer(t, Limits{MaxConnsPerUser: 1000})
	tok := token(t, "school-a", "ada")
	e := newEditor(4)
	for i := 0; i < 100; i++ {
		c := dial(t, s.wsURL("flush")+"?token="+tok, nil)
		waitFor(t, "registered", func() bool { return s.hub.Stats().Conns == 1 })
		u := e.insert(t, "q")
		s.hub.Publish("school-a", "flush", u)
		s.hub.CloseConnections("flush", connIDs(s.hub), contract.CloseGoingAway, "moved")
		m, err := c.next()
		if err != nil {
			t.Fatalf("round %d: the update queued before the close was lost: %v", i, err)
		}
		if m.Type != yprotocol.MessageSync || !bytes.Equal(m.Payload, u) {
			t.Fatalf("round %d: got %+v, want the update", i, m)
		}
		if code, _ := c.closeStatus(); code != contract.CloseGoingAway {
			t.Fatalf("round %d: close %d, want %d", i, code, contract.CloseGoingAway)
		}
		waitFor(t, "connection gone", func() bool { return s.hub.Stats().Conns == 0 })
		_ = c.ws.CloseNow()
	}
}

// TestNoGoroutineOfAConnectionOutlivesIt: writers started on demand and
// pings on a timer must all be gone once their connections are, whether
// a connection was closed by the hub, dropped for not answering pings,
// or closed by its client.
func TestNoGoroutineOfAConnectionOutlivesIt(t *testing.T) {
	s := newTestServer(t, Limits{PingInterval: 10 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxConnsPerUser: 1000})
	tok := token(t, "school-a", "ada")
	time.Sleep(100 * time.Millisecond) // earlier tests' connections wind down
	g0 := runtime.NumGoroutine()
	for round := 0; round < 5; round++ {
		var readers []*client
		for range 4 {
			c := dial(t, s.wsURL("gone")+"?token="+tok, nil)
			readers = append(readers, c)
		}
		silent := dial(t, s.wsURL("gone")+"?token="+tok, nil) // never reads: never answers a ping
		quitter := dial(t, s.wsURL("gone")+"?token="+tok, nil)
		waitFor(t, "six connections", func() bool { return s.hub.Stats().Conns == 6 })
		_ = quitter.ws.Close(websocket.StatusNormalClosure, "bye")
		done := make(chan struct{}, len(readers))
		for _, c := range readers {
			go func() {
				defer func() { done <- struct{}{} }()
				for {
					if _, err := c.next(); err != nil {
						return
					}
				}
			}()
		}
		e := newEditor(uint64(round + 1))
		for range 20 {
			s.hub.Publish("school-a", "gone", e.insert(t, "y"))
		}
		waitFor(t, "the silent client dropped and the quitter gone", func() bool { return s.hub.Stats().Conns == 4 })
		s.hub.CloseDocument("gone", contract.CloseGoingAway, "bye")
		for range readers {
			<-done
		}
		waitFor(t, "every connection gone", func() bool { return s.hub.Stats().Conns == 0 })
		for _, c := range append(readers, silent, quitter) {
			_ = c.ws.CloseNow()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the connections ended, %d before:\n%s", runtime.NumGoroutine(), g0, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
