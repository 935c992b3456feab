package syncws

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestOneStudentCannotFillTheGatewaysMemoryWithAwareness: awareness is
// bounded per message (64 KiB), per connection rate (30/s, burst 120) and
// per room (1024 remembered states), but not in bytes per user or per
// hub. One student with one token opens the 32 connections allowed, each
// to a room of its own (any not-yet-existing document ID opens), and
// sends 32 large states on each (64 MiB in all; a real state is well under
// a KiB: a name, a colour, a cursor), within the burst of 120 the rate
// allows. 32 rather than the whole burst: under the race detector 240 MiB
// took the client past its write timeout. The hub kept them all for as long as
// the connections stay open; at the sustained rate it reaches 32 rooms x
// 1024 x 64 KiB = 2 GiB per student per gateway in about 30 s.
func TestOneStudentCannotFillTheGatewaysMemoryWithAwareness(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok := token(t, "school-a", "mallory")
	const conns, burst = 32, 32
	state := []byte(`{"user":{"name":"` + strings.Repeat("x", 63<<10) + `"}}`)
	var wg sync.WaitGroup
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i := range conns {
		c := dial(t, s.wsURL(fmt.Sprintf("scratch-%d", i))+"?token="+tok, nil)
		go func() { // read the echoes, as a client does
			for {
				if _, _, err := c.ws.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range burst {
				msg := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{
					{ClientID: uint64(i*10_000 + k + 1), Clock: 1, State: state}}))
				if err := c.send(msg); err != nil {
					t.Errorf("conn %d msg %d: %v", i, k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var held int
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		held = 0
		s.hub.mu.Lock()
		for _, rm := range s.hub.rooms {
			for _, st := range rm.awareness {
				held += len(st.state)
			}
		}
		s.hub.mu.Unlock()
		if held >= conns*burst*len(state)*9/10 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("one user, %d connections, %d awareness messages each: hub holds %d MiB of awareness states; heap in use grew %d MiB",
		conns, burst, held>>20, (int64(ms.HeapInuse)-int64(ms0.HeapInuse))>>20)
	if limit := 4 << 20; held > limit {
		t.Fatalf("one student made the hub hold %d MiB of awareness state within seconds (limit asserted: %d MiB); at 30 msg/s per connection it grows to %d MiB",
			held>>20, limit>>20, (conns*1024*len(state))>>20)
	}
}

// TestOrdinaryAwarenessIsStillRemembered: under the byte bounds a real
// state (a name, a colour, a cursor) is remembered for newcomers, a newer
// state too large to remember drops the older one instead of leaving it
// stale, and a connection's budget frees as its states are replaced.
func TestOrdinaryAwarenessIsStillRemembered(t *testing.T) {
	s := newTestServer(t, Limits{MaxAwarenessState: 1024, MaxConnAwareness: 4096})
	tok := token(t, "school-a", "ada")
	c := dial(t, s.wsURL("essay-aw")+"?token="+tok, nil)
	remembered := func(id uint64) []byte {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		for _, rm := range s.hub.rooms {
			if st, ok := rm.awareness[id]; ok {
				return st.state
			}
		}
		return nil
	}
	send := func(id, clock uint64, state string) {
		t.Helper()
		if err := c.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: id, Clock: clock, State: []byte(state)}}))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	real := `{"user":{"name":"Ada","color":"#30bced"},"cursor":{"anchor":3,"head":3}}`
	send(7, 1, real)
	waitFor("a real state is not remembered", func() bool { return string(remembered(7)) == real })
	send(7, 2, `{"user":{"name":"`+strings.Repeat("x", 2000)+`"}}`)
	waitFor("a stale state stayed after a newer one too large to remember", func() bool { return remembered(7) == nil })
	// The budget freed: four more real states fit (4 KiB in all).
	for id := uint64(10); id < 14; id++ {
		send(id, 1, real)
	}
	waitFor("the connection's budget did not free", func() bool { return remembered(13) != nil })
}
