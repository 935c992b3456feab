package syncws

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestAwarenessReconnectIsNotSquatted: y-websocket keeps its Y.Doc (and
// so its awareness client ID) across a reconnect. ada's connection drops;
// the hub relays her client's removal (so everyone, mallory included,
// learns the ID). mallory announces that client ID with a forged state
// before ada is back. When ada reconnects and announces her own client,
// docs/api.md says no student can "move another's cursor, rename it or
// hide it": bob must see ada's state for her client, not mallory's.
func TestAwarenessReconnectIsNotSquatted(t *testing.T) {
	s := newTestServer(t, Limits{})
	const doc, adaClient = "squat", 4242
	adaState := `{"user":{"name":"ada"}}`
	forged := `{"user":{"name":"ada (forged by mallory)"}}`

	bob := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
	bobR := readInBackground(bob)
	ada := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "ada"), nil)
	if err := ada.send(awarenessOfOne(adaClient, 1, adaState)); err != nil {
		t.Fatal(err)
	}
	if got := bobR.awarenessOf(adaClient, 500*time.Millisecond); len(got) != 1 || got[0] != adaState {
		t.Fatalf("bob first saw %q for ada's client", got)
	}
	// ada's network drops.
	_ = ada.ws.Close(websocket.StatusGoingAway, "")
	if got := bobR.awarenessOf(adaClient, 500*time.Millisecond); len(got) != 1 || got[0] != "null" {
		t.Fatalf("bob saw %q for ada's client after she left, want its removal", got)
	}
	// mallory takes the freed client ID.
	mallory := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "mallory"), nil)
	if err := mallory.send(awarenessOfOne(adaClient, 10, forged)); err != nil {
		t.Fatal(err)
	}
	_ = bobR.awarenessOf(adaClient, 300*time.Millisecond)
	// ada is back, same Y.Doc, same client ID, her clock moves on.
	ada2 := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "ada"), nil)
	ada2R := readInBackground(ada2)
	if err := ada2.send(awarenessOfOne(adaClient, 11, adaState)); err != nil {
		t.Fatal(err)
	}
	got := bobR.awarenessOf(adaClient, 500*time.Millisecond)
	if len(got) == 0 || got[len(got)-1] != adaState {
		t.Errorf("after ada reconnected and announced her client %d, bob was relayed %q for it (want ada's %s): mallory's squat hides and renames her", adaClient, got, adaState)
	}
	late := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "cy"), nil)
	if g := readInBackground(late).awarenessOf(adaClient, 500*time.Millisecond); len(g) != 1 || g[0] != adaState {
		t.Errorf("a newcomer is greeted with %q for ada's client %d, want ada's own state", g, adaClient)
	}
	if g := ada2R.awarenessOf(adaClient, 200*time.Millisecond); !contains(g, adaState) {
		t.Errorf("ada's own awareness is not even echoed to her: %q", g)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestAwarenessOwnershipHoldsWhenTheStateIsNotRemembered: the ownership
// rule is only checked against the states the hub remembers. A state the
// hub does not remember (over 8 KiB, or the room at its 1,024 remembered
// clients, which one connection can fill by itself) is still relayed, as
// the announcer's; mallory's entry for that client must not be relayed
// either (docs/api.md: an entry for a client another user's connection
// announced is neither relayed nor remembered).
func TestAwarenessOwnershipHoldsWhenTheStateIsNotRemembered(t *testing.T) {
	for _, tc := range []struct {
		name     string
		adaState string
		prefill  bool
	}{
		{"a state over 8 KiB", `{"user":{"name":"ada"},"note":"` + strings.Repeat("x", 9<<10) + `"}`, false},
		{"a room whose 1024 remembered clients mallory filled", `{"user":{"name":"ada"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Limits{})
			const doc, adaClient = "unremembered", 777001
			forged := `{"user":{"name":"ada (forged by mallory)"}}`
			mallory := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "mallory"), nil)
			if tc.prefill {
				entries := make([]yprotocol.AwarenessEntry, 1024)
				for i := range entries {
					entries[i] = yprotocol.AwarenessEntry{ClientID: uint64(900000 + i), Clock: 1, State: []byte("{}")}
				}
				if err := mallory.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(entries))); err != nil {
					t.Fatal(err)
				}
			}
			bob := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
			bobR := readInBackground(bob)
			ada := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "ada"), nil)
			if err := ada.send(awarenessOfOne(adaClient, 1, tc.adaState)); err != nil {
				t.Fatal(err)
			}
			if got := bobR.awarenessOf(adaClient, 500*time.Millisecond); len(got) != 1 || got[0] != tc.adaState {
				t.Fatalf("bob first saw %d states for ada's client", len(got))
			}
			for _, st := range []string{forged, "null"} {
				if err := mallory.send(awarenessOfOne(adaClient, 50, st)); err != nil {
					t.Fatal(err)
				}
				if got := bobR.awarenessOf(adaClient, 400*time.Millisecond); len(got) > 0 {
					t.Errorf("bob was relayed %q as ada's client %d, sent by mallory's connection", got, adaClient)
				}
			}
		})
	}
}
