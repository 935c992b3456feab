package syncws

import (
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// waitForClient reads r until an awareness entry for id arrives (or d passes)
// and returns its state.
func waitForClient(r *bgReader, id uint64, d time.Duration) (string, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return "", false
		case b, ok := <-r.msgs:
			if !ok {
				return "", false
			}
			m, err := yprotocol.DecodeClient(b)
			if err != nil || m.Type != yprotocol.MessageAwareness {
				continue
			}
			for _, e := range m.Awareness {
				if e.ClientID == id {
					return string(e.State), true
				}
			}
		}
	}
}

// TestReloadsBesideASecondTabKeepTheCursorOwned: ada has the document
// open in two tabs. Stock y-websocket clients send again every awareness
// change they are relayed, so her second tab echoes each client ID her
// first tab draws on a reload. An echo (a clock not above the state's)
// neither moves the state nor counts as a client its connection speaks
// for, so after 64 reloads her IDs not in use are still released, and a
// classmate's echo never makes him the owner of her cursor. Before, the
// echoes filled the second tab's "in use" set, her 65th client went
// unowned, bob's echo took it, and her own cursor moves were dropped.
func TestReloadsBesideASecondTabKeepTheCursorOwned(t *testing.T) {
	s := newTestServer(t, Limits{AwarenessPerSecond: 10000, AwarenessBurst: 10000})
	const doc = "two-tabs"
	adaTok := token(t, "school-a", "ada")
	tab2 := dial(t, s.wsURL(doc)+"?token="+adaTok, nil)
	tab2R := readInBackground(tab2)
	if err := tab2.send(awarenessOfOne(1, 1, `{"user":{"name":"ada"}}`)); err != nil {
		t.Fatal(err)
	}
	bob := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
	bobR := readInBackground(bob)
	cy := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "cy"), nil)
	cyR := readInBackground(cy)

	var tab1 *client
	var last uint64
	for i := 0; i <= maxOwnedClients; i++ { // tab 1 loaded, then reloaded 64 times
		id := uint64(5000 + i)
		last = id
		st := fmt.Sprintf(`{"user":{"name":"ada"},"cursor":%d}`, i)
		tab1 = dial(t, s.wsURL(doc)+"?token="+adaTok, nil)
		if err := tab1.send(awarenessOfOne(id, 1, st)); err != nil {
			t.Fatal(err)
		}
		// tab 2 (a stock client) echoes what it is relayed.
		if got, ok := waitForClient(tab2R, id, 2*time.Second); !ok || got != st {
			t.Fatalf("load %d: tab 2 was relayed %q, %v", i, got, ok)
		}
		if err := tab2.send(awarenessOfOne(id, 1, st)); err != nil {
			t.Fatal(err)
		}
		if i == maxOwnedClients {
			break // the last load stays open
		}
		_ = tab1.ws.Close(websocket.StatusGoingAway, "")
		// tab 2 is relayed its removal and echoes it (or, when the hub
		// sent none, as its echo made tab 2's connection the state's
		// holder, times the state out after 30 s and sends the removal).
		for {
			got, ok := waitForClient(tab2R, id, 300*time.Millisecond)
			if !ok || got == "null" {
				break
			}
		}
		if err := tab2.send(awarenessOfOne(id, 2, "null")); err != nil {
			t.Fatal(err)
		}
	}
	// bob's stock client echoes ada's newest client as it is relayed.
	st, ok := waitForClient(bobR, last, 2*time.Second)
	if !ok {
		t.Fatalf("bob never saw ada's client %d", last)
	}
	if err := bob.send(awarenessOfOne(last, 1, st)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for { // drain what cy was relayed so far
		if _, ok := waitForClient(cyR, last, 200*time.Millisecond); !ok {
			break
		}
	}
	// ada moves her cursor in the tab she just loaded: cy must see it.
	moved := `{"user":{"name":"ada"},"cursor":"moved"}`
	if err := tab1.send(awarenessOfOne(last, 2, moved)); err != nil {
		t.Fatal(err)
	}
	if got, ok := waitForClient(cyR, last, time.Second); !ok || got != moved {
		s.hub.mu.Lock()
		owner := s.hub.rooms[roomKey{"school-a", doc}].owners[last]
		s.hub.mu.Unlock()
		t.Errorf("ada moved her cursor (client %d) and cy was relayed %q (%v); the hub records its owner as %+v", last, got, ok, owner)
	}
}
