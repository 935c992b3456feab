package syncws

import "testing"

// TestOutQueueKeepsOrderAndStaysAsLargeAsWhatWaits: a client that reads
// about as fast as it is sent never empties its queue; the queue must
// still hand messages out oldest first and not grow with every message
// ever sent through it.
func TestOutQueueKeepsOrderAndStaysAsLargeAsWhatWaits(t *testing.T) {
	var q outQueue
	next := 0 // the message expected out next
	sent := 0
	for round := 0; round < 10_000; round++ {
		for range 3 {
			q.push(outMsg{b: []byte{byte(sent), byte(sent >> 8)}})
			sent++
		}
		for range 2 {
			m, ok := q.pop()
			if !ok {
				t.Fatalf("round %d: queue of %d empty", round, q.len())
			}
			if got := int(m.b[0]) | int(m.b[1])<<8; got != next%(1<<16) {
				t.Fatalf("round %d: got message %d, want %d", round, got, next)
			}
			next++
		}
		// Drained every 100 rounds, as a reader catching up would.
		if round%100 == 99 {
			for q.len() > 0 {
				if _, ok := q.pop(); !ok {
					t.Fatal("len > 0 but nothing popped")
				}
				next++
			}
			if q.buf != nil {
				t.Fatalf("round %d: a drained queue keeps a buffer of %d messages", round, cap(q.buf))
			}
		}
		if q.len() > 0 && cap(q.buf) > 4*q.len()+16 {
			t.Fatalf("round %d: %d messages waiting in a buffer of %d", round, q.len(), cap(q.buf))
		}
	}
	if _, ok := q.pop(); ok || q.len() != 0 {
		t.Fatalf("queue should be empty, has %d", q.len())
	}
}
