package syncws

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestAFreeIDsAwarenessStaysWithinItsSchool: two schools' tabs on
// an ID no one has claimed yet (nothing typed). school-b's awareness (a
// student's name, her cursor) reaches neither school-a's open tab nor
// one opened later (the greeting), nor an awareness query of school-a.
func TestAFreeIDsAwarenessStaysWithinItsSchool(t *testing.T) {
	s := newTestServer(t, Limits{})
	a := dial(t, s.wsURL("free")+"?token="+token(t, "school-a", "ada"), nil)
	b := dial(t, s.wsURL("free")+"?token="+token(t, "school-b", "bea"), nil)
	ea, eb := newEditor(1), newEditor(2)
	for _, x := range []struct {
		c *client
		e *editor
	}{{a, ea}, {b, eb}} {
		if err := x.c.send(yprotocol.EncodeSyncStep1(x.e.doc.EncodeStateVector())); err != nil {
			t.Fatal(err)
		}
		x.c.nextOf(yprotocol.MessageSync, yprotocol.SyncStep2)
	}
	waitFor(t, "both open", func() bool { return s.hub.Stats().Conns == 2 })
	if err := b.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{
		{ClientID: 2, Clock: 1, State: []byte(`{"user":{"name":"Bea of school-b"},"cursor":7}`)}}))); err != nil {
		t.Fatal(err)
	}
	b.nextOf(yprotocol.MessageAwareness, 0) // relayed back to her: handled
	late := dial(t, s.wsURL("free")+"?token="+token(t, "school-a", "cy"), nil)
	if err := a.send(yprotocol.EncodeQueryAwareness()); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client{"open": a, "late": late} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		for {
			_, raw, err := c.ws.Read(ctx)
			if err != nil {
				break
			}
			if strings.Contains(string(raw), "school-b") {
				t.Errorf("school-a's %s tab received school-b's awareness: %q", name, raw)
			}
		}
		cancel()
	}
}
