package store

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// Config configures an Engine.
type Config struct {
	Pool *pgxpool.Pool
	// DSN opens the dedicated connection that holds the shard's advisory
	// lock for the engine's lifetime.
	DSN     string
	Shard   int
	Shards  int
	Rollout string
	// Holder names this process in shard_leases (the pod name).
	Holder string
	// CacheDocs bounds the documents kept in memory (default 1024), and
	// CacheBytes their estimated memory (default: a third of the
	// process's Go memory limit when one is set, else 512 MiB).
	CacheDocs  int
	CacheBytes int64
	// MaxBatch bounds a group commit (default 256).
	MaxBatch int
	// Lanes is the number of group-commit lanes (default 2). Documents
	// are spread over lanes by a hash of their ID; each lane commits its
	// groups one after another on its own connection, lanes commit
	// concurrently. A document is only ever written by its lane, so its
	// memory state and ledger chain have one writer. One lane leaves a
	// CPU idle while its group is built, sent and synced; two let one
	// group run in PostgreSQL while the other is built or syncs its WAL.
	// make bench-store on 2 CPUs (fsync on): two lanes gave 0.9-1.2x one
	// lane's saves/s at 16 writers, 1.2x at 64 and 1.3-1.5x at 256; three
	// or four lanes split groups so small their fixed cost won.
	Lanes int
	// GatherDelay is how long a group waits for more requests while it
	// has fewer than the documents of the previous group and of the
	// requests already queued (default 500µs; negative: never).
	GatherDelay time.Duration
	// SnapshotEvery compacts a document's Yjs log into a snapshot after
	// at least this many updates (default 64), and at most 16 times as
	// many: in between, once the updates since the last snapshot hold a
	// quarter of its bytes (snapshotDue).
	SnapshotEvery int
	// GroupTimeout bounds one group commit, its retries included
	// (default 30 s).
	GroupTimeout time.Duration
	// LockTimeout bounds how long a group waits for a row lock (default
	// 5 s). Only a transaction outside the gateway holds a document's row
	// (the lanes never share a document), and a group that waited for it
	// would hold up every document of its lane: past this, the group's
	// requests run one by one, each waiting briefly, and the one whose
	// row stays locked is refused (503, retry).
	LockTimeout time.Duration
	// Clock is the syncer's clock, which stamps ledger entries and
	// revisions (default time.Now). Nothing orders entries by it against
	// the database's clock: the two may disagree.
	Clock  func() time.Time
	Logger *slog.Logger
}

// Engine applies the saves of one shard. Safe for concurrent use.
type Engine struct {
	cfg  Config
	pool *pgxpool.Pool
	// lanePool holds the lanes' connections, one per lane, with
	// laneSettings for their session.
	lanePool *pgxpool.Pool
	log      *slog.Logger
	epoch    int64

	lockConn *pgx.Conn
	lockMu   sync.Mutex
	lanes    []*lane
	stop     chan struct{}
	// closeMu orders queueing a request with Close: a request is queued
	// under the read lock only while stop is open, and Close closes stop
	// under the write lock. Every request queued is then queued before
	// stop closes and answered by its lane (it drains its queue when it
	// stops); queued after the lane's last drain, a request was never
	// answered, and its caller waited until its context ended.
	closeMu  sync.RWMutex
	done     sync.WaitGroup
	fenceOne sync.Once
	// isFenced is fenceCtx ended, read lock-free on every Submit.
	isFenced atomic.Bool
	// fenceReason is why (a string), set once with isFenced.
	fenceReason atomic.Value
	// fenceCtx ends when the engine is fenced (Fenced is its Done): group
	// commits, and the waits that make sure of their outcome, stop then
	// instead of running to their timeouts (their saves are refused,
	// never acknowledged), so a syncer whose database went away exits at
	// once and its pod restarts.
	fenceCtx    context.Context
	fenceCancel context.CancelFunc

	cache *lru
	// tenants seen committed in the tenants table.
	tenantsMu sync.Mutex
	tenants   map[string]struct{}
	// stageCache: each tenant's stage as the last committed group saw it;
	// the one-round-trip path guards on it.
	stageCache map[string]dataplane.SaveStage

	// written: documents committed since the last DrainWritten, for
	// incremental verification; writtenLost once it overflowed.
	writtenMu   sync.Mutex
	written     map[string]struct{}
	writtenLost bool

	// Stats.
	Batches atomic.Int64
	Applied atomic.Int64
	// Where group commits spend their time, summed over all groups:
	// waiting for more requests to join, building the group in memory
	// (on the two-round-trip path, with its first round trip), and
	// sending its writes until PostgreSQL answered the commit.
	GatherNanos, BuildNanos, CommitNanos atomic.Int64
}

// DefaultCacheBytes is the cache's byte bound under a memory limit
// (math.MaxInt64 or 0: none): a third of it, leaving the rest for groups
// in flight, the garbage collector's headroom and what is not heap.
func DefaultCacheBytes(memoryLimit int64) int64 {
	if memoryLimit <= 0 || memoryLimit == math.MaxInt64 {
		return 512 << 20
	}
	return max(memoryLimit/3, 16<<20)
}

// gatherBackoff is how many groups form without waiting after a wait
// that no request joined.
const gatherBackoff = 8

// maxWritten bounds the documents remembered between two DrainWritten.
const maxWritten = 100_000

func (e *Engine) noteWritten(docs map[string]*docState) {
	e.writtenMu.Lock()
	defer e.writtenMu.Unlock()
	if e.written == nil {
		e.written = map[string]struct{}{}
	}
	for id := range docs {
		if len(e.written) >= maxWritten {
			e.writtenLost = true
			return
		}
		e.written[id] = struct{}{}
	}
}

// DrainWritten returns the documents committed since the last call; lost
// reports that more were written than it remembers (verify everything).
func (e *Engine) DrainWritten() (docs []string, lost bool) {
	e.writtenMu.Lock()
	defer e.writtenMu.Unlock()
	for id := range e.written {
		docs = append(docs, id)
	}
	clear(e.written)
	lost, e.writtenLost = e.writtenLost, false
	return docs, lost
}

// lane is one group-commit loop. mu: a group holds it exclusively while
// it applies and commits; reads of the lane's documents share it, so they
// never see uncommitted state.
type lane struct {
	mu   sync.RWMutex
	reqs chan *op
}

func (e *Engine) laneOf(doc string) *lane { return e.lanes[LaneIndex(doc, len(e.lanes))] }

// LaneIndex is the group-commit lane, of lanes, that commits doc's saves.
func LaneIndex(doc string, lanes int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte("lane\x00"))
	_, _ = h.Write([]byte(doc))
	return int(h.Sum32() % uint32(lanes))
}

type op struct {
	req  Request
	res  Result
	err  error
	done chan struct{}
	// ready, if set, is told when the op is answered (SubmitEach, which
	// knows it as its request idx).
	ready chan<- *op
	idx   int
}

// finish answers o: res and err are set.
func (o *op) finish() {
	close(o.done)
	if o.ready != nil {
		o.ready <- o
	}
}

// lockKey is the advisory lock of a shard: "yawp" in the high bytes.
func lockKey(shard int) int64 { return 0x7961_7770_0000_0000 | int64(shard) }

// Open takes the shard: it waits for the shard's advisory lock on a
// dedicated connection, increments the shard epoch and starts the group
// commit loop.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.CacheDocs <= 0 {
		cfg.CacheDocs = 1024
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes(debug.SetMemoryLimit(-1))
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.GatherDelay == 0 {
		cfg.GatherDelay = 500 * time.Microsecond
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 2
	}
	if cfg.GroupTimeout <= 0 {
		cfg.GroupTimeout = 30 * time.Second
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 5 * time.Second
	}
	if cfg.SnapshotEvery <= 0 {
		cfg.SnapshotEvery = 64
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Shards < 1 || cfg.Shard < 0 || cfg.Shard >= cfg.Shards {
		return nil, fmt.Errorf("store: shard %d out of [0, %d)", cfg.Shard, cfg.Shards)
	}
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("store: lock connection: %w", err)
	}
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey(cfg.Shard)).Scan(&ok); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("store: advisory lock of shard %d: %w", cfg.Shard, err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			conn.Close(context.Background())
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	var epoch int64
	// The UPDATE waits for save transactions of a predecessor that hold
	// the lease FOR SHARE; after it, they fail their fence check.
	if err := conn.QueryRow(ctx, `
		INSERT INTO shard_leases (shard, epoch, holder, acquired_at) VALUES ($1, 1, $2, now())
		ON CONFLICT (shard) DO UPDATE SET epoch = shard_leases.epoch + 1, holder = EXCLUDED.holder, acquired_at = now()
		RETURNING epoch`, cfg.Shard, cfg.Holder).Scan(&epoch); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("store: take shard %d: %w", cfg.Shard, err)
	}
	fenceCtx, fenceCancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, pool: cfg.Pool, log: cfg.Logger, epoch: epoch, lockConn: conn,
		fenceCtx: fenceCtx, fenceCancel: fenceCancel,
		stop:  make(chan struct{}),
		cache: newLRU(cfg.CacheDocs, cfg.CacheBytes), tenants: map[string]struct{}{}, stageCache: map[string]dataplane.SaveStage{},
	}
	if e.lanePool, err = newLanePool(ctx, cfg, noteWarning); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	for range cfg.Lanes {
		l := &lane{reqs: make(chan *op, 4*cfg.MaxBatch)}
		e.lanes = append(e.lanes, l)
		e.done.Add(1)
		go e.loop(l)
	}
	e.log.Info("took shard", "shard", cfg.Shard, "shard_epoch", epoch, "holder", cfg.Holder)
	return e, nil
}

// newLanePool opens the lanes' pool: the shared pool's configuration
// (same server, role, TLS and tracing), a connection per lane, each
// given laneSettings when it opens.
func newLanePool(ctx context.Context, cfg Config, onNotice pgconn.NoticeHandler) (*pgxpool.Pool, error) {
	pc := cfg.Pool.Config()
	pc.MaxConns, pc.MinConns = int32(cfg.Lanes), 0
	if prev := pc.ConnConfig.OnNotice; prev != nil {
		pc.ConnConfig.OnNotice = func(c *pgconn.PgConn, n *pgconn.Notice) {
			prev(c, n)
			onNotice(c, n)
		}
	} else {
		pc.ConnConfig.OnNotice = onNotice
	}
	after := pc.AfterConnect
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, c); err != nil {
				return err
			}
		}
		_, err := c.Exec(ctx, laneSettings+`, set_config('lock_timeout', $1, false)`,
			strconv.FormatInt(cfg.LockTimeout.Milliseconds(), 10)+"ms")
		return err
	}
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: lane connections: %w", err)
	}
	return p, nil
}

// A lane connection notes the WARNINGs PostgreSQL sends it, in its own
// custom data (read and cleared only by whoever holds the connection). A
// commit waiting for synchronous standbys that is cancelled
// (pg_cancel_backend; a statement_timeout does not reach it) stops
// waiting and reports success with a WARNING: committed locally, maybe on
// no standby yet. A group whose commit drew any WARNING is therefore
// acknowledged only after a barrier (syncBarrier). The severity is
// matched, never the message, which lc_messages translates.
const warnedKey = "yawp.warned"

func noteWarning(c *pgconn.PgConn, n *pgconn.Notice) {
	if cmp.Or(n.SeverityUnlocalized, n.Severity) == "WARNING" {
		c.CustomData()[warnedKey] = true
	}
}

// takeWarning reports whether c drew a WARNING since the last take, and
// forgets it.
func takeWarning(c *pgconn.PgConn) bool {
	_, warned := c.CustomData()[warnedKey]
	delete(c.CustomData(), warnedKey)
	return warned
}

// ShardEpoch is the epoch this engine writes under.
func (e *Engine) ShardEpoch() int64 { return e.epoch }

// Shard is the engine's shard.
func (e *Engine) Shard() int { return e.cfg.Shard }

// Fenced is closed once the engine found another owner of its shard, or
// lost its advisory lock: it no longer writes, and its process should exit.
func (e *Engine) Fenced() <-chan struct{} { return e.fenceCtx.Done() }

// FenceReason says why the engine was fenced ("" while it is not).
func (e *Engine) FenceReason() string {
	if r, ok := e.fenceReason.Load().(string); ok {
		return r
	}
	return ""
}

func (e *Engine) fence(reason string) {
	e.fenceOne.Do(func() {
		e.fenceReason.Store(reason)
		e.isFenced.Store(true)
		e.log.Error("fenced: stopping writes", "shard", e.cfg.Shard, "shard_epoch", e.epoch, "reason", reason)
		e.fenceCancel()
	})
}

// CheckLock pings the lock connection; losing it fences the engine.
func (e *Engine) CheckLock(ctx context.Context) error {
	e.lockMu.Lock() // the lock connection is not safe for concurrent use
	defer e.lockMu.Unlock()
	if e.isFenced.Load() {
		return ErrFenced
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.lockConn.Ping(pctx); err != nil {
		if ctx.Err() != nil {
			// The caller stopped (a syncer shutting down), not the lock.
			return ctx.Err()
		}
		e.fence("advisory lock connection lost: " + err.Error())
		return ErrFenced
	}
	return nil
}

// Close stops the loop and releases the shard (closing the lock
// connection releases the advisory lock).
func (e *Engine) Close() {
	e.closeMu.Lock()
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.closeMu.Unlock()
	e.done.Wait()
	e.lanePool.Close()
	e.lockMu.Lock()
	defer e.lockMu.Unlock()
	_ = e.lockConn.Close(context.Background())
}

// Submit queues a request for the next group commit and waits for it to
// be committed (or refused).
func (e *Engine) Submit(ctx context.Context, req Request) (Result, error) {
	if e.isFenced.Load() {
		return Result{}, ErrFenced
	}
	o := &op{req: req, done: make(chan struct{})}
	if err := e.enqueue(ctx, o); err != nil {
		return Result{}, err
	}
	select {
	case <-o.done:
		return o.res, o.err
	case <-ctx.Done():
		// It may still commit; a retry with the same identity is a no-op.
		return Result{}, ctx.Err()
	}
}

// SubmitEach submits reqs together, as Submit would each of them at once
// (the internal API's apply batches): every request is queued on its
// lane, in order, before any is waited for, so they can share group
// commits. Each is answered as soon as it is answered, not once all are:
// answer(i, ...) answers reqs[i], from the
// calling goroutine, once for every request, in the order they are
// answered (a request whose group commits first is not held back by one
// waiting for a row lock in another lane). more reports that further
// answers are ready at once, so a caller writing them out can flush once
// for all of them. A cancelled ctx answers every request still waiting
// with ctx.Err(): it may still commit, as with Submit.
func (e *Engine) SubmitEach(ctx context.Context, reqs []Request, answer func(i int, res Result, err error, more bool)) {
	// Buffered for every request: a lane never waits to announce one.
	ready := make(chan *op, len(reqs))
	ops := make([]*op, len(reqs))
	var failed []int
	for i, req := range reqs {
		if e.isFenced.Load() {
			failed = append(failed, i)
			ops[i] = &op{err: ErrFenced}
			continue
		}
		o := &op{req: req, done: make(chan struct{}), ready: ready, idx: i}
		if err := e.enqueue(ctx, o); err != nil {
			failed, ops[i] = append(failed, i), &op{err: err}
		} else {
			ops[i] = o
		}
	}
	waiting := len(reqs) - len(failed)
	for k, i := range failed {
		answer(i, Result{}, ops[i].err, k < len(failed)-1 || len(ready) > 0)
	}
	answered := make([]bool, len(reqs))
	for waiting > 0 {
		select {
		case o := <-ready:
			answered[o.idx] = true
			waiting--
			answer(o.idx, o.res, o.err, len(ready) > 0)
		case <-ctx.Done():
			var left []int
			for i, o := range ops {
				if !answered[i] && o.ready != nil {
					left = append(left, i)
				}
			}
			for k, i := range left {
				answer(i, Result{}, ctx.Err(), k < len(left)-1)
			}
			return
		}
	}
}

// errClosed refuses a request made after Close.
var errClosed = errors.New("store: engine closed")

// enqueue queues o on its document's lane, unless the engine is closed
// (see closeMu) or ctx ends first.
func (e *Engine) enqueue(ctx context.Context, o *op) error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	select {
	case <-e.stop:
		return errClosed
	default:
	}
	select {
	case e.laneOf(o.req.Doc).reqs <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) loop(l *lane) {
	defer e.done.Done()
	batch := make([]*op, 0, e.cfg.MaxBatch)
	// The documents of the last group: their writers, just acknowledged,
	// are usually about to send again.
	last := map[string]struct{}{}
	skipGather := 0
	for {
		select {
		case <-e.stop:
			e.drain(l, errClosed)
			return
		case o := <-l.reqs:
			t0 := time.Now()
			batch = append(batch[:0], o)
		fill:
			for len(batch) < e.cfg.MaxBatch {
				select {
				case o := <-l.reqs:
					batch = append(batch, o)
				default:
					break fill
				}
			}
			// A short wait lets the last group's writers join this group
			// instead of forming the next one (like PostgreSQL's
			// commit_delay): it waits for as many requests as there are
			// documents among the last group and those already queued, so
			// writers that queued during the last commit do not cut the
			// group short, and a lone writer never waits for itself. A
			// wait that nobody joined (light load: the last group's writers
			// are people between keystrokes) turns waiting off for the next
			// groups, so sparse saves do not each pay GatherDelay.
			if skipGather > 0 {
				skipGather--
			} else if want := e.gatherWant(last, batch); len(batch) < want && e.cfg.GatherDelay > 0 {
				before := len(batch)
				timer := time.NewTimer(e.cfg.GatherDelay)
			gather:
				for len(batch) < want {
					select {
					case o := <-l.reqs:
						batch = append(batch, o)
					case <-timer.C:
						break gather
					}
				}
				timer.Stop()
				if len(batch) == before {
					skipGather = gatherBackoff
				}
			}
			clear(last)
			for _, o := range batch {
				last[o.req.Doc] = struct{}{}
			}
			e.GatherNanos.Add(int64(time.Since(t0)))
			e.runBatch(l, batch)
			for _, o := range batch {
				o.finish()
			}
		}
	}
}

// gatherWant is how many requests a group waits for: one per document of
// the last group, plus one per queued request for another document.
func (e *Engine) gatherWant(last map[string]struct{}, batch []*op) int {
	want := len(last)
	for _, o := range batch {
		if _, ok := last[o.req.Doc]; !ok {
			want++
		}
	}
	return min(want, e.cfg.MaxBatch)
}

func (e *Engine) drain(l *lane, err error) {
	for {
		select {
		case o := <-l.reqs:
			o.err = err
			o.finish()
		default:
			return
		}
	}
}

func (e *Engine) runBatch(l *lane, ops []*op) {
	ctx, cancel := context.WithTimeout(e.fenceCtx, e.cfg.GroupTimeout)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.isFenced.Load() {
		for _, o := range ops {
			o.err = ErrFenced
		}
		return
	}
	err := e.apply(ctx, ops, true)
	if errors.Is(err, errFastPath) && !isLockTimeout(err) {
		e.forgetStages()
		for _, o := range ops {
			o.res, o.err = Result{}, nil
		}
		err = e.apply(ctx, ops, false)
	}
	if errors.Is(err, ErrStaleRow) {
		// A legacy row changed outside the gateway since its copy was
		// read. apply dropped the copies it wrote, so this run reloads
		// the documents and repairs the changed ones first.
		for _, o := range ops {
			o.res, o.err = Result{}, nil
		}
		err = e.apply(ctx, ops, false)
	}
	e.Batches.Add(1)
	if err == nil {
		e.Applied.Add(int64(len(ops)))
		return
	}
	if e.isFenced.Load() || len(ops) == 1 {
		for _, o := range ops {
			o.err = lockedErr(err)
		}
		return
	}
	e.log.Warn("group commit failed; retrying its requests one by one", "requests", len(ops), "err", err)
	octx := ctx
	if isLockTimeout(err) {
		// A row held outside the gateway: each request waits for its
		// rows only briefly, so the others need not wait for that one.
		octx = context.WithValue(ctx, shortLockWaitKey{}, true)
	}
	for _, o := range ops {
		o.res, o.err = Result{}, nil
		if err := e.apply(octx, []*op{o}, false); err != nil {
			o.err = lockedErr(err)
		} else {
			e.Applied.Add(1)
		}
	}
}

type shortLockWaitKey struct{}

func shortLockWait(ctx context.Context) bool {
	v, _ := ctx.Value(shortLockWaitKey{}).(bool)
	return v
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available:
// a lock wait ran past lock_timeout.
func isLockTimeout(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "55P03"
}

// lockedErr says what a lock timeout means to the caller, by the
// relation PostgreSQL names in the error's context ("while locking tuple
// (0,1) in relation ..."): a document's row held outside the gateway, or
// the stage rows every save reads FOR KEY SHARE (or the stage lock), held
// by a stage change (a freeze or SetStage waiting for its own locks) that
// took longer than the lanes' lock_timeout. The latter was reported as the former, sending
// whoever read it after a legacy writer that was not there.
func lockedErr(err error) error {
	if !isLockTimeout(err) {
		return err
	}
	var pg *pgconn.PgError
	errors.As(err, &pg)
	// A document's tables are named; the stage lock, an advisory lock a
	// stage change holds (dataplane.lockStageChanges), has no relation.
	msg := "a stage change of the document's school (or of its shard's lease) holds the rows every save reads; nothing was saved, retry it"
	for _, rel := range []string{`"documents"`, `"document_revisions"`, `"yjs_updates"`, `"yjs_snapshots"`, `"save_ledger"`, `"preserved_content"`, `"save_requests"`} {
		if strings.Contains(pg.Where, "relation "+rel) {
			msg = "the document's row is locked by a transaction outside the gateway; nothing was saved, retry it"
		}
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: msg}
}

// lru is the documents in memory, bounded by count and by their
// estimated bytes (docState.approxBytes): a document's memory grows with
// its Yjs structs, not its text, and a few documents near the struct
// budget (MaxDocStructs, 150-250 MiB each) would exhaust a syncer that
// bounded only the count. Past the byte bound, documents used in the last
// keepRecent stay, up to twice the bound: a large document evicted by
// every read of a small one was decoded again for each of its saves
// (1.2 s at the struct budget, holding its lane). The most recently used
// document always stays.
type lru struct {
	mu         sync.Mutex
	max        int
	maxBytes   int64
	bytes      int64
	keepRecent time.Duration
	ll         *list.List
	items      map[string]*list.Element
}

type lruEntry struct {
	st     *docState
	weight int64
	used   time.Time
}

// lruKeepRecent: documents used this recently are evicted for bytes only
// past twice the bound.
const lruKeepRecent = 2 * time.Second

func newLRU(max int, maxBytes int64) *lru {
	return &lru{max: max, maxBytes: maxBytes, keepRecent: lruKeepRecent, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(id string) *docState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.MoveToFront(el)
		en := el.Value.(*lruEntry)
		en.used = time.Now()
		return en.st
	}
	return nil
}

func (c *lru) put(st *docState) {
	w := st.approxBytes()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[st.id]; ok {
		en := el.Value.(*lruEntry)
		c.bytes += w - en.weight
		en.st, en.weight, en.used = st, w, now
		c.ll.MoveToFront(el)
	} else {
		c.items[st.id] = c.ll.PushFront(&lruEntry{st: st, weight: w, used: now})
		c.bytes += w
	}
	c.shrink(now)
}

// reweigh updates the weights of documents a committed group changed
// (those still cached as these very states) and evicts past the bounds.
func (c *lru) reweigh(docs map[string]*docState) {
	ws := make(map[string]int64, len(docs))
	for id, st := range docs {
		ws[id] = st.approxBytes()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, st := range docs {
		el, ok := c.items[id]
		if !ok || el.Value.(*lruEntry).st != st {
			continue
		}
		en := el.Value.(*lruEntry)
		c.bytes += ws[id] - en.weight
		en.weight = ws[id]
	}
	c.shrink(time.Now())
}

// shrink evicts the least recently used documents past the count bound,
// past the byte bound those not used within keepRecent of now, and past
// twice the byte bound any; the most recent one stays.
func (c *lru) shrink(now time.Time) {
	for c.ll.Len() > 1 {
		back := c.ll.Back()
		switch {
		case c.ll.Len() > c.max:
		case c.bytes > 2*c.maxBytes:
		case c.bytes > c.maxBytes && now.Sub(back.Value.(*lruEntry).used) >= c.keepRecent:
		default:
			return
		}
		c.remove(back)
	}
}

func (c *lru) remove(el *list.Element) {
	en := el.Value.(*lruEntry)
	c.ll.Remove(el)
	delete(c.items, en.st.id)
	c.bytes -= en.weight
}

func (c *lru) evict(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.remove(el)
	}
}

// CachedDocuments is the number of documents in memory.
func (e *Engine) CachedDocuments() int {
	e.cache.mu.Lock()
	defer e.cache.mu.Unlock()
	return e.cache.ll.Len()
}

// CachedBytes is the estimated memory of the documents in memory.
func (e *Engine) CachedBytes() int64 {
	e.cache.mu.Lock()
	defer e.cache.mu.Unlock()
	return e.cache.bytes
}
