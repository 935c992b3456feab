package syncws

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestOversizedAwarenessWithALongTypeVarintIsRefused: "an awareness
// message over 64 KiB" is refused with 4413 (docs/api.md), however its
// type is encoded: the type is a varuint, and the decoder (like lib0)
// takes 0x81 0x00 for 1, awareness. A check on the first byte alone let
// such a message of 1 MiB through, relayed to every connection.
func TestOversizedAwarenessWithALongTypeVarintIsRefused(t *testing.T) {
	s := newTestServer(t, Limits{})
	const doc, client = "aw-varint", 31337
	bob := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
	bobR := readInBackground(bob)
	mallory := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "mallory"), nil)

	state := `"` + strings.Repeat("x", 1<<20) + `"`
	plain := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: client, Clock: 1, State: []byte(state)}}))
	if plain[0] != byte(yprotocol.MessageAwareness) {
		t.Fatalf("unexpected encoding %x", plain[:4])
	}
	// The same message, its type written as a two-byte varuint (1).
	long := append([]byte{0x81, 0x00}, plain[1:]...)
	if m, err := yprotocol.Decode(long); err != nil || m.Type != yprotocol.MessageAwareness {
		t.Fatalf("decode: %v %v", m.Type, err)
	}
	if err := mallory.send(long); err != nil {
		t.Fatal(err)
	}
	got := bobR.awarenessOf(client, time.Second)
	for _, st := range got {
		t.Errorf("bob was relayed an awareness state of %d bytes, in a %d-byte awareness message (the limit is %d)", len(st), len(long), 64<<10)
	}
	done := make(chan int, 1)
	go func() {
		for {
			_, _, err := mallory.ws.Read(context.Background())
			if err != nil {
				done <- int(websocket.CloseStatus(err))
				return
			}
		}
	}()
	select {
	case code := <-done:
		if code != contract.CloseTooLarge {
			t.Errorf("closed with %d, want %d", code, contract.CloseTooLarge)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("a %d-byte awareness message was not refused (want 4413)", len(long))
	}
}
