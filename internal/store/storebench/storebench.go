// Package storebench measures the store's save throughput and latency
// (legacy saves and Yjs updates from concurrent writers, each on its own
// document) and PostgreSQL's single-row commit rate with pgbench, for
// hack/bench-store.sh and the store's Go benchmarks.
package storebench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
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
	// TextBytes is the documents' mean text length when the run ended.
	TextBytes int
}

// PerSecond is the save rate.
func (s Stats) PerSecond() float64 { return float64(s.Saves) / s.Elapsed.Seconds() }

const benchTenant = "bench"

// Kinds of workload.
const (
	Legacy = "legacy-save"
	Yjs    = "yjs-update"
)

// Workload is one measurement: Writers goroutines, each saving to its own
// document (named Prefix-<writer>, tenant "bench") for Duration, or, if
// N > 0, N saves in total.
type Workload struct {
	Kind     string
	Prefix   string
	Writers  int
	Duration time.Duration
	N        int
	// DocBytes is each document's text when it is created: prose of
	// about this many bytes (0: empty).
	DocBytes int
}

// Prose returns about n bytes of English-like text, the same for the same
// seed: words from a fixed list in sentences and paragraphs, so it
// compresses about as real prose does.
func Prose(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var b strings.Builder
	b.Grow(n + 16)
	for words := 0; b.Len() < n; words++ {
		w := proseWords[r.IntN(len(proseWords))]
		switch {
		case words == 0 || b.String()[b.Len()-1] == '\n':
			w = strings.ToUpper(w[:1]) + w[1:]
		default:
			b.WriteByte(' ')
		}
		b.WriteString(w)
		// About 12 words a sentence, 150 a paragraph.
		switch x := r.IntN(150); {
		case x == 0:
			b.WriteString(".\n\n")
			words = -1
		case x < 13:
			b.WriteString(".")
			b.WriteByte(' ')
			w := proseWords[r.IntN(len(proseWords))]
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		case x < 23:
			b.WriteString(",")
		}
	}
	return b.String()
}

var proseWords = strings.Fields(`the of and to a in that is was he for it with as his on be at by
	had not are but from or have an they which one you were her all she there would their we him been
	has when who will more no if out so said what up its about into than them can only other new some
	could time these two may then do first any my now such like our over man me even most made after
	also did many before must through back years where much your way well down should because each
	just those people how too little state good very make world still own see men work long get here
	between both life being under never day same another know while last might us great old year off
	come since against go came right used take three photosynthesis river village teacher history
	experiment argument evidence chapter character summary energy planet island government poem`)

// typist makes a writer's edits the way a student types: mostly at the
// cursor, which now and then jumps to another place in the text.
type typist struct {
	r      *rand.Rand
	cursor int
}

// next returns where the next character goes in a text of n characters
// and the character.
func (t *typist) next(n int) (int, string) {
	if t.r.IntN(20) == 0 || t.cursor > n {
		t.cursor = t.r.IntN(n + 1)
	}
	pos := t.cursor
	t.cursor++
	return pos, string("etaoin shrdlu"[t.r.IntN(13)])
}

// Run makes w.Writers goroutines save to their own documents through eng
// and measures each save's latency. Every save types one character into
// its document: a legacy save sends the whole text (with an idempotency
// key), a Yjs update the client's one-character update.
func Run(ctx context.Context, eng *store.Engine, w Workload) (Stats, error) {
	kind, writers, d, n := w.Kind, w.Writers, w.Duration, w.N
	docs := make([]string, writers)
	texts := make([]string, writers)
	clients := make([]*yjs.Doc, writers)
	for i := range writers {
		docs[i] = fmt.Sprintf("%s-%d", w.Prefix, i)
		if w.DocBytes > 0 {
			texts[i] = Prose(w.DocBytes, uint64(i))
		}
		if _, err := eng.Submit(ctx, store.Request{Kind: store.KindCreate, Doc: docs[i], Tenant: benchTenant, User: benchTenant, Content: texts[i]}); err != nil {
			return Stats{}, err
		}
		clients[i] = yjs.NewDoc(yjs.Options{ClientID: uint64(1000 + i)})
		if kind == Yjs {
			// The client starts from the server's state, as an editor
			// opening the document does.
			res, err := eng.Submit(ctx, store.Request{Kind: store.KindSync1, Doc: docs[i], Tenant: benchTenant, User: benchTenant, StateVector: []byte{0}})
			if err != nil {
				return Stats{}, err
			}
			if err := clients[i].ApplyUpdate(res.Update); err != nil {
				return Stats{}, err
			}
		}
	}
	b0 := eng.Batches.Load()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	textBytes := 0
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
			client := clients[w]
			txt := client.GetText(contract.YjsTextName)
			var upd []byte
			client.OnUpdate(func(u []byte) { upd = u })
			content := texts[w]
			ty := typist{r: rand.New(rand.NewPCG(uint64(w), 7)), cursor: len(content)}
			for i := 0; ; i++ {
				if per > 0 && i >= per || per == 0 && time.Now().After(deadline) {
					break
				}
				req := store.Request{Doc: docs[w], Tenant: benchTenant, User: benchTenant}
				if kind == Yjs {
					pos, ch := ty.next(txt.Len())
					if err := txt.Insert(pos, ch, nil); err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
						return
					}
					req.Kind, req.Update = store.KindYjs, upd
				} else {
					pos, ch := ty.next(len(content))
					content = content[:pos] + ch + content[pos:]
					req.Kind, req.Content, req.IdempotencyKey = store.KindSave, content, fmt.Sprintf("%s-%d", docs[w], i)
				}
				t0 := time.Now()
				if _, err := eng.Submit(ctx, req); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			final := len(content)
			if kind == Yjs {
				final = len(txt.String())
			}
			mu.Lock()
			textBytes += final
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st := Stats{Kind: kind, Writers: writers, Saves: len(lat), Elapsed: time.Since(start), Batches: eng.Batches.Load() - b0,
		TextBytes: textBytes / writers}
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

// PGBenchResult is one pgbench run.
type PGBenchResult struct {
	TPS  float64
	Txns int64
	// ClientCPU is the CPU time pgbench itself used.
	ClientCPU time.Duration
}

// PGBench runs pgbench's single-row commit workload (one INSERT per
// transaction, autocommit) with clients connections for d on dsn.
func PGBench(ctx context.Context, pgbench, dsn string, clients int, d time.Duration) (PGBenchResult, error) {
	setup := exec.CommandContext(ctx, "psql", dsn, "-qc", "CREATE TABLE IF NOT EXISTS pgbench_single_row (id bigserial PRIMARY KEY, v text)")
	if out, err := setup.CombinedOutput(); err != nil {
		return PGBenchResult{}, fmt.Errorf("psql: %v: %s", err, out)
	}
	return runPGBench(ctx, pgbench, dsn, "INSERT INTO pgbench_single_row (v) VALUES ('x');\n", clients, d)
}

// PGBenchRewrite runs what the write-through store itself does for a
// save, alone: each client has a row with docBytes of prose (the text a
// store document starts with, compressed as the documents table
// compresses it) and rewrites it per transaction with one character
// typed at a random place. It is PostgreSQL's commit rate for a
// document-sized row, the peer of saves to documents of that size.
func PGBenchRewrite(ctx context.Context, pgbench, dsn string, clients, docBytes int, d time.Duration) (PGBenchResult, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return PGBenchResult{}, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS pgbench_doc_rows;
		CREATE TABLE pgbench_doc_rows (id int PRIMARY KEY, v text NOT NULL);
		DO $$ BEGIN
			EXECUTE 'ALTER TABLE pgbench_doc_rows ALTER COLUMN v SET COMPRESSION lz4';
		EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL;
		END $$`); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench rows: %w", err)
	}
	ids, texts := make([]int32, clients), make([]string, clients)
	for i := range clients {
		ids[i], texts[i] = int32(i), Prose(docBytes, uint64(i))
	}
	if _, err := conn.Exec(ctx, `INSERT INTO pgbench_doc_rows SELECT * FROM unnest($1::int[], $2::text[])`, ids, texts); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench rows: %w", err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE pgbench_doc_rows`); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench rows: %w", err)
	}
	script := "\\set pos random(1, " + strconv.Itoa(max(1, docBytes)) + ")\n" +
		"UPDATE pgbench_doc_rows SET v = overlay(v placing 'e' from :pos for 0) WHERE id = :client_id;\n"
	return runPGBench(ctx, pgbench, dsn, script, clients, d)
}

// runPGBench runs script with clients connections for d.
func runPGBench(ctx context.Context, pgbench, dsn, script string, clients int, d time.Duration) (PGBenchResult, error) {
	dir, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return PGBenchResult{}, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return PGBenchResult{}, err
	}
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-f", file, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 8)),
		"-T", strconv.Itoa(max(1, int(d.Seconds()))), dsn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench: %v: %s", err, out)
	}
	r := PGBenchResult{ClientCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	tpsRe := regexp.MustCompile(`tps = ([0-9.]+)`)
	txnRe := regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := txnRe.FindStringSubmatch(sc.Text()); m != nil {
			r.Txns, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := tpsRe.FindStringSubmatch(sc.Text()); m != nil && r.TPS == 0 {
			if r.TPS, err = strconv.ParseFloat(m[1], 64); err != nil {
				return r, err
			}
		}
	}
	if r.TPS == 0 {
		return r, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return r, nil
}

// PGBenchSaveRows runs, per transaction, the rows one save writes, with
// nothing else: PostgreSQL's commit rate for a save done as a
// write-through store would do it, one transaction per save, without the
// store (no guards, no group, no application). Each client rewrites its
// own document row with one character typed (as PGBenchRewrite), and in
// the same statement inserts the save's revision and its ledger entry;
// with yjs, also the update's log row (what a Yjs update writes). The
// tables are copies of the store's (LIKE ... INCLUDING ALL: columns,
// compression, checks, indexes), and the values are shaped as the
// store's: a revision kept as a splice (legacy) or by reference to the
// log (Yjs), a ledger body encoded as the store encodes a save's entry.
// One round trip and one commit per save: the fewest PostgreSQL allows.
// It is the peer that says what grouping adds: at one writer there is
// nothing to group, and the store can at best approach it.
func PGBenchSaveRows(ctx context.Context, pgbench, dsn string, clients, docBytes int, yjsUpdate bool, d time.Duration) (PGBenchResult, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return PGBenchResult{}, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS pgbench_save_docs, pgbench_save_revisions, pgbench_save_ledger, pgbench_save_updates;
		CREATE TABLE pgbench_save_docs (LIKE documents INCLUDING ALL);
		CREATE TABLE pgbench_save_revisions (LIKE document_revisions INCLUDING ALL);
		CREATE TABLE pgbench_save_ledger (LIKE save_ledger INCLUDING ALL);
		CREATE TABLE pgbench_save_updates (LIKE yjs_updates INCLUDING ALL)`); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench save rows: %w", err)
	}
	ids, texts := make([]string, clients), make([]string, clients)
	for i := range clients {
		ids[i], texts[i] = "pgbench-"+strconv.Itoa(i), Prose(docBytes, uint64(i)) // :client_id counts from 0
	}
	if _, err := conn.Exec(ctx, `INSERT INTO pgbench_save_docs (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT d, $3, $3, '', c, 1, 0, now(), now() FROM unnest($1::text[], $2::text[]) AS x(d, c)`, ids, texts, benchTenant); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench save rows: %w", err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE pgbench_save_docs`); err != nil {
		return PGBenchResult{}, fmt.Errorf("pgbench save rows: %w", err)
	}
	// A save's entry as the store writes one (its fields and their sizes).
	sha := strings.Repeat("5e", 32)
	e := ledger.Entry{Doc: ids[0], Kind: "save", At: time.Now().UTC(), Tenant: benchTenant, User: benchTenant, Stage: "Legacy",
		Cohort: "bench", Epoch: 1, ShardEpoch: 1, Protocol: "legacy", RequestID: "req-0123456789abcdef", IdempotencyKey: ids[0] + "-12345",
		BaseRevision: 1234, Revision: 1235, ContentSHA256: sha, LegacySHA256: sha, Outcome: "applied"}
	rev := `INSERT INTO pgbench_save_revisions (doc_id, revision, title, saved_by, saved_at, stage, epoch, shard_epoch, content_sha256,
		  splice_head, splice_tail, splice_text, idem_key, idem_result)
		  SELECT doc_id, revision, '', owner, now(), 'Legacy', 1, 1, '` + sha + `', :pos, 0, 'e', doc_id || '-' || revision, '' FROM d`
	if yjsUpdate {
		e.Kind, e.Protocol, e.IdempotencyKey, e.Stage = "yjs-update", "sync", "", "DualWrite"
		e.Clients, e.UpdateSHA256, e.YjsSeq = []uint64{1001}, sha, 1235
		rev = `INSERT INTO pgbench_save_revisions (doc_id, revision, title, saved_by, saved_at, stage, epoch, shard_epoch, content_sha256, yjs_seq)
		  SELECT doc_id, revision, '', owner, now(), 'DualWrite', 1, 1, '` + sha + `', revision FROM d`
	}
	body := strings.ReplaceAll(string(e.Canonical()), "'", "''")
	hash := `'\x` + sha + `'::bytea`
	// One statement, on one line: pgbench reads a statement per line.
	parts := []string{
		`WITH d AS (UPDATE pgbench_save_docs SET content = overlay(content placing 'e' from :pos for 0), revision = revision + 1, updated_at = now()`,
		`WHERE doc_id = 'pgbench-' || :client_id RETURNING doc_id, tenant, owner, revision),`,
		`r AS (` + strings.Join(strings.Fields(rev), " ") + `),`,
	}
	if yjsUpdate {
		parts = append(parts, `u AS (INSERT INTO pgbench_save_updates (doc_id, seq, generation, update, origin, shard_epoch, at)`,
			`SELECT doc_id, revision, 1, '\x0101e907' || int4send(:pos) || '\x0401740165'::bytea, 'sync', 1, now() FROM d),`)
	}
	parts = append(parts, `l AS (INSERT INTO pgbench_save_ledger (doc_id, seq, kind, tenant, at, body, prev_hash, hash)`,
		`SELECT doc_id, revision, '`+e.Kind+`', tenant, now(), '`+body+`', `+hash+`, `+hash+` FROM d)`,
		`SELECT 1;`)
	script := "\\set pos random(1, " + strconv.Itoa(max(1, docBytes)) + ")\n" + strings.Join(parts, " ") + "\n"
	r, err := runPGBench(ctx, pgbench, dsn, script, clients, d)
	if err != nil {
		return r, err
	}
	// Every transaction wrote its rows (a save that matched no document
	// would commit nothing, and fast).
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pgbench_save_ledger`).Scan(&n); err != nil {
		return r, err
	}
	if n < r.Txns {
		return r, fmt.Errorf("pgbench save rows: %d transactions wrote %d ledger entries", r.Txns, n)
	}
	return r, nil
}
