package yjs_test

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yjs/trace"
)

var (
	b4Once  sync.Once
	b4      *trace.Trace
	b4Err   error
	b4State []byte
)

// b4Trace loads the B4 trace (automerge-paper); YAWP_TRACES overrides the
// directory holding the traces.
func b4Trace(b *testing.B) *trace.Trace {
	b4Once.Do(func() {
		dir := os.Getenv("YAWP_TRACES")
		if dir == "" {
			dir = filepath.Join("..", "..", "..", "shared", "traces")
		}
		b4, b4Err = trace.Load(filepath.Join(dir, "automerge-paper.json.gz"))
		if b4Err == nil {
			var doc *yjs.Doc
			doc, b4Err = trace.ReplaySequential(b4)
			if b4Err == nil {
				b4State = doc.EncodeStateAsUpdate(nil)
			}
		}
	})
	if b4Err != nil {
		b.Fatalf("B4 trace: %v", b4Err)
	}
	return b4
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// reportDocHeap reports the heap a document built by build holds once
// built (steady memory), measured outside the timed loop.
func reportDocHeap(b *testing.B, build func() *yjs.Doc) {
	base := heapAlloc()
	doc := build()
	after := heapAlloc()
	runtime.KeepAlive(doc)
	b.ReportMetric(float64(after-base)/(1<<20), "docMB")
}

// BenchmarkB4Replay replays the B4 trace as local edits, one transaction
// per trace transaction.
func BenchmarkB4Replay(b *testing.B) {
	tr := b4Trace(b)
	b.ResetTimer()
	var doc *yjs.Doc
	for i := 0; i < b.N; i++ {
		var err error
		doc, err = trace.ReplaySequential(tr)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if doc.GetText("text").String() != tr.EndContent {
		b.Fatal("B4 replay does not reach endContent")
	}
	doc = nil
	reportDocHeap(b, func() *yjs.Doc {
		d, _ := trace.ReplaySequential(tr)
		return d
	})
}

// BenchmarkB4Encode encodes the replayed B4 document as one update.
func BenchmarkB4Encode(b *testing.B) {
	tr := b4Trace(b)
	doc, err := trace.ReplaySequential(tr)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var u []byte
	for i := 0; i < b.N; i++ {
		u = doc.EncodeStateAsUpdate(nil)
	}
	b.ReportMetric(float64(len(u)), "bytes")
}

// BenchmarkB4DecodeIntoEmpty applies the full B4 state update to an empty
// document.
func BenchmarkB4DecodeIntoEmpty(b *testing.B) {
	tr := b4Trace(b)
	b.ResetTimer()
	var doc *yjs.Doc
	for i := 0; i < b.N; i++ {
		doc = yjs.NewDoc(yjs.Options{ClientID: 99})
		if err := doc.ApplyUpdate(b4State); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if doc.GetText("text").String() != tr.EndContent {
		b.Fatal("decoded B4 text differs")
	}
	doc = nil
	reportDocHeap(b, func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 99})
		_ = d.ApplyUpdate(b4State)
		return d
	})
}

// BenchmarkB4Merge merges the B4 state update split into the per-1000
// transaction updates of its history (update-level merge, no document).
func BenchmarkB4Merge(b *testing.B) {
	tr := b4Trace(b)
	doc := yjs.NewDoc(yjs.Options{ClientID: 1})
	var parts [][]byte
	var cur []byte
	n := 0
	doc.OnUpdate(func(u []byte) {
		if cur == nil {
			cur = u
		} else {
			m, err := yjs.MergeUpdates(cur, u)
			if err != nil {
				b.Fatal(err)
			}
			cur = m
		}
		n++
		if n%1000 == 0 {
			parts = append(parts, cur)
			cur = nil
		}
	})
	text := doc.GetText("text")
	for _, tx := range tr.Txns[:20000] {
		for _, p := range tx.Patches {
			if p.Del > 0 {
				_ = text.Delete(p.Pos, p.Del)
			}
			if p.Ins != "" {
				_ = text.Insert(p.Pos, p.Ins, nil)
			}
		}
	}
	if cur != nil {
		parts = append(parts, cur)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := yjs.MergeUpdates(parts...); err != nil {
			b.Fatal(err)
		}
	}
}
