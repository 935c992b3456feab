package syncws

import (
	"fmt"
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
