package store_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/store/storebench"
)

// BenchmarkSaves measures group-committed saves from 1, 16 and 64
// concurrent writers (p50/p99 reported as metrics). With DATABASE_URL
// pointing at a server with fsync on, the figures are durable commits;
// hack/bench-store.sh sets that up and compares with pgbench.
func BenchmarkSaves(b *testing.B) {
	for _, kind := range []string{storebench.Legacy, storebench.Yjs} {
		for _, w := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", kind, w), func(b *testing.B) {
				dsn := pgharness.ForTest(b)
				_, pool, err := dataplane.Open(b.Context(), dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer pool.Close()
				eng, err := store.Open(b.Context(), store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: "bench/bench",
					Holder: "bench", Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				defer eng.Close()
				b.ResetTimer()
				st, err := storebench.Run(b.Context(), eng, storebench.Workload{Kind: kind, Prefix: "b", Writers: w, Duration: time.Hour, N: max(b.N, w)})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(st.PerSecond(), "saves/s")
				b.ReportMetric(float64(st.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(st.P99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(st.Saves)/float64(max(1, st.Batches)), "saves/commit")
			})
		}
	}
}
