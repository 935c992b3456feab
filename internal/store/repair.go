package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/merge"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Divergence resolution (the brief's three cases; the first, a
// stale-base legacy save, is applySave's three-way merge or preservation).
//
// A legacy row changed outside the gateway. Every write of a legacy row
// guards on the change_seq the row had when the syncer last read or
// wrote it (flush), so a save never lands on a stale cached copy: the
// group aborts, its documents are dropped from memory and reloaded. A
// document loaded with a row that differs from its save history or from
// its Yjs text is marked diverged, and the next group that touches it
// (a save, or the repair request verification submits on a mismatch)
// repairs it first, in the same transaction:
//
//   - the row's content is captured as a revision of its own (saved by
//     "outside-the-gateway"), so it is in the save history;
//   - the representations are brought together from the stage's
//     authoritative side with the other side's change merged in: a
//     three-way merge whose base is the text both last agreed on (the Yjs
//     text when the legacy row moved, the row when the Yjs side did); the
//     result goes to the Yjs side as an ordinary edit of the server
//     client (so concurrent client edits merge with it) and to the row;
//   - on a conflict the authoritative side's text wins and the other's is
//     preserved (preserved_content);
//   - a ledger entry (repaired) and a resolved divergences row record it.
//
// A client history the server does not know (foreign generation): an
// update that inserts at the very start of an empty text, from a client
// other than the server, while the server's text starts with its genesis
// content, was made by a client that never saw the server's document (its
// copy was created on its own, for example by loading the text into a
// fresh Y.Doc). CRDT-merging it would duplicate the text. It is not
// integrated: the client's text is three-way merged on text against the
// revision it most resembles (the last common text), the merge applied if
// clean, the client's copy preserved either way, and the request refused
// with CodeForeignHistory, so the client reloads instead of re-sending.

// CodeForeignHistory refuses a Yjs update from a history the server does
// not know; its text was merged and preserved (see the message).
const CodeForeignHistory = "foreign_history"

// Divergence kinds (divergences.kind).
const (
	DivergenceOutOfBand = "out-of-band-write"
	DivergenceForeign   = "foreign-history"
)

// KindRepair asks the engine to repair a document if it diverged; the
// request's tenant may be empty (the document's own is used).
const KindRepair = "repair"

// Outcomes of a repair request and of a foreign-history update.
const (
	OutcomeRepaired          = "repaired"
	OutcomeRepairedPreserved = "repaired-preserved"
	OutcomeConsistent        = "consistent"
	OutcomeForeignMerged     = "foreign-merged"
	OutcomeForeignPreserved  = "foreign-preserved"
	// OutcomeDeletionStands: a row deleted outside the gateway where the
	// legacy side was authoritative stays deleted (a repaired entry).
	OutcomeDeletionStands = "deletion-stands"
	// OutcomeRepairedAnew: the row is another school's document than the
	// Yjs side's (the legacy application gave the ID to this school): it
	// was taken into the history and the Yjs side started anew from it
	// (a repaired entry, whose revision begins the document's era).
	OutcomeRepairedAnew = "repaired-anew"
)

// userOutside names writes made outside the gateway in the save history.
const userOutside = "outside-the-gateway"

// outsideChange reports whether the legacy row differs from the latest
// revision of its save history (a write that bypassed the syncer). A
// document without history (seeded directly) has nothing to compare.
func (st *docState) outsideChange() bool {
	return st.exists && st.lastRev > 0 && (!st.lastRevSame || st.lastRev != st.revision)
}

// repair brings a diverged document's representations together (see the
// package comment above), queueing its writes on bc.
func (e *Engine) repair(bc *batchCtx, st *docState) error {
	st.diverged = false
	stage := bc.stages[st.tenant]
	if !st.exists || stage.Stage == dataplane.StageLegacyRetired {
		// After LegacyRetired the legacy row is no longer kept.
		return nil
	}
	legacyText := st.content
	yText := ""
	if st.ydoc != nil {
		yText = st.ytext()
	}
	apart := st.ydoc != nil && yText != legacyText
	// Which side moved? The Yjs side changes only in the syncer's own
	// commits, which write the row too; so unless the row provably still
	// holds the last revision written here, it is the row that moved.
	rowAsWritten := st.lastRev > 0 && st.lastRevSame && st.lastRev == st.revision
	legacyChanged := st.outsideChange() || (apart && !rowAsWritten) || st.regiven != notRegiven
	if !legacyChanged && !apart {
		return nil
	}
	en := ledger.Entry{Kind: ledger.KindRepaired, At: bc.now, Tenant: st.tenant, User: "server:repair",
		Stage: stage.Stage, Cohort: stage.Cohort, Epoch: stage.Epoch, Protocol: protocolLegacy,
		LegacySHA256: ledger.SHA256Hex([]byte(legacyText)), Outcome: OutcomeRepaired}
	var reason string
	if legacyChanged {
		// The row's content becomes a revision of its own: the history
		// holds it whatever happens next.
		// As the revision the writer gave it if it moved the number on
		// from the history; otherwise as the next one.
		target := max(st.revision, st.lastRev) + 1
		if st.lastRev > 0 && st.revision > st.lastRev {
			target = st.revision
		}
		st.revision = target - 1
		e.writeRevision(bc, st, stage, userOutside, legacyText, false, 0)
		st.lastRev, st.lastRevSame = st.revision, true
		reason = fmt.Sprintf("the legacy row was changed outside the gateway; its content was captured as revision %d", st.revision)
	}
	if st.regiven != notRegiven {
		// Another document is on the Yjs side (another school's, or the
		// one deleted before the row was created again): this one starts
		// a Yjs history of its own from the row, and the other's clients
		// are refused as copies of a document gone from the ID.
		why := "the legacy application gave the ID to this school"
		if st.regiven == regivenRecreated {
			why = "the legacy application deleted the row and created it again"
		}
		st.regiven = notRegiven
		if st.pastSV == nil {
			st.pastSV = yjs.StateVector{}
		}
		for c, k := range st.ydoc.StateVector() {
			st.pastSV[c] = max(st.pastSV[c], k)
		}
		if err := e.initYjs(bc, st, legacyText); err != nil {
			return err
		}
		reason += "; the row is another document than the Yjs side's (" + why + "): the Yjs side starts anew from the row's text"
		en.Outcome = OutcomeRepairedAnew
		st.era, st.eraKnown = st.revision, true
		en.YjsSHA256, en.ContentSHA256 = en.LegacySHA256, en.LegacySHA256
		en.YjsSeq, en.StateVector = st.logSeq, svMap(st.ydoc.StateVector())
		en.Revision, en.Reason = st.revision, reason
		sealed := e.appendLedger(bc, st, en)
		e.resolveDivergence(bc, st, stage, DivergenceOutOfBand, reason, en.Outcome, sealed.Seq)
		bc.repaired[st.id] = en.Outcome
		return nil
	}
	if st.ydoc != nil {
		en.YjsSHA256 = ledger.SHA256Hex([]byte(yText))
		// The text both sides last agreed on: the Yjs text when the row
		// moved (every save writes both), else the row.
		base := legacyText
		if legacyChanged {
			base = yText
		}
		auth, other := legacyText, yText
		if !legacyAuthoritative(stage.Stage) {
			auth, other = yText, legacyText
		}
		m := merge.Three(base, auth, other)
		if m.Conflict {
			st.preserved++
			en.PreservedID = st.preserved
			en.Outcome = OutcomeRepairedPreserved
			bc.pre.Queue(`INSERT INTO preserved_content (doc_id, preserved_id, base_revision, content, reason, saved_by, saved_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, st.id, st.preserved, st.revision, other,
				"repair of diverged representations: this side conflicted with the authoritative "+authSide(stage.Stage)+" side and is kept here",
				"server:repair", bc.now)
		}
		if m.Text != yText {
			u, err := st.setYText(m.Text)
			if err != nil {
				return err
			}
			if u != nil {
				en.YjsSeq = e.appendYjs(bc, st, u, "server:repair")
			}
		}
		if m.Text != st.content {
			e.writeRevision(bc, st, stage, "server:repair", m.Text, false, 0)
		}
		en.StateVector = svMap(st.ydoc.StateVector())
		if reason == "" {
			reason = "the Yjs text differed from the legacy row"
		}
		reason += "; repaired from the " + authSide(stage.Stage) + " side with the other side's change merged in"
		en.ContentSHA256 = ledger.SHA256Hex([]byte(m.Text))
	} else {
		en.ContentSHA256 = ledger.SHA256Hex([]byte(legacyText))
	}
	en.Revision, en.Reason = st.revision, reason
	sealed := e.appendLedger(bc, st, en)
	if apart {
		// A divergence of the representations (a legacy-only document's
		// outside change is just captured: there is nothing to diverge).
		e.resolveDivergence(bc, st, stage, DivergenceOutOfBand, reason, en.Outcome, sealed.Seq)
	}
	bc.repaired[st.id] = en.Outcome
	return nil
}

func authSide(stage string) string {
	if legacyAuthoritative(stage) {
		return "legacy"
	}
	return "Yjs"
}

// resolveDivergence marks the document's open divergence of kind resolved,
// or records one found and resolved now.
func (e *Engine) resolveDivergence(bc *batchCtx, st *docState, stage dataplane.SaveStage, kind, detail, resolution string, seq int64) {
	// Found now, it is counted as verification counts it.
	bc.pre.Queue(excusedCTE("$1", "$9", "$11")+`,
		r AS (UPDATE divergences SET resolved_at = $7, resolution = $6, ledger_seq = $8
		      WHERE doc_id = $1 AND kind = $4 AND resolved_at IS NULL RETURNING 1)
		INSERT INTO divergences (doc_id, shard, tenant, kind, cohort, epoch, detected_at, detail, resolved_at, resolution, ledger_seq, outside_change)
		SELECT $1, $2, $3, $4, $9, coalesce((SELECT epoch FROM excused), $10), $7, $5, $7, $6, $8, (SELECT id FROM unclaimed)
		WHERE NOT EXISTS (SELECT 1 FROM r)`,
		st.id, e.cfg.Shard, st.tenant, kind, detail, resolution, bc.now, seq, stage.Cohort, stage.Epoch, e.cfg.Rollout)
}

// excusedCTE names, for the document, cohort and rollout given as
// placeholders: the cohort's current epoch and attempt (cur); the
// document's latest write behind the gateway if no divergence has claimed
// it yet (unclaimed: the divergence recorded now claims it); and, of that
// write, the epoch to count the divergence under instead of the current
// one (excused) when it was made while the cohort was rolled back to
// Legacy, before its current attempt left Legacy. The legacy application
// may write there, and a divergence such a write causes, found only once
// the next attempt runs, is not that attempt's mismatch. A write made
// before the cohort ever started (its documents had no Yjs side then) or
// already claimed excuses nothing: whatever diverges now is the attempt's.
// Only the stage changes since the cohort was frozen count (frozen): a
// rollout forgotten by a RollbackToLegacy deletion and created again keeps
// the old one's in the audit trail, at lower epochs.
func excusedCTE(doc, cohort, rollout string) string {
	return fmt.Sprintf(`
		WITH cur AS (SELECT epoch, attempt FROM rollout_cohorts WHERE rollout = %[3]s AND cohort = %[2]s),
		     frozen AS (SELECT coalesce(max(f.id), 0) AS id FROM stage_changes f WHERE f.rollout = %[3]s AND f.cohort = %[2]s AND f.from_stage = ''),
		     start AS (SELECT min(s.epoch) AS epoch FROM stage_changes s, cur, frozen
		               WHERE s.rollout = %[3]s AND s.cohort = %[2]s AND s.id >= frozen.id AND s.attempt = cur.attempt AND s.to_stage <> 'Legacy'),
		     unclaimed AS (SELECT o.id, o.epoch FROM (SELECT id, epoch FROM outside_changes WHERE doc_id = %[1]s ORDER BY id DESC LIMIT 1) o
		                   WHERE NOT EXISTS (SELECT 1 FROM divergences v WHERE v.outside_change = o.id)),
		     excused AS (SELECT u.epoch FROM unclaimed u, start WHERE u.epoch < start.epoch
		                 AND EXISTS (SELECT 1 FROM stage_changes s, frozen WHERE s.rollout = %[3]s AND s.cohort = %[2]s AND s.id >= frozen.id AND s.epoch = u.epoch
		                             AND s.to_stage = 'Legacy' AND s.from_stage NOT IN ('', 'Legacy')))`,
		doc, cohort, rollout)
}

// RecordDivergence records an open divergence of a document found by
// verification, under its cohort's epoch as it is when recorded (no-op if
// one of the kind is already open); epoch, the one the verification began
// under, stands in only for a cohort no longer there. A pass that began
// while the cohort was rolled back to Legacy may find, after a new attempt
// started, a row written during that attempt: it counts for the attempt.
//
// Only while this engine holds the shard (its lease epoch is the
// shard's): a syncer replaced by its successor, whose pass was still
// running, recorded divergences for a shard it no longer wrote, which the
// successor's reports then counted against the cohort's gates.
func (e *Engine) RecordDivergence(ctx context.Context, doc, kind, cohort string, epoch int64, detail string) error {
	if e.isFenced.Load() {
		return ErrFenced
	}
	tag, err := e.pool.Exec(ctx, excusedCTE("$1", "$4", "$7")+`
		INSERT INTO divergences (doc_id, shard, tenant, kind, cohort, epoch, detected_at, detail, outside_change)
		SELECT d.doc_id, $2, d.tenant, $3, $4, coalesce((SELECT epoch FROM excused), (SELECT epoch FROM cur), $5), now(), $6,
		       (SELECT id FROM unclaimed)
		FROM documents d
		WHERE d.doc_id = $1 AND EXISTS (SELECT 1 FROM shard_leases l WHERE l.shard = $2 AND l.epoch = $8)
		ON CONFLICT (doc_id, kind) WHERE resolved_at IS NULL DO NOTHING`, doc, e.cfg.Shard, kind, cohort, epoch, detail, e.cfg.Rollout, e.epoch)
	if err != nil {
		return fmt.Errorf("record divergence of %s: %w", doc, err)
	}
	if tag.RowsAffected() == 0 {
		// Nothing recorded: one is open already, the document is gone,
		// or the shard is no longer this engine's.
		var held bool
		if err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM shard_leases WHERE shard = $1 AND epoch = $2)`, e.cfg.Shard, e.epoch).Scan(&held); err == nil && !held {
			return ErrFenced
		}
	}
	return nil
}

// Repair submits a repair request for doc and returns its outcome.
func (e *Engine) Repair(ctx context.Context, doc, requestID string) (Result, error) {
	return e.Submit(ctx, Request{Kind: KindRepair, Doc: doc, RequestID: requestID})
}

// staleStructs returns a genesis client ID whose operations dec carries,
// builds on or deletes that have, the state vector of the document's Yjs
// representation (nil: it has none yet), does not have: dec comes from a
// copy of another generation (0: none).
func staleStructs(have yjs.StateVector, dec *yjs.DecodedUpdate) uint64 {
	return namedClient(dec, func(c uint64) bool { return isGenesisClient(c) && have[c] == 0 })
}

// pastStructs returns a client of past, the state vector of the deleted
// document this ID had, whose operations dec carries, builds on or
// deletes (0: none). A new Y.Doc draws a client ID of its own; only a copy
// of the deleted document names one of its clients. An update that
// continues a history it does not carry is not refused for that alone: a
// new student who typed offline sends her edits as she types, ahead of
// the sync step 2 that carries their start.
func pastStructs(past yjs.StateVector, dec *yjs.DecodedUpdate) uint64 {
	if len(past) == 0 {
		return 0
	}
	return namedClient(dec, func(c uint64) bool { return past[c] > 0 })
}

// namedClient returns the first client for which match holds among those
// dec names: its items' own, their origins' and parents', and its
// deletions' (0: none).
func namedClient(dec *yjs.DecodedUpdate, match func(uint64) bool) uint64 {
	for _, it := range dec.Structs {
		if it.IsSkip() {
			continue
		}
		if match(it.ID.Client) {
			return it.ID.Client
		}
		if it.HasOrigin() && match(it.Origin.Client) {
			return it.Origin.Client
		}
		if it.HasRightOrigin() && match(it.RightOrigin.Client) {
			return it.RightOrigin.Client
		}
		if p, ok := it.ParentID(); ok && match(p.Client) {
			return p.Client
		}
	}
	for c := range dec.DeleteSet {
		if match(c) {
			return c
		}
	}
	return 0
}

// foreignItem reports whether dec inserts, from a client other than the
// server's, at the start of an empty text while the server's text has
// its genesis content: an insertion made without the server's document.
func foreignItem(st *docState, dec *yjs.DecodedUpdate) bool {
	if st.ydoc == nil {
		return false
	}
	sv := st.ydoc.StateVector()
	genesis := uint64(0)
	for c := range sv {
		if isGenesisClient(c) && sv[c] > 0 {
			genesis = c
		}
	}
	if genesis == 0 {
		return false // an empty genesis: concurrent first edits are ordinary
	}
	server := serverClient(st.id)
	for _, it := range dec.Structs {
		if it.IsSkip() || it.IsGC() || it.HasOrigin() || it.HasRightOrigin() {
			continue
		}
		c := it.ID.Client
		// An earlier generation's genesis is not this one's: a stale
		// copy's whole state, sent back, is foreign.
		if c == genesis || c == server || it.ID.Clock < sv[c] {
			continue // the server's own, or already held
		}
		if k, ok := it.ParentKey(); ok && k == contract.YjsTextName {
			return true
		}
	}
	return false
}

// applyForeign resolves an update from a history the server does not
// know: never integrated; its text merged and preserved. It reports
// handled false for an update that only looks foreign: text typed into an
// empty page before the first sync arrived shares next to nothing with
// the document, and CRDT-merging it duplicates nothing.
func (e *Engine) applyForeign(ctx context.Context, bc *batchCtx, st *docState, o *op, dec *yjs.DecodedUpdate, stage dataplane.SaveStage) (handled bool, _ error) {
	r := &o.req
	sha := ledger.SHA256Hex(r.Update)
	detail := "update sha256 " + sha
	var seen bool
	if err := bc.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM divergences WHERE doc_id = $1 AND kind = $2 AND detail = $3)`,
		st.id, DivergenceForeign, detail).Scan(&seen); err != nil {
		return true, err
	}
	if seen {
		// A replay: it was resolved before; nothing changes.
		o.err = errf(http.StatusConflict, CodeForeignHistory, "this update comes from a copy of the document the server does not know; it was merged and preserved before: reload the document")
		return true, nil
	}
	scratch := yjs.NewDoc(yjs.Options{ClientID: 1})
	if err := scratch.ApplyUpdate(r.Update); err != nil {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidUpdate, "update cannot be integrated: "+err.Error())
		return true, nil
	}
	theirs := storedText(scratch)
	ours := st.ytext()
	base, baseRev, err := e.closestRevision(ctx, bc, st, theirs)
	if err != nil {
		return true, err
	}
	if !resembles(theirs, base) && !resembles(theirs, ours) {
		return false, nil
	}
	m := merge.Three(base, ours, theirs)
	if !m.Conflict && dropsMost(ours, m.Text) {
		m.Conflict = true
	}
	st.preserved++
	pid := st.preserved
	bc.pre.Queue(`INSERT INTO preserved_content (doc_id, preserved_id, base_revision, content, reason, saved_by, saved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, st.id, pid, baseRev, theirs,
		"a Yjs client's copy from a history the server does not know (another document generation): not CRDT-merged; kept here", r.User, bc.now)
	outcome := OutcomeForeignPreserved
	if !m.Conflict {
		outcome = OutcomeForeignMerged
	}
	en := e.entry(bc, st, o, ledger.KindForeign)
	en.Clients, en.UpdateSHA256, en.PreservedID, en.Outcome = clientsOf(dec), sha, pid, outcome
	// Its operations are accounted for (kept aside): they are no longer
	// a gap between what the client holds and what the server has.
	en.PreservedOps = opRanges(dec)
	var closed []int64
	for c, rg := range en.PreservedOps {
		id, _ := strconv.ParseUint(c, 10, 64)
		if to, ok := st.gaps[id]; ok && to <= rg[1] {
			delete(st.gaps, id)
			closed = append(closed, int64(id))
		}
	}
	if len(closed) > 0 {
		bc.pre.Queue(`UPDATE client_gaps SET closed_at = $3 WHERE doc_id = $1 AND client = ANY($2::bigint[]) AND closed_at IS NULL`,
			st.id, closed, bc.now)
	}
	en.BaseRevision = baseRev
	if !m.Conflict && m.Text != ours {
		u, err := st.setYText(m.Text)
		if err != nil {
			return true, err
		}
		if u != nil {
			en.YjsSeq = e.appendYjs(bc, st, u, "server:foreign-merge:"+r.User)
		}
		e.writeRevision(bc, st, stage, r.User, m.Text, false, 0)
	}
	text := st.ytext()
	en.Revision, en.ContentSHA256, en.StateVector = st.revision, ledger.SHA256Hex([]byte(text)), svMap(st.ydoc.StateVector())
	sealed := e.appendLedger(bc, st, en)
	e.resolveDivergence(bc, st, stage, DivergenceForeign, detail, outcome, sealed.Seq)
	msg := fmt.Sprintf("this update comes from a copy of the document the server does not know; it was not CRDT-merged. Its text is preserved at %s/%s/preserved/%d", contract.PathDocuments, st.id, pid)
	if m.Conflict {
		msg += " and conflicted with the document, which keeps its text"
	} else {
		msg += " and was three-way merged into the document as revision " + strconv.FormatInt(st.revision, 10)
	}
	o.err = errf(http.StatusConflict, CodeForeignHistory, "%s; reload the document", msg)
	return true, nil
}

// opRanges is, per client, the clock range of an update's structs.
func opRanges(dec *yjs.DecodedUpdate) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, s := range dec.Structs {
		if s.IsSkip() {
			continue
		}
		c := strconv.FormatUint(s.ID.Client, 10)
		end := s.ID.Clock + uint64(s.Len)
		rg, ok := out[c]
		if !ok {
			rg = [2]uint64{s.ID.Clock, end}
		}
		rg[0], rg[1] = min(rg[0], s.ID.Clock), max(rg[1], end)
		out[c] = rg
	}
	return out
}

// closestRevision picks, among the document's latest revisions, the one
// text resembles most (longest common prefix plus suffix): the last text
// a foreign copy plausibly shared with the server. None resembling it
// gives the empty text, revision 0.
func (e *Engine) closestRevision(ctx context.Context, bc *batchCtx, st *docState, text string) (string, int64, error) {
	var latest int64
	if err := bc.conn.QueryRow(ctx, `SELECT coalesce(max(revision), 0) FROM document_revisions WHERE doc_id = $1`, st.id).Scan(&latest); err != nil {
		return "", 0, err
	}
	cands := map[int64]string{}
	if latest > 0 {
		var err error
		if cands, err = revisionTexts(ctx, bc.conn, st.id, max(1, latest-31), latest); err != nil {
			if ctx.Err() != nil {
				return "", 0, err
			}
			// Damaged history: no candidate, so the foreign copy is
			// merged against the empty text (everything preserved).
			e.log.Error("recent revisions cannot be read to find a foreign copy's base", "doc", st.id, "err", err)
			cands = map[int64]string{}
		}
	}
	best, bestRev, bestScore := "", int64(0), 0
	for rev, c := range cands {
		if s := commonEnds(c, text); s > bestScore || (s == bestScore && s > 0 && rev > bestRev) {
			best, bestRev, bestScore = c, rev, s
		}
	}
	for rev, c := range bc.revPending[st.id] {
		if s := commonEnds(c, text); s > bestScore {
			best, bestRev, bestScore = c, rev, s
		}
	}
	return best, bestRev, nil
}

// resembles reports whether a copy's text is a copy of text, edited:
// it holds all of text (8 bytes or more) verbatim; or, word by word in
// order, at least half of the words of each (three or more) pair up; or
// at least half of its bytes lie in verbatim runs of 32 bytes or more
// that text also holds (for texts too different to compare word by word
// cheaply). A copy of the document edited elsewhere passes, however
// short; a sentence typed into an empty page before the first sync does
// not, even when it starts like the document or uses its words, since it
// is not half of the document: it is CRDT-merged as typed instead of
// taken for the document's replacement.
func resembles(copyText, text string) bool {
	if len(text) >= 8 && strings.Contains(copyText, text) {
		return true
	}
	if common, nc, nt, ok := merge.CommonWords(copyText, text); ok {
		if nc >= 3 && 2*common >= nc && 2*common >= nt {
			return true
		}
	}
	return len(copyText) >= 32 && 2*verbatim(copyText, text) >= len(copyText)
}

// dropsMost reports whether merged keeps little of ours: neither all of
// it, nor half of both texts' words in order, nor half of its bytes in
// verbatim runs. A merge "clean" by the text's lines can still be a copy
// that had little of the document replacing it, so the document keeps its
// text instead (the copy is preserved either way).
func dropsMost(ours, merged string) bool {
	if len(ours) < 32 || strings.Contains(merged, ours) {
		return false
	}
	if common, no, nm, ok := merge.CommonWords(ours, merged); ok && no >= 3 && 2*common >= no && 2*common >= nm {
		return false
	}
	return 2*verbatim(ours, merged) < len(ours)
}

// verbatim is how many bytes of a lie in runs of at least 32 bytes that
// b holds too (runs of 24 to 31 bytes may count as well).
func verbatim(a, b string) int {
	const window, step = 24, 8
	// b's windows at every step-th offset: a common run of 32 bytes or
	// more holds at least one of them, wherever it starts.
	anchors := make(map[string]struct{}, len(b)/step+1)
	for i := 0; i+window <= len(b); i += step {
		anchors[b[i:i+window]] = struct{}{}
	}
	covered, end := 0, 0 // bytes of a in matched windows; end of the last
	for i := 0; i+window <= len(a); i++ {
		if _, ok := anchors[a[i:i+window]]; ok {
			covered += i + window - max(i, end)
			end = i + window
		}
	}
	return covered
}

// commonEnds is the length of a and b's common prefix plus their common
// suffix in what remains.
func commonEnds(a, b string) int {
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	return p + s
}

// eraOf returns the first revision of the document st's row is now when
// the ID was given to its school outside the gateway (the revision a
// repair took the row in as, OutcomeRepairedAnew), or 0: every revision
// of the history is the document's. Read once per load, on the first
// stale save that needs it.
func (e *Engine) eraOf(ctx context.Context, bc *batchCtx, st *docState) (int64, error) {
	if st.eraKnown {
		return st.era, nil
	}
	err := bc.conn.QueryRow(ctx, `SELECT coalesce((SELECT (body::jsonb->>'revision')::bigint FROM save_ledger
		WHERE doc_id = $1 AND kind = $2 AND body::jsonb->>'outcome' = $3 ORDER BY seq DESC LIMIT 1), 0)`,
		st.id, ledger.KindRepaired, OutcomeRepairedAnew).Scan(&st.era)
	if err != nil {
		return 0, fmt.Errorf("where the document %s begins in its history: %w", st.id, err)
	}
	st.eraKnown = true
	return st.era, nil
}

// ErrStaleRow fails a group whose cached copy of a legacy row is older
// than the row: something outside the gateway changed it. The group runs
// again from reloaded documents.
var ErrStaleRow = errors.New("store: a legacy row changed outside the gateway since it was read")

func errStaleRow(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "22012" { // division_by_zero: the guard
		return fmt.Errorf("%w: %w", ErrStaleRow, err)
	}
	return err
}

// rowTaken makes a documents row this group meant to insert (a create,
// or a row made again from the Yjs side) that is already there a stale
// row: the legacy application inserted it since the copy was read (with
// no row), and the group is run again from reloaded documents.
func rowTaken(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" && pg.ConstraintName == "documents_pkey" && !errors.Is(err, ErrStaleRow) {
		return fmt.Errorf("%w: %w", ErrStaleRow, err)
	}
	return err
}

// noteGaps records the operations a client announced that the server
// lacks (client_gaps), open until an update covers them.
func (e *Engine) noteGaps(bc *batchCtx, st *docState, tenant string, missing map[uint64][2]uint64) {
	if len(missing) == 0 {
		return
	}
	var clients, from, to []int64
	for c, rg := range missing {
		clients, from, to = append(clients, int64(c)), append(from, int64(rg[0])), append(to, int64(rg[1]))
		if st.gaps == nil {
			st.gaps = map[uint64]uint64{}
		}
		st.gaps[c] = max(st.gaps[c], rg[1])
	}
	bc.pre.Queue(`
		INSERT INTO client_gaps (doc_id, client, shard, tenant, clock_from, clock_to, first_seen, last_seen)
		SELECT $1, c, $2, $3, f, t, $7, $7 FROM unnest($4::bigint[], $5::bigint[], $6::bigint[]) AS x(c, f, t)
		ON CONFLICT (doc_id, client) DO UPDATE SET
		  clock_to = CASE WHEN client_gaps.closed_at IS NULL THEN greatest(client_gaps.clock_to, EXCLUDED.clock_to) ELSE EXCLUDED.clock_to END,
		  clock_from = CASE WHEN client_gaps.closed_at IS NULL THEN client_gaps.clock_from ELSE EXCLUDED.clock_from END,
		  first_seen = CASE WHEN client_gaps.closed_at IS NULL THEN client_gaps.first_seen ELSE EXCLUDED.first_seen END,
		  last_seen = EXCLUDED.last_seen, closed_at = NULL`,
		st.id, e.cfg.Shard, tenant, clients, from, to, bc.now)
}

// closeGaps closes the document's open client gaps its state now covers.
func (e *Engine) closeGaps(bc *batchCtx, st *docState) {
	if len(st.gaps) == 0 || st.ydoc == nil {
		return
	}
	sv := st.ydoc.StateVector()
	var done []int64
	for c, to := range st.gaps {
		if sv[c] >= to {
			done = append(done, int64(c))
			delete(st.gaps, c)
		}
	}
	if len(done) > 0 {
		bc.pre.Queue(`UPDATE client_gaps SET closed_at = $3 WHERE doc_id = $1 AND client = ANY($2::bigint[]) AND closed_at IS NULL`,
			st.id, done, bc.now)
	}
}

// applyDisconnect records when a client that announced operations the
// server still lacks was last seen: a ledger entry and the gap rows' last
// seen. A client that holds nothing we lack leaves no entry.
func (e *Engine) applyDisconnect(bc *batchCtx, st *docState, o *op) error {
	r := &o.req
	o.res = Result{Doc: st.id, Outcome: OutcomeConsistent}
	if !st.exists || st.ydoc == nil {
		return nil
	}
	sv, err := yjs.DecodeStateVector(r.StateVector)
	if err != nil {
		e.reject(bc, st, o, http.StatusBadRequest, CodeInvalidSV, "not a Yjs state vector: "+err.Error())
		return nil
	}
	missing := map[string][2]uint64{}
	var clients []int64
	for c, rg := range st.ydoc.Missing(sv) {
		if _, open := st.gaps[c]; !open {
			continue // received since, or kept aside as a foreign history
		}
		missing[strconv.FormatUint(c, 10)] = [2]uint64{rg.Clock, rg.End()}
		clients = append(clients, int64(c))
	}
	if len(missing) == 0 {
		return nil
	}
	en := e.entry(bc, st, o, ledger.KindDisconnected)
	en.StateVector, en.Missing, en.Code, en.Reason = announcedSV(sv, missing), missing, r.Code, r.Reason
	sealed := e.appendLedger(bc, st, en)
	bc.pre.Queue(`UPDATE client_gaps SET last_seen = $3 WHERE doc_id = $1 AND client = ANY($2::bigint[]) AND closed_at IS NULL`,
		st.id, clients, bc.now)
	o.res = Result{Doc: st.id, Outcome: OutcomeRecorded, Missing: missing}
	e.stamp(&o.res, st, sealed)
	return nil
}

// closeDivergences marks the document's open divergences of kind resolved
// with resolution, at its current ledger head.
func (e *Engine) closeDivergences(bc *batchCtx, st *docState, kind, resolution string) {
	bc.pre.Queue(`UPDATE divergences SET resolved_at = $3, resolution = $4, ledger_seq = $5
		WHERE doc_id = $1 AND kind = $2 AND resolved_at IS NULL`,
		st.id, kind, bc.now, resolution, st.ledgerSeq)
}

// protocolLegacy is the ledger's protocol of legacy saves and of repairs.
const protocolLegacy = "legacy"

// deletedRow is what the history says of a document whose row was
// deleted outside the gateway.
type deletedRow struct {
	tenant, owner, title string
}

// recreate handles a document whose row was deleted outside the gateway
// (st.deleted), before anything else touches it in this group. Where the
// Yjs side is authoritative, the deletion is an outside write to the
// other side: the row is made again from the Yjs text, as a new revision,
// and the repair goes on record. Where the legacy side is authoritative
// (or there is no Yjs side) the deletion stands: the document is gone,
// and a create makes a new one, its Yjs representation a new generation,
// its revisions numbered on from the history's.
func (e *Engine) recreate(bc *batchCtx, st *docState) {
	d := st.deleted
	st.deleted = nil
	stage, ok := bc.stages[d.tenant]
	if !ok || legacyAuthoritative(stage.Stage) || st.ydoc == nil {
		if st.ydoc != nil {
			// On record, so that the document stays gone once reloaded:
			// at a later stage, where the Yjs side is authoritative, its
			// Yjs side would otherwise make the row again.
			reason := "the legacy row was deleted outside the gateway while the legacy side was authoritative; the deletion stands, and the document's Yjs side will not bring it back"
			en := ledger.Entry{Kind: ledger.KindRepaired, At: bc.now, Tenant: d.tenant, User: "server:repair",
				Stage: stage.Stage, Cohort: stage.Cohort, Epoch: stage.Epoch, Protocol: protocolLegacy,
				Revision: st.revision, Outcome: OutcomeDeletionStands, Reason: reason}
			e.appendLedger(bc, st, en)
			// Added to, not replaced: a student's copy of a document
			// this ID held before this one stays refused. Replaced, her
			// next edit brought the ID back as a document holding only
			// that edit, waiting for text that is gone (a reload, which
			// reads every earlier generation, refused it).
			if st.pastSV == nil {
				st.pastSV = yjs.StateVector{}
			}
			for c, k := range st.ydoc.StateVector() {
				st.pastSV[c] = max(st.pastSV[c], k)
			}
		}
		st.ydoc = nil
		st.historyTenant = d.tenant
		return
	}
	st.tenant, st.owner, st.title = d.tenant, d.owner, d.title
	text := st.ytext()
	sha := e.writeRevision(bc, st, stage, "server:repair", text, true, 0)
	st.lastRev, st.lastRevSame = st.revision, true
	reason := "the legacy row was deleted outside the gateway; it was made again from the Yjs side, authoritative at stage " + stage.Stage
	en := ledger.Entry{Kind: ledger.KindRepaired, At: bc.now, Tenant: st.tenant, User: "server:repair",
		Stage: stage.Stage, Cohort: stage.Cohort, Epoch: stage.Epoch, Protocol: protocolLegacy,
		YjsSHA256: sha, ContentSHA256: sha, Revision: st.revision, StateVector: svMap(st.ydoc.StateVector()),
		Outcome: OutcomeRepaired, Reason: reason}
	sealed := e.appendLedger(bc, st, en)
	e.resolveDivergence(bc, st, stage, DivergenceOutOfBand, reason, OutcomeRepaired, sealed.Seq)
	bc.repaired[st.id] = OutcomeRepaired
}
