package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/merge"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// legacyAuthoritative reports whether the legacy row is authoritative.
func legacyAuthoritative(stage string) bool {
	switch stage {
	case dataplane.StageLocalFirst, dataplane.StageComplete, dataplane.StageLegacyRetired:
		return false
	}
	return true
}

// writesYjs reports whether every save writes the Yjs representation (in
// Legacy, only documents that already have one get it).
func writesYjs(stage string) bool { return stage != dataplane.StageLegacy }

// writesLegacy reports whether saves write the legacy row's content.
func writesLegacy(stage string) bool { return stage != dataplane.StageLegacyRetired }

// batchCtx is the state of one group commit. Its writes are collected in
// memory and sent, with COMMIT, in one pipelined round trip: per-row
// statements first (creations, preserved content), then one multi-row
// statement per table.
type batchCtx struct {
	conn   *pgxpool.Conn
	pre    *pgx.Batch
	now    time.Time
	stages map[string]dataplane.SaveStage
	dirty  map[string]*docState
	idem   map[[2]string]*op

	ledDoc, ledKind, ledTenant, ledBody []string
	ledSeq                              []int64
	ledPrev, ledHash                    [][]byte

	revDoc, revTitle, revContent, revBy, revStage []string
	revNum, revEpoch                              []int64
	// revSHA: each revision's text sha256; revRef: kept by reference
	// (no text; revYSeq its Yjs log position); revSplice: kept as a
	// splice of the revision before (revSplHead/Tail/Text), see
	// revtext.go.
	revSHA     []string
	revRef     []bool
	revYSeq    []int64
	revSplice  []bool
	revSplHead []int32
	revSplTail []int32
	revSplText []string
	// revKey and revResult: the idempotency key of the save that made
	// the revision and the answer it got ("": none).
	revKey, revResult []string
	revPending        map[string]map[int64]string
	revTitles         map[string]map[int64]string // the titles of revPending's revisions

	yDoc, yOrigin []string
	ySeq, yGen    []int64
	yUpd          [][]byte

	docRows map[string]*docState
	snaps   map[string]*docState
	// created: documents inserted by this group (no change_seq to guard
	// on yet); repaired: documents repaired by it, with the outcome.
	created  map[string]bool
	repaired map[string]string
	// group: every document the group touches, as it was loaded or
	// cached; those whose rows it does not write are guarded too (flush).
	group map[string]*docState
}

func (e *Engine) newBatchCtx() *batchCtx {
	return &batchCtx{pre: &pgx.Batch{}, now: e.now(), dirty: map[string]*docState{}, idem: map[[2]string]*op{},
		revPending: map[string]map[int64]string{}, revTitles: map[string]map[int64]string{}, docRows: map[string]*docState{}, snaps: map[string]*docState{},
		created: map[string]bool{}, repaired: map[string]string{}}
}

// laneSettings are the settings of the lanes' connections, set once
// when a connection opens (lanePool's AfterConnect) for its whole session:
// the connections run nothing but group commits. Set per transaction, they
// were a statement of every group (36 µs of server time each in make
// bench-store, and the GUC stack unwound at every commit).
//   - synchronous_commit: acknowledged means durable, whatever the server
//     or role default;
//   - yawp.syncer: the syncer's own writes of legacy rows are not outside
//     changes (migration 00007): change_seq stays, nothing is logged;
//   - plan_cache_mode: the group's statements are prepared once and
//     planned once. Planned per group (custom plans for their arrays) they
//     cost more to plan than to run (measured with pg_stat_statements:
//     0.66 of 1.0 ms of server time per single save);
//   - no sequential scans, hash or merge joins: a group reads and writes
//     only rows it names by key, so its generic plans must probe indexes
//     whatever the table's size. Left to statistics, a small or freshly
//     bloated documents table got a hash join over a sequential scan for
//     the row update, cached for the connection's life (53 blocks read per
//     single-row update in make bench-store).
//
// The lanes' lock_timeout (Config.LockTimeout) is set beside them
// (newLanePool).
//
// A connection pooler in transaction mode would lose them, as it would
// the shard's advisory lock: the syncer needs session connections.
const laneSettings = `SELECT set_config('synchronous_commit', 'on', false), set_config('yawp.syncer', 'on', false),
	set_config('plan_cache_mode', 'force_generic_plan', false), set_config('enable_seqscan', 'off', false),
	set_config('enable_hashjoin', 'off', false), set_config('enable_mergejoin', 'off', false)`

// errFastPath marks a failed one-round-trip attempt: the group is retried
// on the two-round-trip path.
var errFastPath = errors.New("store: fast path refused")

// apply runs one group commit over ops. A nil return means every op has
// its result or refusal set and the transaction committed.
//
// With fast set and every tenant's stage known from an earlier group, the
// whole group is one round trip: BEGIN, the fence and stage guards (which
// take the same stage and row locks and abort the transaction if anything
// changed), the writes and COMMIT. A guard failure, a repeated
// idempotency key (its INSERT conflicts) or any other error returns
// errFastPath, and the caller runs the group again the two-round-trip way.
func (e *Engine) apply(ctx context.Context, ops []*op, fast bool) (err error) {
	start := time.Now()
	bc := e.newBatchCtx()
	// The group's documents, pinned: the shared LRU may drop them
	// meanwhile, the group keeps working on these.
	states := map[string]*docState{}
	bc.group = states
	defer func() {
		if err != nil {
			for id := range bc.dirty {
				e.cache.evict(id)
			}
			if errors.Is(err, ErrStaleRow) {
				// A row changed outside the gateway under a copy the
				// group only read: every copy is loaded again.
				for id := range states {
					e.cache.evict(id)
				}
			}
		}
	}()
	var live []*op
	var tenants, keyDocs, keys []string
	for _, o := range ops {
		if verr := e.validate(&o.req); verr != nil {
			o.err = verr
			continue
		}
		st := states[o.req.Doc]
		if st == nil {
			var err error
			if st, err = e.doc(ctx, o.req.Doc); err != nil {
				return err
			}
			states[o.req.Doc] = st
		}
		live = append(live, o)
		if o.req.Kind != KindReject && o.req.Kind != KindRepair {
			// A recorded rejection's tenant may be unauthenticated: it is
			// not registered; a repair names no tenant.
			tenants = append(tenants, o.req.Tenant)
		}
		if st.exists {
			tenants = append(tenants, st.tenant)
		} else if st.deleted != nil {
			tenants = append(tenants, st.deleted.tenant) // recreate reads its stage
		}
		if k := o.req.IdempotencyKey; k != "" && (o.req.Kind == KindCreate || o.req.Kind == KindSave) {
			keyDocs, keys = append(keyDocs, o.req.Doc), append(keys, k)
			if st.oldKeys {
				fast = false
			}
		}
	}
	if len(live) == 0 {
		return nil
	}
	var expect map[string]dataplane.SaveStage
	if fast {
		expect = e.cachedStages(tenants)
		if expect == nil {
			fast = false
		}
	}
	conn, err := e.lanePool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	bc.conn = conn
	inTx := false
	defer func() {
		if err != nil && inTx {
			_, _ = conn.Exec(context.Background(), "ROLLBACK")
		}
	}()

	b1 := &pgx.Batch{}
	stored := map[[2]string][]byte{}
	if fast {
		// One round trip and one implicit transaction (no BEGIN: the
		// statements up to the batch's Sync commit together or not at
		// all): the fence, the stage guards, then the writes queued on
		// the same batch.
		b1.Queue(`SELECT 1 / (epoch = $2)::int FROM shard_leases WHERE shard = $1 FOR SHARE`, e.cfg.Shard, e.epoch)
		dataplane.QueueGuardSaveStages(b1, e.cfg.Rollout, expect)
		bc.stages = expect
		bc.pre = b1
	} else {
		b1.Queue("BEGIN")
		if shortLockWait(ctx) {
			b1.Queue(`SET LOCAL lock_timeout = '200ms'`)
		}
		// Round trip 1: begin, fence, stages locked, idempotency keys.
		leaseEpoch := int64(-1)
		b1.Queue(`SELECT epoch FROM shard_leases WHERE shard = $1 FOR SHARE`, e.cfg.Shard).QueryRow(func(row pgx.Row) error {
			return row.Scan(&leaseEpoch)
		})
		ss := dataplane.QueueSaveStages(b1, e.cfg.Rollout, tenants, e.knownTenant)
		if len(keys) > 0 {
			// One primary-key probe per (document, key) pair.
			// With the revision it made (migration 00010), or from before
			// that in save_requests.
			b1.Queue(`SELECT u.doc_id, u.idem_key, coalesce(r.idem_result, s.result::text)
				FROM unnest($1::text[], $2::text[]) AS u(doc_id, idem_key)
				LEFT JOIN LATERAL (SELECT idem_result FROM document_revisions r
				                   WHERE r.doc_id = u.doc_id AND r.idem_key = u.idem_key) r ON true
				LEFT JOIN LATERAL (SELECT result FROM save_requests s
				                   WHERE s.doc_id = u.doc_id AND s.idem_key = u.idem_key) s ON true
				WHERE r.idem_result IS NOT NULL OR s.result IS NOT NULL`,
				keyDocs, keys).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var d, k, r string
					if err := rows.Scan(&d, &k, &r); err != nil {
						return err
					}
					stored[[2]string{d, k}] = []byte(r)
				}
				return rows.Err()
			})
		}
		inTx = true
		if err := conn.SendBatch(ctx, b1).Close(); err != nil {
			return err
		}
		if leaseEpoch != e.epoch {
			e.fence(fmt.Sprintf("shard epoch is %d, this syncer holds %d", leaseEpoch, e.epoch))
			return ErrFenced
		}
		if bc.stages, err = ss.Finish(ctx, conn); err != nil {
			return err
		}
	}

	dups, err := e.applyLive(ctx, bc, live, states, stored, fast)
	if err != nil {
		return err
	}

	// Every write, then COMMIT (round trip 2, or the only one).
	b2 := bc.pre
	e.flush(bc, b2)
	if !fast {
		b2.Queue("COMMIT")
	}
	// On an error, ROLLBACK: it ends the transaction if one is still open
	// (the explicit one, or an implicit one whose batch never reached its
	// Sync); otherwise PostgreSQL only warns.
	inTx = true
	tSend := time.Now()
	e.BuildNanos.Add(int64(tSend.Sub(start)))
	err = e.commitGroup(ctx, conn, b2, bc, len(live))
	e.CommitNanos.Add(int64(time.Since(tSend)))
	if err != nil {
		err = rowTaken(err)
		if fast && !errors.Is(err, ErrFenced) {
			return fmt.Errorf("%w: %w", errFastPath, err)
		}
		return err
	}
	inTx = false
	e.noteWritten(bc.dirty)
	e.cache.reweigh(bc.dirty)
	e.rememberStages(bc.stages)
	e.tenantsMu.Lock()
	if len(e.tenants) > 100_000 {
		clear(e.tenants)
	}
	for _, t := range tenants {
		e.tenants[t] = struct{}{}
	}
	e.tenantsMu.Unlock()
	for _, o := range dups {
		prev := bc.idem[[2]string{o.req.Doc, o.req.IdempotencyKey}]
		o.res, o.err = prev.res, prev.err
		o.res.Replayed = true
	}
	return nil
}

// commitGroup sends a group's writes and COMMIT and makes sure of the
// outcome before anyone is answered: an answer lost on the way is found
// out (resolveInDoubt), and a commit that drew a warning is confirmed on
// the synchronous standbys (noteWarning). An error wrapping ErrFenced:
// the outcome cannot be known, and the engine stopped writing.
func (e *Engine) commitGroup(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch, bc *batchCtx, requests int) error {
	takeWarning(conn.Conn().PgConn())
	err := conn.SendBatch(ctx, b).Close()
	if err == nil {
		if takeWarning(conn.Conn().PgConn()) {
			return e.confirmWarnedCommit(ctx, requests)
		}
		return nil
	}
	if !commitInDoubt(err) {
		return err
	}
	// The writes were sent and no answer came back: the group may have
	// committed. Retried as if it had not, its saves would be applied
	// twice; so find out.
	committed, rerr := e.resolveInDoubt(ctx, conn.Conn().PgConn().PID(), bc)
	if rerr != nil {
		e.fence("a group commit's outcome cannot be known: " + rerr.Error())
		return fmt.Errorf("%w: %w", ErrFenced, rerr)
	}
	if !committed {
		return err
	}
	e.log.Warn("a group commit's answer was lost; its ledger shows it committed", "requests", requests, "err", err)
	conn.Conn().Close(context.Background()) //nolint:errcheck // already broken
	return nil
}

// commitInDoubt reports whether a failed group's writes may have
// committed: they may have been sent (pgconn.SafeToRetry is false) and
// PostgreSQL did not answer with an error (which would have rolled the
// transaction back) — the connection broke, or the context ended, while
// the commit was under way.
func commitInDoubt(err error) bool {
	var pg *pgconn.PgError
	return !errors.As(err, &pg) && !pgconn.SafeToRetry(err)
}

// resolveInDoubt finds out whether the group that backend pid was running
// committed: it ends the backend (a commit under way completes or rolls
// back first), waits until it is gone, then looks for the group's last
// ledger entry, which its hash names exactly.
func (e *Engine) resolveInDoubt(ctx context.Context, pid uint32, bc *batchCtx) (bool, error) {
	n := len(bc.ledDoc)
	if n == 0 {
		return false, nil // it wrote no ledger entry: nothing a retry could repeat
	}
	// Not cut short when the group's own deadline passed (that may be
	// what left it in doubt), but when the engine is fenced: then nobody
	// is answered anyway.
	ctx, cancel := e.outcomeContext(ctx)
	defer cancel()
	// The fault that broke the group's connection (a restart, a network
	// blip) often broke the pool's other connections too: every step is
	// retried until the deadline, not given up on its first error.
	var last error
	retry := func(err error) bool {
		last = err
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
			return true
		}
	}
	terminated := false
	for {
		if !terminated {
			// Refused (another role's backend) or gone already: either
			// way the wait below decides.
			_, err := e.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid))
			terminated = err == nil
		}
		var alive bool
		if err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int32(pid)).Scan(&alive); err != nil {
			if retry(fmt.Errorf("wait for the backend of the broken commit: %w", err)) {
				continue
			}
			return false, last
		}
		if alive {
			if retry(fmt.Errorf("backend %d of the broken commit is still running", pid)) {
				continue
			}
			return false, last
		}
		var hash []byte
		err := e.pool.QueryRow(ctx, `SELECT hash FROM save_ledger WHERE doc_id = $1 AND seq = $2`, bc.ledDoc[n-1], bc.ledSeq[n-1]).Scan(&hash)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return false, nil
		case err != nil:
			if retry(fmt.Errorf("look for the broken commit's ledger entry: %w", err)) {
				continue
			}
			return false, last
		}
		if !bytes.Equal(hash, bc.ledHash[n-1]) {
			return false, nil
		}
		// Committed, but ending its backend may have cut short its wait
		// for a synchronous standby: the commit is visible here before a
		// standby has it, and acknowledging it then could lose it in a
		// failover. A commit of our own waits for the standby to reach
		// its own commit record, which comes after the group's in the
		// WAL (without synchronous standbys it only flushes locally).
		if err := syncBarrier(ctx, e.pool, e.cfg.Shard); err != nil {
			if retry(fmt.Errorf("wait for the broken commit to reach the synchronous standbys: %w", err)) {
				continue
			}
			return false, last
		}
		return true, nil
	}
}

// confirmWarnedCommit holds the answer to a committed group that drew a
// WARNING, maybe a commit whose wait for the synchronous standbys was
// cancelled (noteWarning), until they have it.
func (e *Engine) confirmWarnedCommit(ctx context.Context, requests int) error {
	ctx, cancel := e.outcomeContext(ctx)
	defer cancel()
	if err := syncBarrier(ctx, e.pool, e.cfg.Shard); err != nil {
		// Committed, but perhaps on no standby: neither an answer nor a
		// retry (which would apply it twice) is right.
		e.fence("a group commit drew a warning and its synchronous standbys cannot be confirmed: " + err.Error())
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	e.log.Warn("a group commit drew a warning; acknowledged once the synchronous standbys confirmed it", "requests", requests)
	return nil
}

// outcomeContext bounds making sure of a group's outcome: 30 s from now,
// whatever became of the group's own context, or until the engine is
// fenced (its database went away, or another syncer took the shard).
func (e *Engine) outcomeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	stop := context.AfterFunc(e.fenceCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// syncBarrier commits a transaction that waits, as every group commit
// does, for the synchronous standbys to flush its commit record: once it
// returns, they hold all WAL written before it.
func syncBarrier(ctx context.Context, pool *pgxpool.Pool, shard int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit TO on`); err != nil {
			return err
		}
		// PostgreSQL waits for the standbys only at the commit of a
		// transaction that wrote WAL: the shard lease's row lock, as
		// every group takes it (FOR SHARE blocks no group), writes a
		// record.
		_, err := tx.Exec(ctx, `SELECT 1 FROM shard_leases WHERE shard = $1 FOR SHARE`, shard)
		return err
	})
}

// applyLive applies the group's requests in memory, queueing their writes;
// it returns the requests that repeat an idempotency key of the group.
func (e *Engine) applyLive(ctx context.Context, bc *batchCtx, live []*op, states map[string]*docState, stored map[[2]string][]byte, fast bool) ([]*op, error) {
	var dups []*op
	for _, o := range live {
		st := states[o.req.Doc]
		if k := o.req.IdempotencyKey; k != "" && (o.req.Kind == KindCreate || o.req.Kind == KindSave) {
			id := [2]string{o.req.Doc, k}
			if raw, ok := stored[id]; ok {
				if st.exists && st.tenant != o.req.Tenant {
					// Refused as applyOne refuses another tenant's
					// request, on record (I6): the key it carries is no
					// reason to leave its attempt out of the ledger.
					bc.dirty[st.id] = st // its ledger chain moves
					e.reject(bc, st, o, http.StatusNotFound, CodeNotFound, "no document "+strconv.Quote(o.req.Doc)+" for this tenant")
					o.err = notFound(o.req.Doc)
					continue
				}
				var r storedResult
				if err := json.Unmarshal(raw, &r); err != nil {
					return nil, fmt.Errorf("stored result of %s/%s: %w", o.req.Doc, k, err)
				}
				// A result stored before fingerprints were (no
				// fingerprint) is taken as this request's.
				if r.Request != "" && r.Request != requestFingerprint(&o.req) {
					e.refuseReuse(bc, st, o)
					continue
				}
				r.Replayed = true
				if r.Receipt == "" && r.LedgerSeq > 0 {
					// Not stored: it is the ledger position and hash.
					if h, err := hex.DecodeString(r.LedgerHash); err == nil {
						r.Receipt = ledger.FormatReceipt(r.LedgerSeq, h)
					}
				}
				if r.Revision > 0 {
					// Answered with the text its revision holds, as the
					// first answer was (a merge's result included).
					// A history that cannot be rebuilt (damaged) is logged
					// and the replay answered without the text: refusing
					// it would fail every retry of the save.
					texts, err := revisionTexts(ctx, bc.conn, st.id, r.Revision, r.Revision)
					if err != nil {
						if ctx.Err() != nil {
							return nil, err
						}
						e.log.Error("the revision of a replayed save cannot be read; answered without its text",
							"doc", st.id, "revision", r.Revision, "err", err)
					}
					if c, ok := texts[r.Revision]; ok {
						r.Content = &c
					}
				}
				o.res = r.Result
				continue
			}
			if first, ok := bc.idem[id]; ok {
				switch {
				case first.req.Tenant != o.req.Tenant:
					// Another tenant's request: it is no replay of the
					// first, and runs (and is refused) on its own.
				case first.err != nil:
					// The first was refused and recorded nothing under the
					// key: this one runs on its own, and may take the key.
					bc.idem[id] = o
				case requestFingerprint(&first.req) != requestFingerprint(&o.req):
					e.refuseReuse(bc, st, o)
					continue
				default:
					dups = append(dups, o) // answered with the first one's result
					continue
				}
			} else {
				bc.idem[id] = o
			}
		}
		bc.dirty[st.id] = st
		if st.deleted != nil {
			e.recreate(bc, st)
		}
		if st.diverged {
			// Changed outside the gateway: repaired before anything
			// else touches it, in this transaction.
			if err := e.repair(bc, st); err != nil {
				return nil, fmt.Errorf("repair %s: %w", st.id, err)
			}
		}
		if err := e.applyOne(ctx, bc, st, o); err != nil {
			return nil, err
		}
		if fast && o.err != nil && o.req.IdempotencyKey != "" {
			// A refused keyed request may be the replay of one that
			// succeeded: only the two-round-trip path looks that up.
			return nil, errFastPath
		}
	}
	return dups, nil
}

// cachedStages returns the stages the last committed groups saw for
// tenants, or nil unless all of them are known.
func (e *Engine) cachedStages(tenants []string) map[string]dataplane.SaveStage {
	e.tenantsMu.Lock()
	defer e.tenantsMu.Unlock()
	out := make(map[string]dataplane.SaveStage, len(tenants))
	for _, t := range tenants {
		s, ok := e.stageCache[t]
		if !ok {
			return nil
		}
		out[t] = s
	}
	return out
}

func (e *Engine) rememberStages(stages map[string]dataplane.SaveStage) {
	e.tenantsMu.Lock()
	defer e.tenantsMu.Unlock()
	if len(e.stageCache) > 100_000 {
		clear(e.stageCache)
	}
	for t, s := range stages {
		e.stageCache[t] = s
	}
}

// forgetStages drops the remembered stages: one changed somewhere (a
// guard refused), so all are read again.
func (e *Engine) forgetStages() {
	e.tenantsMu.Lock()
	defer e.tenantsMu.Unlock()
	clear(e.stageCache)
}

// updateDocumentsSQL writes a group's document rows and checks the rows
// of the other documents it touched: $1 IDs, $2 titles, $3 contents, $4
// revisions, $5 the time, $6 each row's expected change_seq (negative:
// inserted by this group), $7 the number of rows; $8 the IDs of the
// documents the group touched without writing their rows, $9 the
// change_seq each was read with (negative: no row then).
const updateDocumentsSQL = `
	WITH upd AS (
		UPDATE documents d SET title = u.title, content = u.content, revision = u.revision, updated_at = $5
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $6::bigint[]) AS u(doc_id, title, content, revision, expect)
		WHERE d.doc_id = u.doc_id AND (u.expect < 0 OR coalesce(d.change_seq, 0) = u.expect)
		RETURNING 1),
	moved AS (
		SELECT 1 FROM unnest($8::text[], $9::bigint[]) AS g(doc_id, expect)
		LEFT JOIN documents d ON d.doc_id = g.doc_id
		WHERE CASE WHEN g.expect < 0 THEN d.doc_id IS NOT NULL
		           ELSE d.doc_id IS NULL OR coalesce(d.change_seq, 0) <> g.expect END)
	SELECT 1 / ((SELECT count(*) FROM upd) = $7 AND NOT EXISTS (SELECT 1 FROM moved))::int`

// flush queues the group's multi-row writes.
func (e *Engine) flush(bc *batchCtx, b *pgx.Batch) {
	// The documents the group touched without writing their rows (a
	// refusal, a sync step 1, an update that changed no text): a copy
	// kept while the legacy application gave the ID to another school,
	// deleted or re-created the row would refuse the new owner's saves
	// for as long as it stays cached, and put the old owner's Yjs updates
	// in the new document's log.
	var gIDs []string
	var gExpect []int64
	for id, st := range bc.group {
		if _, ok := bc.docRows[id]; ok || bc.created[id] {
			continue
		}
		gIDs = append(gIDs, id)
		if st.exists {
			gExpect = append(gExpect, st.changeSeq)
		} else {
			gExpect = append(gExpect, -1)
		}
	}
	if len(bc.docRows) > 0 || len(gIDs) > 0 {
		ids, titles, contents := []string{}, []string{}, []string{}
		revs, expect := []int64{}, []int64{}
		for _, st := range bc.docRows {
			ids, titles, contents, revs = append(ids, st.id), append(titles, st.title), append(contents, st.content), append(revs, st.revision)
			if bc.created[st.id] {
				expect = append(expect, -1) // inserted by this group
			} else {
				expect = append(expect, st.changeSeq)
			}
		}
		// Every row is written only if nothing else changed it since it
		// was read (its change_seq, which only writes outside the syncer
		// move); otherwise the division fails the transaction, and the
		// group runs again from reloaded documents, repairing the changed
		// ones first (repair.go).
		b.Queue(updateDocumentsSQL, ids, titles, contents, revs, bc.now, expect, len(ids), gIDs, gExpect).QueryRow(func(row pgx.Row) error {
			var one int
			return errStaleRow(row.Scan(&one))
		})
	}
	if len(bc.revDoc) > 0 {
		// A repeated idempotency key conflicts on document_revisions_idem
		// and fails the group (migration 00010).
		b.Queue(`INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch, content_sha256, yjs_seq,
			  splice_head, splice_tail, splice_text, idem_key, idem_result)
			SELECT d, r, t, CASE WHEN ref OR sp THEN NULL ELSE c END, u, $8, s, e, $9, h, CASE WHEN ref THEN y END,
			  CASE WHEN sp THEN sh END, CASE WHEN sp THEN stl END, CASE WHEN sp THEN st END, NULLIF(k, ''), NULLIF(res, '')
			FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $10::text[], $11::bool[], $12::bigint[],
			  $13::bool[], $14::int[], $15::int[], $16::text[], $17::text[], $18::text[])
			  AS x(d, r, t, c, u, s, e, h, ref, y, sp, sh, stl, st, k, res)`,
			bc.revDoc, bc.revNum, bc.revTitle, bc.revContent, bc.revBy, bc.revStage, bc.revEpoch, bc.now, e.epoch,
			bc.revSHA, bc.revRef, bc.revYSeq, bc.revSplice, bc.revSplHead, bc.revSplTail, bc.revSplText, bc.revKey, bc.revResult)
	}
	if len(bc.yDoc) > 0 {
		b.Queue(`INSERT INTO yjs_updates (doc_id, seq, generation, update, origin, shard_epoch, at)
			SELECT d, s, g, u, o, $6, $7 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[]) AS x(d, s, g, u, o)`,
			bc.yDoc, bc.ySeq, bc.yGen, bc.yUpd, bc.yOrigin, e.epoch, bc.now)
	}
	for _, st := range bc.snaps {
		st.snapSeq = st.logSeq
		var state, sv []byte
		var text string
		if r := st.snapRaw; r != nil {
			state, sv, text = r.state, r.sv, r.text
		} else {
			state, sv, text = st.ydoc.EncodeStateAsUpdate(nil), st.ydoc.EncodeStateVector(), st.ytext()
		}
		st.snapBytes, st.logBytes = int64(len(state)), 0
		b.Queue(`
			INSERT INTO yjs_snapshots (doc_id, generation, upto_seq, state, state_vector, text, at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (doc_id) DO UPDATE SET generation = EXCLUDED.generation, upto_seq = EXCLUDED.upto_seq, state = EXCLUDED.state,
			  state_vector = EXCLUDED.state_vector, text = EXCLUDED.text, at = EXCLUDED.at`,
			st.id, st.generation, st.logSeq, state, sv, text, bc.now)
	}
	if len(bc.ledDoc) > 0 {
		// Each document's first entry of the group must follow the
		// entry the database holds (seq-1, with the hash it chains to);
		// otherwise the division fails the group, which is run again from
		// reloaded documents (as a moved row does).
		var heldDocs []string
		var heldSeqs []int64
		var heldHashes [][]byte
		first := make(map[string]bool, len(bc.ledDoc))
		for i, d := range bc.ledDoc {
			if first[d] {
				continue
			}
			first[d] = true
			if bc.ledSeq[i] > 1 {
				heldDocs, heldSeqs, heldHashes = append(heldDocs, d), append(heldSeqs, bc.ledSeq[i]-1), append(heldHashes, bc.ledPrev[i])
			}
		}
		b.Queue(insertLedgerSQL, bc.ledDoc, bc.ledSeq, bc.ledKind, bc.ledTenant, bc.ledBody, bc.ledPrev, bc.ledHash, bc.now,
			heldDocs, heldSeqs, heldHashes, len(heldDocs)).QueryRow(func(row pgx.Row) error {
			var one int
			return errStaleRow(row.Scan(&one))
		})
	}
}

// insertLedgerSQL appends a group's ledger entries ($1 documents, $2
// positions, $3 kinds, $4 tenants, $5 bodies, $6 previous hashes, $7
// hashes, $8 the time) and checks that each chain goes on from the
// entry the database holds: $9..$11 name, for each document whose first
// entry of the group is not its first ever, the entry before it and its
// hash, $12 how many. A syncer's copy of a document is ahead of the
// database when the database was restored from a backup under it (the
// shard's lease and the legacy rows' change_seq as they were then,
// nothing else tells): its entries would leave a gap in the chain, and
// evidence verify would report every such document's ledger broken.
const insertLedgerSQL = `
	WITH ins AS (INSERT INTO save_ledger (doc_id, seq, kind, tenant, at, body, prev_hash, hash)
		SELECT d, s, k, t, $8, b, p, h FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[]) AS x(d, s, k, t, b, p, h))
	SELECT 1 / ((SELECT count(*) FROM unnest($9::text[], $10::bigint[], $11::bytea[]) AS c(d, s, h)
	             JOIN save_ledger l ON l.doc_id = c.d AND l.seq = c.s AND l.hash = c.h) = $12)::int`

func notFound(doc string) *Error {
	return errf(http.StatusNotFound, CodeNotFound, "no document %q for this tenant", doc)
}

// validate refuses requests that cannot be applied at all (no ledger
// entry: they do not name a document this shard can hold).
func (e *Engine) validate(r *Request) *Error {
	switch {
	case r.Doc == "" || len(r.Doc) > contract.MaxIDBytes || !utf8.ValidString(r.Doc):
		return errf(http.StatusBadRequest, CodeInvalidRequest, "document ID must be 1..%d bytes of UTF-8", contract.MaxIDBytes)
	case (r.Tenant == "" && r.Kind != KindRepair) || len(r.Tenant) > contract.MaxIDBytes:
		return errf(http.StatusBadRequest, CodeInvalidRequest, "tenant must be 1..%d bytes", contract.MaxIDBytes)
	case placement.Shard(r.Doc, e.cfg.Shards) != e.cfg.Shard:
		return errf(http.StatusMisdirectedRequest, CodeWrongShard, "document %q lives on shard %d, not %d", r.Doc, placement.Shard(r.Doc, e.cfg.Shards), e.cfg.Shard)
	case len(r.IdempotencyKey) > contract.MaxIDBytes:
		return errf(http.StatusBadRequest, CodeInvalidRequest, "idempotency key longer than %d bytes", contract.MaxIDBytes)
	case r.Kind == KindSync1 && len(r.StateVector) > contract.MaxStateVectorBytes:
		return errf(http.StatusRequestEntityTooLarge, CodeTooLarge, "state vector is %d bytes, the limit is %d", len(r.StateVector), contract.MaxStateVectorBytes)
	}
	switch r.Kind {
	case KindCreate, KindSave, KindYjs, KindSync1, KindReject, KindRepair, KindDisconnect:
	default:
		return errf(http.StatusBadRequest, CodeInvalidRequest, "unknown request kind %q", r.Kind)
	}
	return nil
}

// reject records a refusal in the document's ledger and sets it on o.
func (e *Engine) reject(bc *batchCtx, st *docState, o *op, status int, code, msg string) {
	en := e.entry(bc, st, o, ledger.KindRejected)
	en.Code, en.Reason = code, msg
	if o.req.Content != "" {
		en.ContentSHA256 = ledger.SHA256Hex([]byte(o.req.Content))
	}
	var trace *UpdateTrace
	if o.req.Kind == KindReject {
		trace = o.req.UpdateTrace // only a rejection to record stands for its update so
	}
	refusedUpdate(&en, o.req.Update, trace)
	e.appendLedger(bc, st, en)
	o.err = &Error{Status: status, Code: code, Message: msg}
}

// refusedUpdate puts on a refusal's entry the hash of the Yjs update
// refused and, when it decodes, the clients whose operations it carried,
// so that evidence asked about a client shows its refused edits too.
func refusedUpdate(en *ledger.Entry, u []byte, trace *UpdateTrace) {
	if u != nil {
		trace = TraceUpdate(u)
	}
	if trace == nil || !trace.valid() {
		return
	}
	en.UpdateSHA256 = trace.SHA256
	en.Clients = trace.Clients
	// Which operations it carried: evidence tells whether the server
	// holds them since (saved-locally-not-synced if not).
	if len(trace.Ops) > 0 {
		en.Missing = trace.Ops
	}
}

// TraceUpdate is what a refused update's ledger entry records of u: its
// sha256 and, if it decodes, its clients and operations (the first
// MaxTraceClients clients).
func TraceUpdate(u []byte) *UpdateTrace {
	t := &UpdateTrace{SHA256: ledger.SHA256Hex(u)}
	if len(u) > contract.MaxUpdateBytes {
		return t
	}
	dec, err := yjs.DecodeUpdate(u)
	if err != nil {
		return t
	}
	t.Clients = clientsOf(dec)
	if len(t.Clients) > MaxTraceClients {
		t.Clients = t.Clients[:MaxTraceClients]
	}
	if r := opRanges(dec); len(r) > 0 {
		t.Ops = map[string][2]uint64{}
		for _, c := range t.Clients {
			k := strconv.FormatUint(c, 10)
			if v, ok := r[k]; ok {
				t.Ops[k] = v
			}
		}
	}
	return t
}

// valid: a trace a caller of the internal API may hand in (it becomes a
// ledger entry): a sha256, at most MaxTraceClients clients and ranges,
// the ranges of positive client IDs, not empty.
func (t *UpdateTrace) valid() bool {
	if len(t.SHA256) != 64 || strings.Trim(t.SHA256, "0123456789abcdef") != "" ||
		len(t.Clients) > MaxTraceClients || len(t.Ops) > MaxTraceClients {
		return false
	}
	for i, c := range t.Clients {
		if c == 0 || (i > 0 && c <= t.Clients[i-1]) { // as clientsOf makes them: sorted, distinct
			return false
		}
	}
	for k, r := range t.Ops {
		c, err := strconv.ParseUint(k, 10, 64)
		// Keys as evidence compares them (canonical), of the trace's
		// own clients.
		if err != nil || c == 0 || strconv.FormatUint(c, 10) != k || r[1] <= r[0] {
			return false
		}
		if _, ok := slices.BinarySearch(t.Clients, c); !ok {
			return false
		}
	}
	return true
}

func (e *Engine) entry(bc *batchCtx, st *docState, o *op, kind string) ledger.Entry {
	tenant := o.req.Tenant
	stage := bc.stages[tenant]
	if st.exists {
		stage = bc.stages[st.tenant]
	}
	proto := protocolLegacy
	if o.req.Kind == KindYjs || o.req.Kind == KindSync1 || o.req.Kind == KindDisconnect {
		proto = "yjs"
	}
	return ledger.Entry{
		Kind: kind, At: bc.now, Tenant: tenant, User: o.req.User,
		Stage: stage.Stage, Cohort: stage.Cohort, Epoch: stage.Epoch,
		Protocol: proto, RequestID: o.req.RequestID, IdempotencyKey: o.req.IdempotencyKey,
	}
}

func (e *Engine) appendLedger(bc *batchCtx, st *docState, en ledger.Entry) ledger.Entry {
	en.Doc, en.Shard, en.ShardEpoch = st.id, e.cfg.Shard, e.epoch
	sealed, row := ledger.Seal(en, st.ledgerSeq+1, st.ledgerHash)
	bc.ledDoc, bc.ledSeq, bc.ledKind, bc.ledTenant = append(bc.ledDoc, st.id), append(bc.ledSeq, row.Seq), append(bc.ledKind, en.Kind), append(bc.ledTenant, en.Tenant)
	bc.ledBody, bc.ledPrev, bc.ledHash = append(bc.ledBody, string(row.Body)), append(bc.ledPrev, row.PrevHash), append(bc.ledHash, row.Hash)
	st.ledgerSeq, st.ledgerHash = row.Seq, row.Hash
	return sealed
}

func (e *Engine) stamp(res *Result, st *docState, sealed ledger.Entry) {
	res.LedgerSeq = sealed.Seq
	res.LedgerHash = hex.EncodeToString(st.ledgerHash)
	res.Receipt = st.receipt()
	res.ShardEpoch = e.epoch
}

// receipt is the document's last ledger entry as a receipt (empty before
// its first).
func (st *docState) receipt() string {
	if st.ledgerSeq == 0 {
		return ""
	}
	return ledger.FormatReceipt(st.ledgerSeq, st.ledgerHash)
}

func (e *Engine) applyOne(ctx context.Context, bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	if r.Kind == KindRepair {
		out, ok := bc.repaired[st.id]
		if !ok {
			out = OutcomeConsistent
		}
		if !st.exists {
			// Deleted (outside the gateway) where the deletion stands:
			// there is nothing left to repair, and a divergence recorded
			// on it would otherwise stay open and fail the cohort's gate
			// on every attempt.
			e.closeDivergences(bc, st, DivergenceOutOfBand, "document-deleted")
			o.err = notFound(r.Doc)
			return nil
		}
		if !ok {
			// Nothing to repair: a save that reached the document after
			// verification saw it apart repaired it first (or its stage
			// keeps no legacy row any more). The divergence verification
			// recorded meanwhile is closed, or it would stay open and
			// fail the cohort's gate for good.
			e.closeDivergences(bc, st, DivergenceOutOfBand, OutcomeConsistent)
		}
		o.res = Result{Doc: st.id, Outcome: out, Revision: st.revision, Stage: bc.stages[st.tenant], ShardEpoch: e.epoch,
			LedgerSeq: st.ledgerSeq, LedgerHash: hex.EncodeToString(st.ledgerHash), Receipt: st.receipt()}
		return nil
	}
	if st.exists && st.tenant != r.Tenant && r.Kind != KindReject {
		// I8: another tenant's document does not exist for this caller.
		e.reject(bc, st, o, http.StatusNotFound, CodeNotFound, "no document "+strconv.Quote(r.Doc)+" for this tenant")
		o.err = notFound(r.Doc)
		return nil
	}
	switch r.Kind {
	case KindReject:
		en := e.entry(bc, st, o, ledger.KindRejected)
		en.Code, en.Reason = r.Code, r.Reason
		if r.Content != "" {
			// A save the gateway refused (an expired token, the rate
			// limit) with its text: the hash, as reject records it.
			en.ContentSHA256 = ledger.SHA256Hex([]byte(r.Content))
		}
		refusedUpdate(&en, r.Update, r.UpdateTrace)
		sealed := e.appendLedger(bc, st, en)
		o.res = Result{Doc: st.id, Outcome: OutcomeRecorded}
		e.stamp(&o.res, st, sealed)
		return nil
	case KindCreate:
		return e.applyCreate(bc, st, o)
	case KindSave:
		return e.applySave(ctx, bc, st, o)
	case KindYjs:
		return e.applyYjs(ctx, bc, st, o)
	case KindSync1:
		return e.applySync1(bc, st, o)
	case KindDisconnect:
		return e.applyDisconnect(bc, st, o)
	}
	return nil
}

func (e *Engine) checkContent(bc *batchCtx, st *docState, o *op) bool {
	r := &o.req
	if len(r.Content) > contract.MaxContentBytes {
		e.reject(bc, st, o, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("content is %d bytes, the limit is %d", len(r.Content), contract.MaxContentBytes))
		return false
	}
	if r.Title != nil && len(*r.Title) > contract.MaxTitleBytes {
		e.reject(bc, st, o, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("title is %d bytes, the limit is %d", len(*r.Title), contract.MaxTitleBytes))
		return false
	}
	if !utf8.ValidString(r.Content) || (r.Title != nil && !utf8.ValidString(*r.Title)) {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidRequest, "content and title must be UTF-8")
		return false
	}
	if strings.IndexByte(r.Content, 0) >= 0 || (r.Title != nil && strings.IndexByte(*r.Title, 0) >= 0) {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidRequest, "content and title must not contain U+0000 (the document store cannot hold it)")
		return false
	}
	return true
}

// initYjs gives a document its Yjs representation (a new generation)
// holding text, written as the first update of the generation.
func (e *Engine) initYjs(bc *batchCtx, st *docState, text string) error {
	st.newYDoc()
	st.generation++
	// The generation starts with the genesis of text (backfill.go), the
	// same bytes the backfill writes: an empty text still gets an (empty)
	// first update, so the document is known to have a Yjs representation.
	u, err := genesisUpdate(st.generation, text)
	if err != nil {
		return err
	}
	if err := st.ydoc.ApplyUpdate(u); err != nil {
		return err
	}
	e.appendYjs(bc, st, u, "server:init")
	e.writeSnapshot(bc, st)
	return nil
}

func (e *Engine) appendYjs(bc *batchCtx, st *docState, u []byte, origin string) int64 {
	st.logSeq++
	st.logBytes += int64(len(u))
	bc.yDoc, bc.ySeq, bc.yGen, bc.yUpd, bc.yOrigin = append(bc.yDoc, st.id), append(bc.ySeq, st.logSeq), append(bc.yGen, st.generation), append(bc.yUpd, u), append(bc.yOrigin, origin)
	if e.snapshotDue(st) {
		e.writeSnapshot(bc, st)
	}
	return st.logSeq
}

// snapshotLogShare and snapshotMaxFactor pace compaction: a document's
// log is compacted into a new snapshot once it holds SnapshotEvery
// updates and 1/snapshotLogShare of the snapshot's bytes, or
// snapshotMaxFactor*SnapshotEvery updates whatever their size. A
// snapshot is the whole state, so compacting every SnapshotEvery updates
// rewrote a long essay's state (hundreds of KiB) every 64 keystrokes: the
// document's lifetime writes grew with the square of its length. Paced by
// bytes, a document whose state is under about 4*1024 updates' worth
// (some 120 KiB of keystrokes) writes at most about snapshotLogShare
// times its updates' bytes in snapshots; a larger one is compacted every
// 1024 updates, its writes still growing with the square of its length,
// 16 times slower than before. A cold load (or a verification) replays at
// most a quarter of the state's size, and 1024 updates, from the log.
const (
	snapshotLogShare  = 4
	snapshotMaxFactor = 16
)

// snapshotDue reports whether st's log should be compacted.
func (e *Engine) snapshotDue(st *docState) bool {
	n := st.logSeq - st.snapSeq
	every := int64(e.cfg.SnapshotEvery)
	return n >= every && (n >= snapshotMaxFactor*every || snapshotLogShare*st.logBytes >= st.snapBytes)
}

func (e *Engine) writeSnapshot(bc *batchCtx, st *docState) {
	bc.snaps[st.id] = st // written from the final state when the group flushes
}

// writeRevision records the legacy store's new revision: the row (content
// only where the stage writes the legacy representation) and its history.
// yseq > 0 keeps the revision by reference to that position of the Yjs
// log; otherwise it is kept whole or as a splice of the revision before.
// It returns the text's sha256.
func (e *Engine) writeRevision(bc *batchCtx, st *docState, stage dataplane.SaveStage, user, text string, create bool, yseq int64) string {
	prevText, prevKnown := st.revText, st.revTextOf == st.revision && st.revision > 0
	st.revision++
	st.updatedAt = bc.now
	if writesLegacy(stage.Stage) {
		st.content = text
	}
	if create {
		st.exists = true
		st.createdAt = bc.now
		bc.created[st.id] = true
		bc.pre.Queue(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			st.id, st.tenant, st.owner, st.title, st.content, st.revision, e.cfg.Shard, bc.now)
	} else {
		bc.docRows[st.id] = st // final state written when the group flushes
	}
	sha := ledger.SHA256Hex([]byte(text))
	spliced, head, tail := false, 0, 0
	if yseq == 0 && prevKnown && st.revDepth < spliceChain-1 && len(text) >= spliceMinBytes {
		head, tail = spliceBounds(prevText, text)
		spliced = len(text)-head-tail <= len(text)/2
	}
	// The text is sent once: whole, as a splice, or not at all (by
	// reference); the other columns get "".
	whole, part := text, ""
	switch {
	case yseq > 0:
		whole = ""
	case spliced:
		whole, part = "", text[head:len(text)-tail]
	}
	if spliced {
		st.revDepth++
	} else {
		st.revDepth = 0
	}
	if yseq > 0 {
		// Its text is what replaying the Yjs log gives; a splice is only
		// ever taken against text stored as text.
		st.revText, st.revTextOf = "", 0
	} else {
		st.revText, st.revTextOf = text, st.revision
	}
	bc.revDoc, bc.revNum, bc.revTitle, bc.revContent = append(bc.revDoc, st.id), append(bc.revNum, st.revision), append(bc.revTitle, st.title), append(bc.revContent, whole)
	bc.revSHA, bc.revRef, bc.revYSeq = append(bc.revSHA, sha), append(bc.revRef, yseq > 0), append(bc.revYSeq, yseq)
	bc.revSplice, bc.revSplHead, bc.revSplTail = append(bc.revSplice, spliced), append(bc.revSplHead, int32(head)), append(bc.revSplTail, int32(tail))
	bc.revSplText = append(bc.revSplText, part)
	bc.revKey, bc.revResult = append(bc.revKey, ""), append(bc.revResult, "")
	bc.revBy, bc.revStage, bc.revEpoch = append(bc.revBy, user), append(bc.revStage, stage.Stage), append(bc.revEpoch, stage.Epoch)
	if bc.revPending[st.id] == nil {
		bc.revPending[st.id], bc.revTitles[st.id] = map[int64]string{}, map[int64]string{}
	}
	bc.revPending[st.id][st.revision], bc.revTitles[st.id][st.revision] = text, st.title
	return sha
}

// remember records a keyed save's answer with the revision it made (the
// one writeRevision queued last), so a repeat of the key gets the same
// answer and changes nothing.
func (e *Engine) remember(bc *batchCtx, o *op) error {
	if o.req.IdempotencyKey == "" {
		return nil
	}
	i := len(bc.revDoc) - 1
	if i < 0 || bc.revDoc[i] != o.req.Doc || bc.revNum[i] != o.res.Revision {
		return fmt.Errorf("idempotency key %q of %s: the save made no revision to record it with", o.req.IdempotencyKey, o.req.Doc)
	}
	// The stored answer names the revision and hashes; the content itself
	// is in the save history, not copied here.
	stored := storedResult{Result: o.res, Request: requestFingerprint(&o.req)}
	stored.Content, stored.Receipt = nil, "" // the receipt is ledger_seq:ledger_hash
	raw, err := json.Marshal(stored)
	if err != nil {
		return err
	}
	bc.revKey[i], bc.revResult[i] = o.req.IdempotencyKey, string(raw)
	return nil
}

// storedResult is the answer kept with an idempotency key, with the
// fingerprint of the request that got it.
type storedResult struct {
	Result
	Request string `json:"request_sha256,omitempty"`
}

// requestFingerprint identifies what a keyed request asks for: a retry
// has the same, a different request reusing the key does not.
func requestFingerprint(r *Request) string {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(r.Kind)
	field(r.Doc)
	field(r.Tenant)
	field(r.User)
	field(strconv.FormatInt(r.BaseRevision, 10))
	if r.Title != nil {
		field("title")
		field(*r.Title)
	} else {
		field("")
	}
	field(r.Content)
	return hex.EncodeToString(h.Sum(nil))
}

// refuseReuse refuses a request whose idempotency key an earlier,
// different request of the document already used: answering it with the
// other's result would drop it unsaved.
func (e *Engine) refuseReuse(bc *batchCtx, st *docState, o *op) {
	bc.dirty[st.id] = st // its ledger chain moves
	e.reject(bc, st, o, http.StatusUnprocessableEntity, CodeIdempotencyReuse,
		"idempotency key "+strconv.Quote(o.req.IdempotencyKey)+" was already used for a different request to this document; send a new key for a new save")
}

// maxRecordedSV bounds the state-vector entries a sync step 1 leaves in the
// append-only ledger: a state vector may name 150,000 clients, and one
// request must not become a megabyte row that can never be removed.
const maxRecordedSV = contract.MaxMissingClients

// announcedSV is what the ledger keeps of a client's state vector: the
// clients it holds operations of (a clock of 0 says nothing), those the
// server lacks first, then in client order, at most maxRecordedSV.
func announcedSV(sv yjs.StateVector, missing map[string][2]uint64) map[string]uint64 {
	out := make(map[string]uint64, min(len(sv), maxRecordedSV))
	for c := range missing {
		id, err := strconv.ParseUint(c, 10, 64)
		if err == nil && sv[id] > 0 {
			out[c] = sv[id]
		}
	}
	if len(out) >= maxRecordedSV {
		return out
	}
	ids := make([]uint64, 0, len(sv))
	for c, k := range sv {
		if k > 0 {
			ids = append(ids, c)
		}
	}
	slices.Sort(ids)
	for _, c := range ids {
		if len(out) >= maxRecordedSV {
			break
		}
		out[strconv.FormatUint(c, 10)] = sv[c]
	}
	return out
}

func svMap(sv yjs.StateVector) map[string]uint64 {
	out := make(map[string]uint64, len(sv))
	for c, k := range sv {
		out[strconv.FormatUint(c, 10)] = k
	}
	return out
}

func (e *Engine) applyCreate(bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	if st.exists {
		e.reject(bc, st, o, http.StatusConflict, CodeAlreadyExists, "document "+strconv.Quote(r.Doc)+" already exists")
		return nil
	}
	if st.historyTenant != "" && st.historyTenant != r.Tenant {
		// The ID's history (a document deleted outside the gateway) is
		// another tenant's: continuing it would let this one read it.
		e.reject(bc, st, o, http.StatusConflict, CodeAlreadyExists, "document ID "+strconv.Quote(r.Doc)+" is taken: its save history is kept")
		return nil
	}
	if !e.checkContent(bc, st, o) {
		return nil
	}
	stage := bc.stages[r.Tenant]
	st.tenant, st.owner = r.Tenant, r.User
	if r.Title != nil {
		st.title = *r.Title
	}
	text := r.Content
	sha := e.writeRevision(bc, st, stage, r.User, text, true, 0)
	// An ID whose deleted document had a Yjs side (generation > 0, its
	// rows kept) gets a generation of its own even where the stage writes
	// none for new documents: otherwise the deleted document's generation
	// stays the ID's latest, is loaded as this document's Yjs side, and
	// the repair that follows merges the deleted text into this one.
	if writesYjs(stage.Stage) || st.generation > 0 {
		if err := e.initYjs(bc, st, text); err != nil {
			return err
		}
	}
	en := e.entry(bc, st, o, ledger.KindCreated)
	en.Revision, en.ContentSHA256 = st.revision, sha
	if st.ydoc != nil {
		en.StateVector = svMap(st.ydoc.StateVector())
	}
	sealed := e.appendLedger(bc, st, en)
	o.res = e.docResult(st, stage, OutcomeCreated, text, sha)
	e.stamp(&o.res, st, sealed)
	return e.remember(bc, o)
}

// rebaseCandidates bounds the later revisions rebase looks at.
const rebaseCandidates = 8

// rebase returns the text to merge a stale save against: the latest
// revision after its base whose changes the save already holds (merging
// them into the save changes nothing), else the base's text. The save of
// an editor whose previous save reached the server but whose answer did
// not is built on that save, though it names the base before it; merged
// against that older base, the text the two saves share was written
// twice when someone else had meanwhile typed at the same point.
func (e *Engine) rebase(ctx context.Context, bc *batchCtx, st *docState, baseRev int64, base, save string) (string, error) {
	from := max(baseRev+1, st.revision-rebaseCandidates+1)
	if from > st.revision {
		return base, nil
	}
	texts := map[int64]string{}
	var missing bool
	for rev := from; rev <= st.revision; rev++ {
		if t, ok := bc.revPending[st.id][rev]; ok {
			texts[rev] = t
		} else {
			missing = true
		}
	}
	if missing {
		stored, err := revisionTexts(ctx, bc.conn, st.id, from, st.revision)
		if err != nil {
			if ctx.Err() != nil {
				return "", err
			}
			e.log.Warn("revisions after a stale save's base cannot be read; merged against its base", "doc", st.id, "err", err)
			return base, nil
		}
		for rev, t := range stored {
			if _, ok := texts[rev]; !ok {
				texts[rev] = t
			}
		}
	}
	for rev := st.revision; rev >= from; rev-- {
		t, ok := texts[rev]
		if !ok || t == base {
			continue
		}
		if m := merge.Three(base, t, save); !m.Conflict && m.Text == save {
			return t, nil
		}
	}
	return base, nil
}

// docResult answers a save of text whose sha256 is sha.
func (e *Engine) docResult(st *docState, stage dataplane.SaveStage, outcome, text, sha string) Result {
	t := text
	return Result{Doc: st.id, Outcome: outcome, Revision: st.revision, Title: st.title, Content: &t, Stage: stage,
		ContentSHA256: sha}
}

// text is the document's authoritative text under stage.
func (st *docState) text(stage string) string {
	if st.ydoc != nil && (!legacyAuthoritative(stage) || !st.exists) {
		return st.ytext()
	}
	return st.content
}

func (e *Engine) applySave(ctx context.Context, bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	if !st.exists {
		e.reject(bc, st, o, http.StatusNotFound, CodeNotFound, "no document "+strconv.Quote(r.Doc)+" for this tenant")
		return nil
	}
	if !e.checkContent(bc, st, o) {
		return nil
	}
	if r.BaseRevision < 0 || r.BaseRevision > st.revision {
		e.reject(bc, st, o, http.StatusPreconditionFailed, CodeUnknownRevision,
			fmt.Sprintf("base revision %d is not a revision of this document (latest is %d)", r.BaseRevision, st.revision))
		return nil
	}
	stage := bc.stages[st.tenant]
	cur := st.text(stage.Stage)
	// baseRev: the revision the save is merged against. A revision from
	// before the document the row is now (the ID given to this school
	// outside the gateway, its history numbered on from the other
	// school's) is the revision the row was taken in as: a legacy client
	// of the row holds the legacy application's number for it, which is
	// the other school's revision of that number here.
	baseRev := r.BaseRevision
	if baseRev > 0 && baseRev < st.revision {
		era, err := e.eraOf(ctx, bc, st)
		if err != nil {
			return err
		}
		baseRev = max(baseRev, era)
	}
	stale := baseRev != 0 && baseRev != st.revision
	kind, outcome := ledger.KindCommitted, OutcomeSaved
	text := r.Content
	title := st.title
	if r.Title != nil {
		title = *r.Title
	}
	var superseded, preservedID int64
	var conflict string // why the save was kept aside, for the ledger
	if stale {
		if legacyAuthoritative(stage.Stage) {
			// As the existing store: the save wins; what it overwrote
			// stays readable as its revision. A save of the text and
			// title the document has (a retry, without its key, of one
			// whose answer was lost) overwrites nothing: saved.
			if r.Content != cur || title != st.title {
				kind, outcome, superseded = ledger.KindPreserved, OutcomeOverwrittenPreserved, st.revision
			}
		} else {
			base, ok := bc.revPending[st.id][baseRev]
			if !ok {
				// A revision the history does not hold (the document
				// predates it) gives no base to merge against, so the
				// save's text is kept aside as a conflict; so does one
				// that cannot be rebuilt (logged: the history is damaged).
				texts, err := revisionTexts(ctx, bc.conn, st.id, baseRev, baseRev)
				if err != nil {
					// Only a history that cannot be rebuilt; a read that
					// failed (the connection lost, PostgreSQL restarting)
					// fails the save, which is retried, rather than set
					// the student's text aside unmerged.
					if !errors.Is(err, errDamagedHistory) {
						return err
					}
					e.log.Error("base revision of a stale save cannot be rebuilt; the save's text is preserved as a conflict",
						"doc", st.id, "revision", baseRev, "err", err)
				}
				base, ok = texts[baseRev]
			}
			m := merge.Result{Text: cur}
			switch {
			case ok:
				var err error
				if base, err = e.rebase(ctx, bc, st, baseRev, base, r.Content); err != nil {
					return err
				}
				m = merge.Three(base, cur, r.Content)
			case r.Content != cur:
				m.Conflict = true // no base: any other text is kept aside
			}
			var titleConflict bool
			if r.Title != nil && *r.Title != st.title {
				baseTitle, err := e.revisionTitle(ctx, bc, st.id, baseRev)
				if err != nil {
					return err
				}
				title, titleConflict = mergeTitle(baseTitle, st.title, r.Title)
			}
			// Two saves each under the content limit can merge into a
			// text over it, which no legacy client could then save back.
			tooLarge := len(m.Text) > contract.MaxContentBytes
			text = m.Text
			kind, outcome = ledger.KindMerged, OutcomeMerged
			if m.Conflict || titleConflict || tooLarge {
				// Kept aside whole: the document keeps its text and its
				// title, the save's are both readable where preserved.
				switch {
				case m.Conflict:
					conflict = "three-way merge conflict on the text"
				case titleConflict:
					conflict = "three-way merge conflict on the title: both renamed the document since the save's base revision"
				default:
					conflict = fmt.Sprintf("the merged text would be %d bytes, over the %d-byte content limit", len(m.Text), contract.MaxContentBytes)
				}
				reason := conflict + "; the save's text and title are kept here, the document keeps its current text and title"
				text, title = cur, st.title
				st.preserved++
				preservedID = st.preserved
				kind, outcome = ledger.KindPreserved, OutcomeConflictPreserved
				bc.pre.Queue(`INSERT INTO preserved_content (doc_id, preserved_id, base_revision, content, title, reason, saved_by, saved_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, st.id, preservedID, baseRev, r.Content, r.Title,
					reason, r.User, bc.now)
			}
		}
	}
	st.title = title
	// Yjs first (it may fail), then the legacy row.
	if st.ydoc != nil || writesYjs(stage.Stage) {
		if st.ydoc == nil {
			if err := e.initYjs(bc, st, text); err != nil {
				return err
			}
		} else if u, err := st.setYText(text); err != nil {
			return err
		} else if u != nil {
			e.appendYjs(bc, st, u, "legacy:"+r.User)
		}
	}
	sha := e.writeRevision(bc, st, stage, r.User, text, false, 0)
	en := e.entry(bc, st, o, kind)
	en.BaseRevision, en.Revision, en.Outcome = baseRev, st.revision, outcome
	en.SupersededRevision, en.PreservedID, en.Reason = superseded, preservedID, conflict
	en.ContentSHA256 = sha
	if st.ydoc != nil {
		en.StateVector = svMap(st.ydoc.StateVector())
		en.YjsSeq = st.logSeq
	}
	sealed := e.appendLedger(bc, st, en)
	o.res = e.docResult(st, stage, outcome, text, sha)
	o.res.SupersededRevision, o.res.PreservedID = superseded, preservedID
	e.stamp(&o.res, st, sealed)
	return e.remember(bc, o)
}

// mergeTitle three-way merges a stale save's title, one value: the
// save's title applies if only the save changed it; the current one stays
// if only others did, or if the save sent none; both changed it to
// different titles (or the base's is unknown and the save's differs) is
// a conflict, and the current title stays.
func mergeTitle(base *string, cur string, save *string) (string, bool) {
	switch {
	case save == nil || *save == cur:
		return cur, false
	case base == nil:
		return cur, true
	case *base == *save:
		return cur, false
	case *base == cur:
		return *save, false
	default:
		return cur, true
	}
}

// revisionTitle returns the title of a document's revision, or nil if the
// history does not hold it.
func (e *Engine) revisionTitle(ctx context.Context, bc *batchCtx, doc string, rev int64) (*string, error) {
	if t, ok := bc.revTitles[doc][rev]; ok {
		return &t, nil
	}
	var t string
	err := bc.conn.QueryRow(ctx, `SELECT title FROM document_revisions WHERE doc_id = $1 AND revision = $2`, doc, rev).Scan(&t)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("title of revision %d of %s: %w", rev, doc, err)
	}
	return &t, nil
}

// holdsPending reports whether some of u's operations wait in d after it
// was applied: a struct past its client's integrated clock, or deletions
// the pending delete set took from it (pendDBefore: that set before).
func holdsPending(d *yjs.Doc, u *yjs.DecodedUpdate, pendDBefore []byte) bool {
	if !d.HasPending() {
		return false
	}
	sv := d.StateVector()
	for _, s := range u.Structs {
		if !s.IsSkip() && sv[s.ID.Client] < s.ID.Clock+uint64(s.Len) {
			return true
		}
	}
	_, ds := d.PendingState()
	return len(u.DeleteSet) > 0 && len(ds) > 0 && !bytes.Equal(ds, pendDBefore)
}

func clientsOf(u *yjs.DecodedUpdate) []uint64 {
	var cs []uint64
	for _, s := range u.Structs {
		if s.IsSkip() {
			continue
		}
		cs = append(cs, s.ID.Client)
	}
	for c := range u.DeleteSet {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	return slices.Compact(cs)
}

func (e *Engine) applyYjs(ctx context.Context, bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	if !st.exists && st.historyTenant != "" && st.historyTenant != r.Tenant {
		// As applyCreate: the ID's history (a document deleted outside the
		// gateway) is another tenant's; an update creating it would let
		// this one read that history. (I8)
		e.reject(bc, st, o, http.StatusNotFound, CodeNotFound, "no document "+strconv.Quote(r.Doc)+" for this tenant")
		return nil
	}
	if len(r.Update) > contract.MaxUpdateBytes {
		e.reject(bc, st, o, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("update is %d bytes, the limit is %d", len(r.Update), contract.MaxUpdateBytes))
		return nil
	}
	dec, err := yjs.DecodeUpdate(r.Update)
	if err != nil || len(r.Update) == 0 {
		msg := "not a Yjs v1 update"
		if err != nil {
			msg += ": " + err.Error()
		}
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidUpdate, msg)
		return nil
	}
	// The document's memory grows with its structs, not its text: 2 MiB
	// of text, then 4 MiB of deletions of every other character, made a
	// syncer hold hundreds of MiB for one document.
	have := 0
	if st.ydoc != nil {
		have = st.ydoc.StructCount()
	}
	if add := dec.MaxNewStructs(); have+add > contract.MaxDocStructs {
		e.reject(bc, st, o, http.StatusRequestEntityTooLarge, CodeTooLarge,
			fmt.Sprintf("the document holds %d Yjs structs and this update may add up to %d; the limit is %d", have, add, contract.MaxDocStructs))
		return nil
	}
	create := !st.exists
	if create {
		if c := staleStructs(nil, dec); c != 0 {
			// A copy of a document deleted outside the gateway (its
			// operations build on that document's genesis): created from
			// it, the ID would come back empty, owned by this user, with
			// the edit waiting for ever for text that is gone.
			e.reject(bc, st, o, http.StatusConflict, CodeForeignHistory, fmt.Sprintf(
				"this update comes from a copy of a document with this ID that was deleted (it builds on genesis client %d): nothing was created; keep the copy aside and reload", c))
			return nil
		}
		if c := pastStructs(st.pastSV, dec); c != 0 {
			// The ID had a document with a Yjs side, deleted outside the
			// gateway, and this update is from a copy of it (an edit, or
			// the whole copy sent again by a reconnecting client): it
			// would bring the deleted document back.
			e.reject(bc, st, o, http.StatusConflict, CodeForeignHistory, fmt.Sprintf(
				"this update comes from a copy of the document with this ID that was deleted (client %d wrote in it): nothing was created; keep the copy aside and reload", c))
			return nil
		}
		st.tenant, st.owner = r.Tenant, r.User
	}
	stage := bc.stages[st.tenant]
	initialized := false
	if st.ydoc == nil {
		if err := e.initYjs(bc, st, st.content); err != nil {
			return err
		}
		initialized = !create
	}
	if c := staleStructs(st.ydoc.StateVector(), dec); !create && c != 0 {
		// Operations of an earlier generation's genesis: the client's copy
		// is of the document deleted before this ID was taken again.
		// Integrated, the deleted text would join this document's.
		e.reject(bc, st, o, http.StatusConflict, CodeForeignHistory, fmt.Sprintf(
			"this update comes from a copy of an earlier document with this ID (genesis client %d, which the document's history does not have): reload the document", c))
		return nil
	}
	if c := pastStructs(st.pastSV, dec); !create && c != 0 {
		// The ID was taken again, and this update is from a copy of the
		// document deleted before: merged, the deleted text would join
		// the new document's.
		e.reject(bc, st, o, http.StatusConflict, CodeForeignHistory, fmt.Sprintf(
			"this update comes from a copy of an earlier document with this ID (client %d wrote in it): reload the document", c))
		return nil
	}
	if !create && foreignItem(st, dec) {
		if handled, err := e.applyForeign(ctx, bc, st, o, dec, stage); handled || err != nil {
			return err
		}
	}
	// What waits for missing operations, before: an update that only adds
	// to it changes the document too (it takes effect once they arrive),
	// so it is logged, not answered as a duplicate.
	pendS, pendD := st.ydoc.PendingState()
	pendS, pendD = bytes.Clone(pendS), bytes.Clone(pendD)
	textBefore := st.ytext()
	st.capturing, st.captured = true, nil
	err = st.ydoc.ApplyUpdate(r.Update)
	changed := len(st.captured) > 0
	st.capturing, st.captured = false, nil
	if err != nil {
		// Integration failed after decoding: the in-memory document may
		// be partly changed; it is reloaded after the group.
		bc.dirty[st.id] = st
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidUpdate, "update cannot be integrated: "+err.Error())
		e.cache.evict(st.id)
		return nil
	}
	if !changed {
		s, d := st.ydoc.PendingState()
		changed = !bytes.Equal(s, pendS) || !bytes.Equal(d, pendD)
	}
	if !changed && !create {
		o.res = Result{Doc: st.id, Outcome: OutcomeDuplicate, Revision: st.revision, Stage: stage,
			StateVector: st.ydoc.EncodeStateVector(), ShardEpoch: e.epoch, LedgerSeq: st.ledgerSeq, LedgerHash: hex.EncodeToString(st.ledgerHash),
			Receipt: st.receipt()}
		if initialized {
			// The update added nothing, but the legacy-only document got
			// its Yjs representation for it (the genesis of its text):
			// that write goes on record like every other.
			en := e.entry(bc, st, o, ledger.KindCommitted)
			en.Outcome, en.Clients, en.UpdateSHA256, en.YjsSeq = OutcomeDuplicate, clientsOf(dec), ledger.SHA256Hex(r.Update), st.logSeq
			en.Revision, en.ContentSHA256 = st.revision, ledger.SHA256Hex([]byte(st.ytext()))
			en.StateVector = svMap(st.ydoc.StateVector())
			e.stamp(&o.res, st, e.appendLedger(bc, st, en))
		}
		return nil
	}
	seq := e.appendYjs(bc, st, r.Update, "client:"+r.User)
	e.closeGaps(bc, st)
	text := st.ytext()
	sha := ""
	if create || text != textBefore {
		ref := seq // the Yjs log holds this text: the revision refers to it
		if create {
			ref = 0
		}
		sha = e.writeRevision(bc, st, stage, r.User, text, create, ref)
	}
	kind := ledger.KindCommitted
	if create {
		kind = ledger.KindCreated
	}
	en := e.entry(bc, st, o, kind)
	en.Clients, en.UpdateSHA256, en.YjsSeq = clientsOf(dec), ledger.SHA256Hex(r.Update), seq
	if sha == "" {
		sha = ledger.SHA256Hex([]byte(text))
	}
	en.Revision, en.ContentSHA256 = st.revision, sha
	en.StateVector = svMap(st.ydoc.StateVector())
	outcome := OutcomeSaved
	if holdsPending(st.ydoc, dec, pendD) {
		// Only when this update's own operations wait: one that entered
		// the text while another client's waits is saved.
		outcome = OutcomePending
		en.Reason = st.ydoc.PendingError().Error()
	}
	en.Outcome = outcome
	sealed := e.appendLedger(bc, st, en)
	o.res = Result{Doc: st.id, Outcome: outcome, Revision: st.revision, Stage: stage, StateVector: st.ydoc.EncodeStateVector(),
		ContentSHA256: en.ContentSHA256}
	e.stamp(&o.res, st, sealed)
	return nil
}

func (e *Engine) applySync1(bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	sv, err := yjs.DecodeStateVector(r.StateVector)
	if err != nil {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidSV, "not a Yjs state vector: "+err.Error())
		return nil
	}
	stage := bc.stages[r.Tenant]
	if st.exists {
		stage = bc.stages[st.tenant]
	}
	var update []byte
	missing := map[string][2]uint64{}
	if st.exists && st.ydoc == nil {
		// A local-first client opens a legacy-only document: it gets a
		// Yjs representation now (the document's text as generation 1).
		if err := e.initYjs(bc, st, st.content); err != nil {
			return err
		}
	}
	gaps := map[uint64][2]uint64{}
	if st.ydoc != nil {
		if c := staleGenesis(sv, st.ydoc.StateVector()); c != 0 {
			// A copy of the document as it was before it was deleted and
			// its ID taken again: answered, it would be garbled.
			e.reject(bc, st, o, http.StatusConflict, CodeForeignHistory, fmt.Sprintf(
				"this copy is of an earlier document with this ID (its state vector names genesis client %d, which the document's history does not have): reload the document", c))
			return nil
		}
		update = st.ydoc.EncodeStateAsUpdate(sv)
		for c, rg := range st.ydoc.Missing(sv) {
			missing[strconv.FormatUint(c, 10)] = [2]uint64{rg.Clock, rg.End()}
			gaps[c] = [2]uint64{rg.Clock, rg.End()}
		}
	} else {
		update = yjs.NewDoc(yjs.Options{ClientID: 1}).EncodeStateAsUpdate(nil)
		for c, k := range sv {
			if k > 0 {
				missing[strconv.FormatUint(c, 10)] = [2]uint64{0, k}
				gaps[c] = [2]uint64{0, k}
			}
		}
	}
	if len(missing) > contract.MaxMissingClients {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidSV, fmt.Sprintf("the state vector names %d clients with operations the server does not have; at most %d are taken",
			len(missing), contract.MaxMissingClients))
		return nil
	}
	if st.exists && st.tenant == r.Tenant {
		e.noteGaps(bc, st, st.tenant, gaps)
	}
	o.res = Result{Doc: st.id, Outcome: OutcomeRecorded, Revision: st.revision, Stage: stage, Update: update}
	if len(missing) > 0 {
		o.res.Missing = missing
	}
	if st.ydoc != nil {
		o.res.StateVector = st.ydoc.EncodeStateVector()
	}
	if r.Again {
		o.res.Outcome, o.res.ShardEpoch = OutcomeDuplicate, e.epoch
		return nil
	}
	en := e.entry(bc, st, o, ledger.KindStateVector)
	en.StateVector = announcedSV(sv, missing)
	if len(missing) > 0 {
		en.Missing = missing
	}
	en.Revision = st.revision
	e.stamp(&o.res, st, e.appendLedger(bc, st, en))
	return nil
}

func (e *Engine) knownTenant(t string) bool {
	e.tenantsMu.Lock()
	defer e.tenantsMu.Unlock()
	_, ok := e.tenants[t]
	return ok
}
