package gateway

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestOversizedStateVectorIsRefusedBeforeItIsDecoded: docs/api.md
// bounds a sync step 1's state vector to 1 MiB (close 4413), and the
// bound is checked before the state vector is decoded. Before, the
// gateway checked it only after yjs.DecodeStateVector had preallocated a
// map of as many clients as its count names (up to half its length): a 4
// MiB step 1 naming two million clients cost about 70 MiB, and one user's
// 32 connections ~2 GiB of the gateway's memory.
func TestOversizedStateVectorIsRefusedBeforeItIsDecoded(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("svalloc", 0)
	tok := token(t, "school-a", "mallory", time.Hour, false)
	const size = 4 << 20
	// Baseline: one client (1:1) followed by zero bytes, which the
	// decoder does not read.
	one := append([]byte{1, 1, 1}, make([]byte, size-3)...)
	// The same size, naming as many clients as the bound lets it.
	n := yprotocol.AppendVarUint(nil, uint64((size-4)/2))
	many := append(n, make([]byte, size-len(n))...)
	measure := func(sv []byte) (uint64, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, f.wsBase(0)+"/"+doc+"?token="+tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ws.CloseNow() }()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeSyncStep1(sv)); err != nil {
			t.Fatal(err)
		}
		var code int
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				code = int(websocket.CloseStatus(err))
				break
			}
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, code
	}
	base, baseCode := measure(one)
	got, code := measure(many)
	t.Logf("one client: close %d, %d MiB allocated; %d clients: close %d, %d MiB allocated", baseCode, base>>20, (size-4)/2, code, got>>20)
	if baseCode != contract.CloseTooLarge || code != contract.CloseTooLarge {
		t.Fatalf("closes %d and %d, want %d for a state vector over 1 MiB", baseCode, code, contract.CloseTooLarge)
	}
	if got > base+16<<20 {
		t.Errorf("a %d-byte state vector naming %d clients made the gateway allocate %d MiB before refusing it as over 1 MiB; one of the same size naming one client: %d MiB",
			len(many), (size-4)/2, got>>20, base>>20)
	}
}
