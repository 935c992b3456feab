package store

import (
	"strconv"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestAnnouncedStateVectorIsBounded: what a sync step 1 leaves in the
// ledger names at most maxRecordedSV clients, never one at clock 0, and
// always those whose operations the server lacks (the evidence of
// saved-locally-not-synced).
func TestAnnouncedStateVectorIsBounded(t *testing.T) {
	sv := yjs.StateVector{}
	for c := uint64(1); c <= 3000; c++ {
		sv[c] = 5
	}
	for c := uint64(5000); c < 9000; c++ {
		sv[c] = 0
	}
	missing := map[string][2]uint64{"2999": {3, 5}, "3000": {0, 5}}
	got := announcedSV(sv, missing)
	if len(got) != maxRecordedSV {
		t.Fatalf("%d entries recorded, want %d", len(got), maxRecordedSV)
	}
	for _, c := range []string{"2999", "3000", "1", "2"} {
		if got[c] != 5 {
			t.Errorf("client %s: %d, want 5 (missing ones first, then in client order)", c, got[c])
		}
	}
	for c, k := range got {
		if id, _ := strconv.ParseUint(c, 10, 64); id >= 5000 || k == 0 {
			t.Errorf("client %s at clock %d recorded", c, k)
		}
	}
	if got := announcedSV(yjs.StateVector{7: 0, 8: 2}, nil); len(got) != 1 || got["8"] != 2 {
		t.Errorf("small state vector: %v", got)
	}
}
