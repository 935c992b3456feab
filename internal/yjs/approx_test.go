package yjs

import (
	"runtime"
	"strings"
	"testing"
)

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestApproxBytesTracksTheHeap: a syncer's cache of documents is bounded
// by ApproxBytes, so the estimate must follow what documents really hold,
// for text typed in one go (few structs) and for text split into a
// struct per character (deleting every other one), built locally or
// decoded from an update.
func TestApproxBytesTracksTheHeap(t *testing.T) {
	check := func(what string, build func() *Doc) {
		t.Helper()
		before := liveHeap()
		d := build()
		held := int64(liveHeap()) - int64(before)
		est := d.ApproxBytes()
		t.Logf("%s: %d structs, text %d: heap +%d B, estimate %d B (%.2f)", what, d.StructCount(), d.GetText("content").Len(), held, est, float64(est)/float64(held))
		if float64(est) < 0.6*float64(held) || float64(est) > 1.6*float64(held) {
			t.Errorf("%s: estimate %d B for a document holding %d B", what, est, held)
		}
		runtime.KeepAlive(d)
	}
	const n = 50_000
	split := func() *Doc {
		d := NewDoc(Options{ClientID: 7})
		x := d.GetText("content")
		if err := x.Insert(0, strings.Repeat("ab", n), nil); err != nil {
			t.Fatal(err)
		}
		for i := n - 1; i >= 0; i-- {
			if err := x.Delete(2*i+1, 1); err != nil {
				t.Fatal(err)
			}
		}
		_ = x.String()
		return d
	}
	check("split locally", split)
	up := split().EncodeStateAsUpdate(nil)
	check("split, decoded", func() *Doc {
		d := NewDoc(Options{ClientID: 8})
		if err := d.ApplyUpdate(up); err != nil {
			t.Fatal(err)
		}
		_ = d.GetText("content").String()
		return d
	})
	check("typed", func() *Doc {
		d := NewDoc(Options{ClientID: 7})
		x := d.GetText("content")
		for i := range 4 * n {
			if err := x.Insert(i, "x", nil); err != nil {
				t.Fatal(err)
			}
		}
		_ = x.String()
		return d
	})
}
