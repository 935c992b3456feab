package syncws

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// BenchmarkRelay: one writer, several readers in one room, MemoryBackend;
// an op is one update applied and relayed to every reader.
func BenchmarkRelay(b *testing.B) {
	for _, readers := range []int{1, 8} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			s := newTestServer(b, Limits{UpdatesPerSecond: 1e9, UpdateBurst: 1e9, MaxConnsPerUser: 1000, SendQueue: 1 << 16})
			tok := token(b, "school-a", "bench")
			w := dial(b, s.wsURL("bench")+"?token="+tok, nil)
			var wg sync.WaitGroup
			for i := 0; i < readers; i++ {
				r := dial(b, s.wsURL("bench")+"?token="+tok, nil)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < b.N; {
						m, err := r.next()
						if err != nil {
							b.Error(err)
							return
						}
						if m.Type == yprotocol.MessageSync && m.Sync == yprotocol.SyncUpdate {
							n++
						}
					}
				}()
			}
			waitFor(b, "readers registered", func() bool { return s.hub.Stats().Conns == readers+1 })
			e := newEditor(1)
			ups := make([][]byte, b.N)
			for i := range ups {
				ups[i] = yprotocol.EncodeUpdate(e.insert(b, "x"))
			}
			b.ResetTimer()
			for _, u := range ups {
				if err := w.send(u); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}

// BenchmarkIdleConnections: what an open, idle connection costs the
// process: heap in use and goroutine stacks after a collection, per
// connection, each to a document of its own (a student's open tab). The
// clients run in the same process, so the figure holds both ends: the
// test client's own share (its read buffer, its reader) is in it too.
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 200
	s := newTestServer(b, Limits{MaxConnsPerUser: 1 << 20})
	tok := token(b, "school-a", "bench")
	var perConn, goroutines float64
	for i := 0; i < b.N; i++ {
		before := settledMemory()
		g0 := runtime.NumGoroutine()
		cs := make([]*client, conns)
		for j := range cs {
			cs[j] = dial(b, s.wsURL(fmt.Sprintf("idle-%d-%d", i, j))+"?token="+tok, nil)
		}
		waitFor(b, "connections registered", func() bool { return s.hub.Stats().Conns == conns })
		after := settledMemory()
		perConn = float64(after-before) / conns
		goroutines = float64(runtime.NumGoroutine()-g0) / conns
		for _, c := range cs {
			_ = c.ws.CloseNow()
		}
		waitFor(b, "connections gone", func() bool { return s.hub.Stats().Conns == 0 })
	}
	b.ReportMetric(perConn, "B/conn")
	b.ReportMetric(goroutines, "goroutines/conn")
}

// settledMemory is the heap in use plus the goroutine stacks, after a
// collection.
func settledMemory() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
