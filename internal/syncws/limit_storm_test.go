package syncws

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestAReconnectStormLeavesTheLimitsCountsWhole: a storm of
// connections of every kind (bad tokens, no token, invalid IDs, another
// tenant's document, one user over her own limit, good ones) against a
// hub with little room; each refused one is recorded once, and when they
// are all gone the hub's counts are back to zero: no place leaked or
// given back twice (opening never negative), and the hub takes MaxConns
// connections again.
func TestAReconnectStormLeavesTheLimitsCountsWhole(t *testing.T) {
	const max = 4
	s := newTestServer(t, Limits{MaxConns: max, MaxConnsPerUser: 2})
	// "owned" is school-b's.
	owner := dial(t, s.wsURL("owned")+"?token="+token(t, "school-b", "bea"), nil)
	e := newEditor(9)
	if err := owner.send(yprotocol.EncodeUpdate(e.insert(t, "b's"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "owned created", func() bool { return s.be.Text("owned") == "b's" })
	_ = owner.ws.CloseNow()
	waitFor(t, "owner gone", func() bool { return s.hub.Stats().Conns == 0 })

	var mu sync.Mutex
	negative := false
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.hub.mu.Lock()
			if s.hub.opening < 0 || len(s.hub.conns)+s.hub.opening > max+64 {
				mu.Lock()
				negative = true
				mu.Unlock()
			}
			s.hub.mu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()

	urls := []string{
		s.wsURL("essay") + "?token=garbage",
		s.wsURL("essay"),
		s.wsURL("essay") + "?token=" + token(t, "school-a", "ada"),
		s.wsURL("essay") + "?token=" + token(t, "school-a", "ada"),
		s.wsURL("essay") + "?token=" + token(t, "school-a", "ada"),
		s.wsURL("owned") + "?token=" + token(t, "school-a", "cy"),
		s.wsURL("essay") + "?token=" + token(t, "school-a", "dan"),
	}
	var wg sync.WaitGroup
	for round := 0; round < 6; round++ {
		for i, u := range urls {
			wg.Add(1)
			go func(u string, i int) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ws, _, err := websocket.Dial(ctx, u, nil)
				if err != nil {
					return
				}
				if i%2 == 0 {
					time.Sleep(20 * time.Millisecond) // held open a little
				}
				// Read until closed, answering the close handshake.
				for {
					if _, _, err := ws.Read(ctx); err != nil {
						break
					}
				}
				_ = ws.CloseNow()
			}(u, i)
		}
	}
	// Those accepted stay open until read times out or the hub closes;
	// close them from the server side after a while.
	time.Sleep(500 * time.Millisecond)
	s.hub.mu.Lock()
	var open []*conn
	for c := range s.hub.conns {
		open = append(open, c)
	}
	s.hub.mu.Unlock()
	for _, c := range open {
		c.stop(1000, "bye")
	}
	wg.Wait()
	waitFor(t, "every connection gone", func() bool { return s.hub.Stats().Conns == 0 })
	close(stop)
	watch.Wait()
	s.hub.mu.Lock()
	opening, perUser := s.hub.opening, len(s.hub.perUser)
	s.hub.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if negative || opening != 0 || perUser != 0 {
		t.Fatalf("after the storm: opening %d (went negative or runaway: %v), users counted %d; want 0, false, 0", opening, negative, perUser)
	}
	// Room for max again.
	for i := range max {
		dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", fmt.Sprint("u", i)), nil)
	}
	waitFor(t, fmt.Sprint(max, " connections taken after the storm"), func() bool { return s.hub.Stats().Conns == max })
}
