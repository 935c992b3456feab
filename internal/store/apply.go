package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

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

// batchCtx is the state of one group commit.
type batchCtx struct {
	tx     pgx.Tx
	b      *pgx.Batch
	now    time.Time
	stages map[string]dataplane.SaveStage
	dirty  map[string]*docState
	idem   map[[2]string]*op
}

// apply runs one group commit over ops. A nil return means every op has
// its result or refusal set and the transaction committed.
func (e *Engine) apply(ctx context.Context, ops []*op) (err error) {
	bc := &batchCtx{b: &pgx.Batch{}, now: now(), dirty: map[string]*docState{}, idem: map[[2]string]*op{}}
	defer func() {
		if err != nil {
			for id := range bc.dirty {
				e.cache.evict(id)
			}
		}
	}()
	var live []*op
	var tenants []string
	for _, o := range ops {
		if verr := e.validate(&o.req); verr != nil {
			o.err = verr
			continue
		}
		st, err := e.doc(ctx, o.req.Doc)
		if err != nil {
			return err
		}
		if k := o.req.IdempotencyKey; k != "" && (o.req.Kind == KindCreate || o.req.Kind == KindSave) {
			if prev, ok := bc.idem[[2]string{o.req.Doc, k}]; ok {
				o.res, o.err = prev.res, prev.err // answered when prev is applied, below
				o.res.Replayed = true
				live = append(live, o)
				continue
			}
			var raw []byte
			err := e.pool.QueryRow(ctx, `SELECT result FROM save_requests WHERE doc_id = $1 AND idem_key = $2`, o.req.Doc, k).Scan(&raw)
			if err == nil {
				var r Result
				if err := json.Unmarshal(raw, &r); err != nil {
					return fmt.Errorf("stored result of %s/%s: %w", o.req.Doc, k, err)
				}
				if st.exists && st.tenant != o.req.Tenant {
					o.err = notFound(o.req.Doc)
					continue
				}
				r.Replayed = true
				o.res = r
				continue
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			bc.idem[[2]string{o.req.Doc, k}] = o
		}
		live = append(live, o)
		tenants = append(tenants, o.req.Tenant)
		if st.exists {
			tenants = append(tenants, st.tenant)
		}
	}
	if len(live) == 0 {
		return nil
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	bc.tx = tx
	var leaseEpoch int64
	if err := tx.QueryRow(ctx, `SELECT epoch FROM shard_leases WHERE shard = $1 FOR SHARE`, e.cfg.Shard).Scan(&leaseEpoch); err != nil {
		return fmt.Errorf("fence check: %w", err)
	}
	if leaseEpoch != e.epoch {
		e.fence(fmt.Sprintf("shard epoch is %d, this syncer holds %d", leaseEpoch, e.epoch))
		return ErrFenced
	}
	bc.stages, err = dataplane.LockSaveStages(ctx, tx, e.cfg.Rollout, tenants)
	if err != nil {
		return err
	}
	for _, o := range live {
		if o.res.Replayed {
			continue
		}
		st, _ := e.doc(ctx, o.req.Doc) // loaded above; still cached (batch holds mu)
		if st == nil {
			if st, err = e.doc(ctx, o.req.Doc); err != nil {
				return err
			}
		}
		bc.dirty[st.id] = st
		if err := e.applyOne(ctx, bc, st, o); err != nil {
			return err
		}
	}
	br := tx.SendBatch(ctx, bc.b)
	for range bc.b.Len() {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	// Requests that repeated an idempotency key within the group get the
	// first one's answer.
	for _, o := range live {
		if o.res.Replayed && o.res.Doc == "" && o.err == nil {
			prev := bc.idem[[2]string{o.req.Doc, o.req.IdempotencyKey}]
			o.res, o.err = prev.res, prev.err
			o.res.Replayed = true
		}
	}
	return nil
}

func notFound(doc string) *Error {
	return errf(http.StatusNotFound, CodeNotFound, "no document %q for this tenant", doc)
}

// validate refuses requests that cannot be applied at all (no ledger
// entry: they do not name a document this shard can hold).
func (e *Engine) validate(r *Request) *Error {
	switch {
	case r.Doc == "" || len(r.Doc) > contract.MaxIDBytes || !utf8.ValidString(r.Doc):
		return errf(http.StatusBadRequest, CodeInvalidRequest, "document ID must be 1..%d bytes of UTF-8", contract.MaxIDBytes)
	case r.Tenant == "" || len(r.Tenant) > contract.MaxIDBytes:
		return errf(http.StatusBadRequest, CodeInvalidRequest, "tenant must be 1..%d bytes", contract.MaxIDBytes)
	case placement.Shard(r.Doc, e.cfg.Shards) != e.cfg.Shard:
		return errf(http.StatusMisdirectedRequest, CodeWrongShard, "document %q lives on shard %d, not %d", r.Doc, placement.Shard(r.Doc, e.cfg.Shards), e.cfg.Shard)
	case len(r.IdempotencyKey) > contract.MaxIDBytes:
		return errf(http.StatusBadRequest, CodeInvalidRequest, "idempotency key longer than %d bytes", contract.MaxIDBytes)
	}
	switch r.Kind {
	case KindCreate, KindSave, KindYjs, KindSync1, KindReject:
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
	if o.req.Update != nil {
		en.UpdateSHA256 = ledger.SHA256Hex(o.req.Update)
	}
	e.appendLedger(bc, st, en)
	o.err = &Error{Status: status, Code: code, Message: msg}
}

func (e *Engine) entry(bc *batchCtx, st *docState, o *op, kind string) ledger.Entry {
	tenant := o.req.Tenant
	stage := bc.stages[tenant]
	if st.exists {
		stage = bc.stages[st.tenant]
	}
	proto := "legacy"
	if o.req.Kind == KindYjs || o.req.Kind == KindSync1 {
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
	bc.b.Queue(`INSERT INTO save_ledger (doc_id, seq, kind, tenant, at, body, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		st.id, row.Seq, en.Kind, en.Tenant, bc.now, string(row.Body), row.PrevHash, row.Hash)
	st.ledgerSeq, st.ledgerHash = row.Seq, row.Hash
	return sealed
}

func (e *Engine) stamp(res *Result, st *docState, sealed ledger.Entry) {
	res.LedgerSeq = sealed.Seq
	res.LedgerHash = hex.EncodeToString(st.ledgerHash)
	res.ShardEpoch = e.epoch
}

func (e *Engine) applyOne(ctx context.Context, bc *batchCtx, st *docState, o *op) error {
	r := &o.req
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
		sealed := e.appendLedger(bc, st, en)
		o.res = Result{Doc: st.id, Outcome: OutcomeRecorded}
		e.stamp(&o.res, st, sealed)
		return nil
	case KindCreate:
		return e.applyCreate(bc, st, o)
	case KindSave:
		return e.applySave(ctx, bc, st, o)
	case KindYjs:
		return e.applyYjs(bc, st, o)
	case KindSync1:
		return e.applySync1(bc, st, o)
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
	return true
}

// initYjs gives a document its Yjs representation (a new generation)
// holding text, written as the first update of the generation.
func (e *Engine) initYjs(bc *batchCtx, st *docState, text string) error {
	st.newYDoc()
	st.generation++
	u, err := st.setYText(text)
	if err != nil {
		return err
	}
	if u == nil {
		// An empty text still gets a (empty) first update, so the
		// document is known to have a Yjs representation.
		u = st.ydoc.EncodeStateAsUpdate(nil)
	}
	e.appendYjs(bc, st, u, "server:init")
	e.writeSnapshot(bc, st)
	return nil
}

func (e *Engine) appendYjs(bc *batchCtx, st *docState, u []byte, origin string) int64 {
	st.logSeq++
	bc.b.Queue(`INSERT INTO yjs_updates (doc_id, seq, generation, update, origin, shard_epoch, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		st.id, st.logSeq, st.generation, u, origin, e.epoch, bc.now)
	if st.logSeq-st.snapSeq >= int64(e.cfg.SnapshotEvery) {
		e.writeSnapshot(bc, st)
	}
	return st.logSeq
}

func (e *Engine) writeSnapshot(bc *batchCtx, st *docState) {
	st.snapSeq = st.logSeq
	bc.b.Queue(`
		INSERT INTO yjs_snapshots (doc_id, generation, upto_seq, state, state_vector, text, at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (doc_id) DO UPDATE SET generation = EXCLUDED.generation, upto_seq = EXCLUDED.upto_seq, state = EXCLUDED.state,
		  state_vector = EXCLUDED.state_vector, text = EXCLUDED.text, at = EXCLUDED.at`,
		st.id, st.generation, st.logSeq, st.ydoc.EncodeStateAsUpdate(nil), st.ydoc.EncodeStateVector(), st.ytext(), bc.now)
}

// writeRevision records the legacy store's new revision: the row (content
// only where the stage writes the legacy representation) and its history.
func (e *Engine) writeRevision(bc *batchCtx, st *docState, stage dataplane.SaveStage, user, text string, create bool) {
	st.revision++
	st.updatedAt = bc.now
	if writesLegacy(stage.Stage) {
		st.content = text
	}
	if create {
		st.exists = true
		st.createdAt = bc.now
		bc.b.Queue(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			st.id, st.tenant, st.owner, st.title, st.content, st.revision, e.cfg.Shard, bc.now)
	} else {
		bc.b.Queue(`UPDATE documents SET title = $2, content = $3, revision = $4, updated_at = $5 WHERE doc_id = $1`,
			st.id, st.title, st.content, st.revision, bc.now)
	}
	bc.b.Queue(`INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		st.id, st.revision, st.title, text, user, bc.now, stage.Stage, stage.Epoch, e.epoch)
}

func (e *Engine) remember(bc *batchCtx, o *op) {
	if o.req.IdempotencyKey == "" {
		return
	}
	raw, _ := json.Marshal(o.res)
	bc.b.Queue(`INSERT INTO save_requests (doc_id, idem_key, result, at) VALUES ($1, $2, $3, $4)`,
		o.req.Doc, o.req.IdempotencyKey, raw, bc.now)
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
	if !e.checkContent(bc, st, o) {
		return nil
	}
	stage := bc.stages[r.Tenant]
	st.tenant, st.owner = r.Tenant, r.User
	if r.Title != nil {
		st.title = *r.Title
	}
	text := r.Content
	e.writeRevision(bc, st, stage, r.User, text, true)
	if writesYjs(stage.Stage) {
		if err := e.initYjs(bc, st, text); err != nil {
			return err
		}
	}
	en := e.entry(bc, st, o, ledger.KindCreated)
	en.Revision, en.ContentSHA256 = st.revision, ledger.SHA256Hex([]byte(text))
	if st.ydoc != nil {
		en.StateVector = svMap(st.ydoc.StateVector())
	}
	sealed := e.appendLedger(bc, st, en)
	o.res = e.docResult(st, stage, OutcomeCreated, text)
	e.stamp(&o.res, st, sealed)
	e.remember(bc, o)
	return nil
}

func (e *Engine) docResult(st *docState, stage dataplane.SaveStage, outcome, text string) Result {
	t := text
	return Result{Doc: st.id, Outcome: outcome, Revision: st.revision, Title: st.title, Content: &t, Stage: stage,
		ContentSHA256: ledger.SHA256Hex([]byte(text))}
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
	stale := r.BaseRevision != 0 && r.BaseRevision != st.revision
	kind, outcome := ledger.KindCommitted, OutcomeSaved
	text := r.Content
	var superseded, preservedID int64
	var conflictText string
	if stale {
		if legacyAuthoritative(stage.Stage) {
			// As the existing store: the save wins; what it overwrote
			// stays readable as its revision.
			kind, outcome, superseded = ledger.KindPreserved, OutcomeOverwrittenPreserved, st.revision
		} else {
			var base string
			if err := bc.tx.QueryRow(ctx, `SELECT content FROM document_revisions WHERE doc_id = $1 AND revision = $2`, st.id, r.BaseRevision).Scan(&base); err != nil {
				return fmt.Errorf("base revision %d of %s: %w", r.BaseRevision, st.id, err)
			}
			m := merge.Three(base, cur, r.Content)
			text = m.Text
			kind, outcome = ledger.KindMerged, OutcomeMerged
			if m.Conflict {
				st.preserved++
				preservedID, conflictText = st.preserved, r.Content
				kind, outcome = ledger.KindPreserved, OutcomeConflictPreserved
				bc.b.Queue(`INSERT INTO preserved_content (doc_id, preserved_id, base_revision, content, reason, saved_by, saved_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`, st.id, preservedID, r.BaseRevision, conflictText,
					"three-way merge conflict: the save's text is kept here, the document keeps its current text", r.User, bc.now)
			}
		}
	}
	if r.Title != nil {
		st.title = *r.Title
	}
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
	e.writeRevision(bc, st, stage, r.User, text, false)
	en := e.entry(bc, st, o, kind)
	en.BaseRevision, en.Revision, en.Outcome = r.BaseRevision, st.revision, outcome
	en.SupersededRevision, en.PreservedID = superseded, preservedID
	en.ContentSHA256 = ledger.SHA256Hex([]byte(text))
	if st.ydoc != nil {
		en.StateVector = svMap(st.ydoc.StateVector())
		en.YjsSeq = st.logSeq
	}
	sealed := e.appendLedger(bc, st, en)
	o.res = e.docResult(st, stage, outcome, text)
	o.res.SupersededRevision, o.res.PreservedID = superseded, preservedID
	e.stamp(&o.res, st, sealed)
	e.remember(bc, o)
	return nil
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

func (e *Engine) applyYjs(bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	if len(r.Update) > contract.MaxBodyBytes {
		e.reject(bc, st, o, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("update is %d bytes, the limit is %d", len(r.Update), contract.MaxBodyBytes))
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
	create := !st.exists
	if create {
		st.tenant, st.owner = r.Tenant, r.User
	}
	stage := bc.stages[st.tenant]
	if st.ydoc == nil {
		if err := e.initYjs(bc, st, st.content); err != nil {
			return err
		}
	}
	svBefore := st.ydoc.StateVector()
	pendingBefore := st.ydoc.HasPending()
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
	if !changed && st.ydoc.HasPending() && !pendingBefore {
		changed = true
	}
	if !changed && !create {
		o.res = Result{Doc: st.id, Outcome: OutcomeDuplicate, Revision: st.revision, Stage: stage,
			StateVector: st.ydoc.EncodeStateVector(), ShardEpoch: e.epoch, LedgerSeq: st.ledgerSeq, LedgerHash: hex.EncodeToString(st.ledgerHash)}
		return nil
	}
	seq := e.appendYjs(bc, st, r.Update, "client:"+r.User)
	text := st.ytext()
	if create || text != textBefore {
		e.writeRevision(bc, st, stage, r.User, text, create)
	}
	kind := ledger.KindCommitted
	if create {
		kind = ledger.KindCreated
	}
	en := e.entry(bc, st, o, kind)
	en.Clients, en.UpdateSHA256, en.YjsSeq = clientsOf(dec), ledger.SHA256Hex(r.Update), seq
	en.Revision, en.ContentSHA256 = st.revision, ledger.SHA256Hex([]byte(text))
	en.StateVector = svMap(st.ydoc.StateVector())
	outcome := OutcomeSaved
	if st.ydoc.HasPending() {
		outcome = OutcomePending
		en.Reason = st.ydoc.PendingError().Error()
	}
	en.Outcome = outcome
	_ = svBefore
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
	if st.ydoc != nil {
		update = st.ydoc.EncodeStateAsUpdate(sv)
		for c, rg := range st.ydoc.Missing(sv) {
			missing[strconv.FormatUint(c, 10)] = [2]uint64{rg.Clock, rg.End()}
		}
	} else {
		update = yjs.NewDoc(yjs.Options{ClientID: 1}).EncodeStateAsUpdate(nil)
		for c, k := range sv {
			if k > 0 {
				missing[strconv.FormatUint(c, 10)] = [2]uint64{0, k}
			}
		}
	}
	en := e.entry(bc, st, o, ledger.KindStateVector)
	en.StateVector = svMap(sv)
	if len(missing) > 0 {
		en.Missing = missing
	}
	en.Revision = st.revision
	sealed := e.appendLedger(bc, st, en)
	o.res = Result{Doc: st.id, Outcome: OutcomeRecorded, Revision: st.revision, Stage: stage, Update: update}
	if len(missing) > 0 {
		o.res.Missing = missing
	}
	if st.ydoc != nil {
		o.res.StateVector = st.ydoc.EncodeStateVector()
	}
	e.stamp(&o.res, st, sealed)
	return nil
}
