package syncws

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// awarenessOfOne is an awareness message of one entry.
func awarenessOfOne(id, clock uint64, state string) []byte {
	return yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: id, Clock: clock, State: []byte(state)}}))
}

// bgReader reads c's messages in the background (a read whose context
// ends closes a coder/websocket connection).
type bgReader struct{ msgs chan []byte }

func readInBackground(c *client) *bgReader {
	r := &bgReader{msgs: make(chan []byte, 1024)}
	go func() {
		defer close(r.msgs)
		for {
			_, b, err := c.ws.Read(context.Background())
			if err != nil {
				return
			}
			r.msgs <- b
		}
	}()
	return r
}

// awarenessOf returns the awareness entries for client id that r gets
// within d, in order.
func (r *bgReader) awarenessOf(id uint64, d time.Duration) []string {
	var got []string
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return got
		case b, ok := <-r.msgs:
			if !ok {
				return got
			}
			m, err := yprotocol.DecodeClient(b)
			if err != nil || m.Type != yprotocol.MessageAwareness {
				continue
			}
			for _, e := range m.Awareness {
				if e.ClientID == id {
					got = append(got, string(e.State))
				}
			}
		}
	}
}

// TestAwarenessOfAnotherStudentCannotBeForged: awareness is how an
// editor shows who is in the document (a name and a cursor per Yjs
// client). A client's state is its announcer's: another user's
// connection can neither replace nor remove it, for the room nor for
// newcomers. Before, mallory could make ada's cursor carry another name
// for everyone, or hide her from newcomers.
func TestAwarenessOfAnotherStudentCannotBeForged(t *testing.T) {
	for _, forged := range []string{`{"user":{"name":"ada (forged by mallory)"}}`, `null`} {
		t.Run(map[bool]string{true: "removed", false: "replaced"}[forged == "null"], func(t *testing.T) {
			s := newTestServer(t, Limits{})
			const doc, adaClient = "class-notes", 1001
			adaState := `{"user":{"name":"ada"}}`
			ada := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "ada"), nil)
			if err := ada.send(awarenessOfOne(adaClient, 1, adaState)); err != nil {
				t.Fatal(err)
			}
			adaR := readInBackground(ada)
			if got := adaR.awarenessOf(adaClient, 500*time.Millisecond); len(got) != 1 || got[0] != adaState {
				t.Fatalf("ada's own awareness echo: %q", got)
			}
			watcher := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
			watcherR := readInBackground(watcher)
			if got := watcherR.awarenessOf(adaClient, 500*time.Millisecond); len(got) != 1 || got[0] != adaState {
				t.Fatalf("bob's greeting: %q", got)
			}
			mallory := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "mallory"), nil)
			if err := mallory.send(awarenessOfOne(adaClient, 50, forged)); err != nil {
				t.Fatal(err)
			}
			// What bob is relayed of ada's client after mallory's message.
			if got := watcherR.awarenessOf(adaClient, 500*time.Millisecond); len(got) > 0 {
				t.Errorf("bob was relayed %q as the awareness of ada's client %d, sent by mallory's connection", got, adaClient)
			}
			// A newcomer is greeted with the states the hub remembers.
			late := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "cy"), nil)
			got := readInBackground(late).awarenessOf(adaClient, 500*time.Millisecond)
			if len(got) != 1 || got[0] != adaState {
				t.Errorf("a newcomer is greeted with %q for ada's client %d, want ada's own state %s", got, adaClient, adaState)
			}
			_ = mallory.ws.Close(websocket.StatusNormalClosure, "")
		})
	}
}
