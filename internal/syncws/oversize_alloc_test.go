package syncws

import (
	"runtime"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// allocWhileTaking returns the bytes the process allocated while the hub took
// msg on a fresh connection and closed it, and the close code.
func allocWhileTaking(t *testing.T, s *testServer, tok string, msg []byte) (uint64, int) {
	t.Helper()
	c := dial(t, s.wsURL("alloc-doc")+"?token="+tok, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := c.send(msg); err != nil {
		t.Fatal(err)
	}
	code, _ := c.closeStatus()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, int(code)
}

// TestOversizedAwarenessIsRefusedBeforeItIsParsed: an awareness
// message over 64 KiB is refused (4413) before it is parsed. Before, it
// was parsed first, and ParseAwareness preallocated the entries its count
// names (up to a third of its length, 40 bytes each): a 4 MiB message
// naming 1.4 million entries and holding none made the hub allocate ~13
// times its size, and a user's 32 connections ~1.7 GiB of the gateway.
func TestOversizedAwarenessIsRefusedBeforeItIsParsed(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok := token(t, "school-a", "mallory")
	const size = 4 << 20
	// Baseline: one entry, a valid 4 MiB state.
	state := `"` + strings.Repeat("x", size-64) + `"`
	plain := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: 1, Clock: 1, State: []byte(state)}}))
	// The same size, naming as many entries as the bound lets it.
	payload := yprotocol.AppendVarUint(nil, uint64(len(plain)/3-8))
	payload = append(payload, make([]byte, len(plain)-len(payload)-8)...)
	many := yprotocol.EncodeAwareness(payload)
	base, baseCode := allocWhileTaking(t, s, tok, plain)
	got, code := allocWhileTaking(t, s, tok, many)
	t.Logf("one entry: %d bytes, close %d, %d MiB allocated; a count of %d: %d bytes, close %d, %d MiB allocated",
		len(plain), baseCode, base>>20, len(plain)/3-8, len(many), code, got>>20)
	if got > base+16<<20 {
		t.Errorf("an awareness message of %d bytes naming %d entries made the hub allocate %d MiB before refusing it (close %d); the same size naming one entry: %d MiB",
			len(many), len(plain)/3-8, got>>20, code, base>>20)
	}
}
