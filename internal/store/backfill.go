package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// GenesisClientID is the Yjs client ID of every backfill genesis: the
// first update of a legacy-only document's Yjs representation, inserting
// the legacy text at clock 0. It is fixed, so the genesis of a given text
// is the same bytes whoever makes it and however often: two geneses of
// one text merge into one, never into duplicated text. It is above the
// 32-bit range browsers draw from and below the range of serverClient.
const GenesisClientID uint64 = 1<<52 - 1

// genesisRange bounds the generations whose geneses have client IDs of
// their own (genesisClient); a document re-created that often is not
// expected.
const genesisRange = 1 << 20

// genesisClient is the client ID of generation gen's genesis:
// GenesisClientID for the first (every backfill and every document's
// first Yjs representation, as before generations had IDs of their own),
// one below for each later one. A generation after the first starts when
// a document's ID is taken again after the document was deleted outside
// the gateway; with the one fixed ID its genesis looked, to a client
// still holding the deleted document's copy, like a continuation of the
// old one whenever its text was as long, and the client's copy was
// answered against a different text and garbled. With an ID of its own,
// such a state vector names a genesis the document does not have
// (staleGenesis) and is refused.
func genesisClient(gen int64) uint64 {
	if gen <= 1 {
		return GenesisClientID
	}
	return GenesisClientID - uint64(min(gen-1, genesisRange-1))
}

// isGenesisClient reports whether c is the client ID of some generation's
// genesis.
func isGenesisClient(c uint64) bool {
	return c <= GenesisClientID && c > GenesisClientID-genesisRange
}

// staleGenesis returns a genesis client ID sv holds operations of that
// the document's Yjs representation (whose state vector is have) does not
// have: sv is of a copy of another generation of the document (0: none).
func staleGenesis(sv, have yjs.StateVector) uint64 {
	for c, k := range sv {
		if k > 0 && isGenesisClient(c) && have[c] == 0 {
			return c
		}
	}
	return 0
}

// OriginBackfill is the origin of a backfill genesis in yjs_updates.
const OriginBackfill = "server:backfill"

// GenesisUpdate returns the genesis update of text (GenesisClientID
// inserting it into the text named contract.YjsTextName).
func GenesisUpdate(text string) ([]byte, error) { return genesisUpdate(1, text) }

// genesisUpdate is generation gen's genesis of text.
func genesisUpdate(gen int64, text string) ([]byte, error) {
	g := yjs.NewDoc(yjs.Options{ClientID: genesisClient(gen)})
	if text != "" {
		t := g.GetText(contract.YjsTextName)
		if err := g.Transact(func(*yjs.Transaction) error { return t.Insert(0, text, nil) }); err != nil {
			return nil, err
		}
	}
	return g.EncodeStateAsUpdate(nil), nil
}

// BackfillCheckpoint is where a cohort's backfill on this shard got to.
type BackfillCheckpoint struct {
	Rollout string
	Cohort  string
	// Epoch is the cohort epoch the checkpoint was taken under.
	Epoch      int64
	AfterDoc   string
	Backfilled int64
}

// LoadBackfillCheckpoint returns the shard's checkpoint of a cohort (the
// zero checkpoint, with Rollout and Cohort set, if there is none).
func (e *Engine) LoadBackfillCheckpoint(ctx context.Context, rollout, cohort string) (BackfillCheckpoint, error) {
	cp := BackfillCheckpoint{Rollout: rollout, Cohort: cohort}
	err := e.pool.QueryRow(ctx, `SELECT epoch, after_doc, backfilled FROM backfill_checkpoints
		WHERE rollout = $1 AND cohort = $2 AND shard = $3`, rollout, cohort, e.cfg.Shard).Scan(&cp.Epoch, &cp.AfterDoc, &cp.Backfilled)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return cp, fmt.Errorf("backfill checkpoint of %s/%s: %w", rollout, cohort, err)
	}
	return cp, nil
}

// BackfillResult is what one backfill transaction did.
type BackfillResult struct {
	// Backfilled documents got their genesis in this transaction.
	Backfilled int
	// Skipped documents already had a Yjs representation, or their
	// cohort is not (any longer) at a backfill stage, or they do not
	// exist, or another transaction held their row (taken by a later
	// pass).
	Skipped int
}

// Backfill gives each of docs (documents of this shard, in doc_id order)
// that has no Yjs representation yet its genesis: generation 1 holding the
// legacy text, made by GenesisClientID. It runs in the shard's
// single-writer discipline: it holds every group-commit lane for the
// duration, so no save of these documents runs concurrently, and its one
// transaction checks the shard epoch (fence) and reads each tenant's
// cohort stage FOR SHARE like a save, writes a ledger entry of kind
// backfill per document under that (stage, epoch), and advances the
// checkpoint cp to the last of docs in the same transaction. Documents
// already represented are skipped, so running it again changes nothing.
func (e *Engine) Backfill(ctx context.Context, cp BackfillCheckpoint, docs []string) (BackfillResult, error) {
	var res BackfillResult
	if len(docs) == 0 {
		return res, nil
	}
	docs = slices.Clone(docs)
	slices.Sort(docs)
	docs = slices.Compact(docs)
	for _, l := range e.lanes {
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	if e.isFenced.Load() {
		return res, ErrFenced
	}
	bc := e.newBatchCtx()
	var err error
	defer func() {
		if err != nil {
			for id := range bc.dirty {
				e.cache.evict(id)
			}
		}
	}()
	res, err = e.backfill(ctx, bc, cp, docs)
	return res, err
}

func (e *Engine) backfill(ctx context.Context, bc *batchCtx, cp BackfillCheckpoint, docs []string) (BackfillResult, error) {
	var res BackfillResult
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Release()
	bc.conn = conn
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
		return res, err
	}
	var leaseEpoch int64
	if err := tx.QueryRow(ctx, `SELECT epoch FROM shard_leases WHERE shard = $1 FOR SHARE`, e.cfg.Shard).Scan(&leaseEpoch); err != nil {
		return res, fmt.Errorf("backfill: shard lease: %w", err)
	}
	if leaseEpoch != e.epoch {
		e.fence(fmt.Sprintf("shard epoch is %d, this syncer holds %d", leaseEpoch, e.epoch))
		return res, ErrFenced
	}
	// Tenants never change: read them first, lock their stages the way a
	// save does, then read the rows (FOR UPDATE, so an out-of-band write
	// cannot slip between the read and the genesis). A row another
	// transaction holds (the legacy application's, say) is skipped, not
	// waited for: this transaction holds every lane of the shard, and
	// waiting would stop every save on it for as long as that other
	// transaction stays open. A skipped document still lacks its genesis,
	// so the rescan that completion waits for takes it later.
	var tenants []string
	rows, err := tx.Query(ctx, `SELECT DISTINCT tenant FROM documents WHERE doc_id = ANY($1::text[]) AND shard = $2`, docs, e.cfg.Shard)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return res, err
		}
		tenants = append(tenants, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}
	if len(tenants) > 0 {
		if bc.stages, err = dataplane.LockSaveStages(ctx, tx, e.cfg.Rollout, tenants); err != nil {
			return res, err
		}
	}
	fromDB := map[string]*docState{}
	rows, err = tx.Query(ctx, `
		SELECT d.doc_id, d.tenant, d.owner, d.title, d.content, d.revision, d.created_at, d.updated_at,
		       EXISTS (SELECT 1 FROM yjs_snapshots s WHERE s.doc_id = d.doc_id)
		         OR EXISTS (SELECT 1 FROM yjs_updates u WHERE u.doc_id = d.doc_id),
		       l.seq, l.hash,
		       (SELECT coalesce(max(preserved_id), 0) FROM preserved_content p WHERE p.doc_id = d.doc_id)
		FROM documents d
		LEFT JOIN LATERAL (SELECT seq, hash FROM save_ledger l WHERE l.doc_id = d.doc_id ORDER BY seq DESC LIMIT 1) l ON true
		WHERE d.doc_id = ANY($1::text[]) AND d.shard = $2
		ORDER BY d.doc_id
		FOR UPDATE OF d SKIP LOCKED`, docs, e.cfg.Shard)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		st := &docState{exists: true}
		var hasYjs bool
		var seq *int64
		if err := rows.Scan(&st.id, &st.tenant, &st.owner, &st.title, &st.content, &st.revision, &st.createdAt, &st.updatedAt,
			&hasYjs, &seq, &st.ledgerHash, &st.preserved); err != nil {
			rows.Close()
			return res, err
		}
		if seq != nil {
			st.ledgerSeq = *seq
		}
		if !hasYjs {
			fromDB[st.id] = st
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}
	for _, id := range docs {
		st := fromDB[id]
		if st == nil {
			res.Skipped++
			continue
		}
		if cached := e.cache.get(id); cached != nil && cached.ydoc != nil {
			res.Skipped++
			continue
		}
		// The row as read FOR UPDATE here, not a cached copy: the genesis
		// must be of the text the row holds now.
		stage := bc.stages[st.tenant]
		if !dataplane.Backfills(stage.Stage) {
			res.Skipped++
			continue
		}
		bc.dirty[st.id] = st
		if err := e.genesis(bc, st, stage); err != nil {
			return res, fmt.Errorf("backfill %s: %w", st.id, err)
		}
		res.Backfilled++
	}
	b := &pgx.Batch{}
	e.flush(bc, b)
	if cp.Rollout != "" {
		b.Queue(`
			INSERT INTO backfill_checkpoints (rollout, cohort, shard, epoch, after_doc, backfilled, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (rollout, cohort, shard) DO UPDATE SET epoch = EXCLUDED.epoch, after_doc = EXCLUDED.after_doc,
			  backfilled = CASE WHEN backfill_checkpoints.epoch = EXCLUDED.epoch
			                    THEN backfill_checkpoints.backfilled + EXCLUDED.backfilled ELSE EXCLUDED.backfilled END,
			  updated_at = EXCLUDED.updated_at`,
			cp.Rollout, cp.Cohort, e.cfg.Shard, cp.Epoch, docs[len(docs)-1], int64(res.Backfilled), bc.now)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	for id := range bc.dirty {
		e.cache.evict(id) // reloaded, with the new representation, when next used
	}
	return res, nil
}

// genesis gives st its Yjs representation from its legacy text and
// records it in the ledger under stage.
func (e *Engine) genesis(bc *batchCtx, st *docState, stage dataplane.SaveStage) error {
	gen := st.generation + 1
	u, err := genesisUpdate(gen, st.content)
	if err != nil {
		return err
	}
	// The genesis is the document's whole state: it is the snapshot as
	// it stands (the document is not kept in memory after the backfill,
	// so no Yjs document is built here; verification checks the text).
	sv := yjs.StateVector{}
	if n := yjs.UTF16Len(st.content); n > 0 {
		sv[genesisClient(gen)] = uint64(n)
	}
	st.generation = gen
	seq := e.appendYjs(bc, st, u, OriginBackfill)
	st.snapRaw = &rawSnapshot{state: u, sv: yjs.EncodeStateVector(sv), text: st.content}
	e.writeSnapshot(bc, st)
	en := ledger.Entry{
		Kind: ledger.KindBackfill, At: bc.now, Tenant: st.tenant, User: "server:backfill",
		Stage: stage.Stage, Cohort: stage.Cohort, Epoch: stage.Epoch, Protocol: "yjs",
		Revision: st.revision, ContentSHA256: ledger.SHA256Hex([]byte(st.content)), UpdateSHA256: ledger.SHA256Hex(u),
		Clients: []uint64{genesisClient(gen)}, YjsSeq: seq, StateVector: svMap(sv), Outcome: "backfilled",
	}
	e.appendLedger(bc, st, en)
	return nil
}
