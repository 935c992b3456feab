package store

import (
	"math/rand/v2"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// encodeSV writes a state vector as Yjs does (a count, then client and
// clock pairs, each an unsigned LEB128 varint).
func encodeSV(sv yjs.StateVector) []byte {
	put := func(b []byte, v uint64) []byte {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		return append(b, byte(v))
	}
	b := put(nil, uint64(len(sv)))
	for c, k := range sv {
		b = put(put(b, c), k)
	}
	return b
}

// TestReachesBeyondAgreesWithHistoryReplaced: the gateway's allocation-
// free check of every relayed update (on which HistoryReplaced is built)
// answers as comparing both state vectors decoded does, on
// random state vectors that share clients, lack some, have clocks of 0,
// and client IDs of every varint width; a malformed encoding reports
// false.
func TestReachesBeyondAgreesWithHistoryReplaced(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	clients := []uint64{1, 127, 128, 300, 1 << 21, GenesisClientID, 1<<53 - 1}
	random := func() yjs.StateVector {
		sv := yjs.StateVector{}
		for _, c := range clients {
			if r.IntN(3) > 0 {
				sv[c] = uint64(r.IntN(4)) * uint64(1+r.IntN(200))
			}
		}
		return sv
	}
	replaced := 0
	for i := range 20000 {
		earlier, now := random(), random()
		if i%4 == 0 { // now grown from earlier: never replaced
			now = yjs.StateVector{}
			for c, k := range earlier {
				now[c] = k + uint64(r.IntN(3))
			}
		}
		// The oracle: both decoded, compared client by client.
		_, want := beyond(earlier, now)
		if got := ReachesBeyond(earlier, encodeSV(now)); got != want {
			t.Fatalf("earlier %v, now %v: ReachesBeyond %v, decoded comparison %v", earlier, now, got, want)
		}
		if want {
			replaced++
		}
	}
	if replaced == 0 || replaced == 20000 {
		t.Fatalf("%d of 20000 cases replaced: the cases do not cover both answers", replaced)
	}
	for _, bad := range [][]byte{{}, {0x80}, {2, 1}, {1, 0x80, 0x80}} {
		if ReachesBeyond(yjs.StateVector{5: 1}, bad) {
			t.Fatalf("malformed % x reported as replaced", bad)
		}
	}
}
