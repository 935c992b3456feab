// Package storebench measures the store's save throughput and latency
// (legacy saves and Yjs updates from concurrent writers, each on its own
// document) and PostgreSQL's single-row commit rate with pgbench, for
// hack/bench-store.sh and the store's Go benchmarks.
package storebench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Stats of one run.
type Stats struct {
	Kind    string
	Writers int
	Saves   int
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	Batches int64
}

// PerSecond is the save rate.
func (s Stats) PerSecond() float64 { return float64(s.Saves) / s.Elapsed.Seconds() }

const benchTenant = "bench"

// Kinds of workload.
const (
	Legacy = "legacy-save"
	Yjs    = "yjs-update"
)

// Run makes writers goroutines save to their own documents for d (or, if
// n > 0, n saves in total) through eng and measures each save's latency.
// Documents are named prefix-<writer>; tenant "bench".
func Run(ctx context.Context, eng *store.Engine, kind, prefix string, writers int, d time.Duration, n int) (Stats, error) {
	docs := make([]string, writers)
	for w := range writers {
		docs[w] = fmt.Sprintf("%s-%d", prefix, w)
		if _, err := eng.Submit(ctx, store.Request{Kind: store.KindCreate, Doc: docs[w], Tenant: benchTenant, User: benchTenant, Content: ""}); err != nil {
			return Stats{}, err
		}
	}
	b0 := eng.Batches.Load()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	per := 0
	if n > 0 {
		per = (n + writers - 1) / writers
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			client := yjs.NewDoc(yjs.Options{ClientID: uint64(1000 + w)})
			var upd []byte
			client.OnUpdate(func(u []byte) { upd = u })
			txt := client.GetText(contract.YjsTextName)
			content := ""
			for i := 0; ; i++ {
				if per > 0 && i >= per || per == 0 && time.Now().After(deadline) {
					break
				}
				req := store.Request{Doc: docs[w], Tenant: benchTenant, User: benchTenant}
				if kind == Yjs {
					if err := txt.Insert(txt.Len(), "x", nil); err != nil {
						firstErr = err
						return
					}
					req.Kind, req.Update = store.KindYjs, upd
				} else {
					content += "x"
					req.Kind, req.Content, req.IdempotencyKey = store.KindSave, content, fmt.Sprintf("%s-%d", docs[w], i)
				}
				t0 := time.Now()
				if _, err := eng.Submit(ctx, req); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st := Stats{Kind: kind, Writers: writers, Saves: len(lat), Elapsed: time.Since(start), Batches: eng.Batches.Load() - b0}
	if firstErr != nil {
		return st, firstErr
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		st.P50 = lat[len(lat)/2]
		st.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return st, nil
}

// PGBench runs pgbench's single-row commit workload (one INSERT per
// transaction, autocommit) with clients connections for d on dsn.
func PGBench(ctx context.Context, pgbench, dsn string, clients int, d time.Duration) (float64, error) {
	dir, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "insert.sql")
	if err := os.WriteFile(script, []byte("INSERT INTO pgbench_single_row (v) VALUES ('x');\n"), 0o644); err != nil {
		return 0, err
	}
	setup := exec.CommandContext(ctx, "psql", dsn, "-qc", "CREATE TABLE IF NOT EXISTS pgbench_single_row (id bigserial PRIMARY KEY, v text)")
	if out, err := setup.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("psql: %v: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-f", script, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 8)),
		"-T", strconv.Itoa(max(1, int(d.Seconds()))), dsn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v: %s", err, out)
	}
	re := regexp.MustCompile(`tps = ([0-9.]+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return strconv.ParseFloat(m[1], 64)
		}
	}
	return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
}
