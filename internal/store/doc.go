package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/merge"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// docState is a document as committed, in memory.
type docState struct {
	id string
	// exists: the documents row exists.
	exists    bool
	tenant    string
	owner     string
	title     string
	content   string
	revision  int64
	createdAt time.Time
	updatedAt time.Time

	// ydoc is nil when the document has no Yjs representation.
	ydoc       *yjs.Doc
	generation int64
	logSeq     int64
	snapSeq    int64
	// snapBytes is the size of the snapshot's state, logBytes of the
	// updates logged after it: together they pace compaction (appendYjs).
	snapBytes, logBytes int64

	ledgerSeq  int64
	ledgerHash []byte
	preserved  int64

	// changeSeq is the legacy row's change_seq as last read or written
	// here (0: unknown). Every write of the row guards on it, so a row
	// changed outside the gateway is never overwritten from a stale copy.
	changeSeq int64
	// lastRev is the highest revision in the save history (0: none);
	// lastRevSame says its content equals the row's.
	lastRev     int64
	lastRevSame bool
	// revText is the text of revision revTextOf as this process wrote it
	// (0: none since loaded), and revDepth how many splices lead to it
	// from a revision kept whole: the next revision is kept as a splice of
	// it (writeRevision, revtext.go).
	revText   string
	revTextOf int64
	revDepth  int
	// oldKeys: idempotency keys of the document were recorded before
	// migration 00010, in save_requests, where only the two-round-trip
	// path looks; its keyed saves never take the one-round-trip path.
	oldKeys bool
	// diverged: when loaded, the row differed from the save history or
	// from the Yjs text: it was changed outside the gateway. The next
	// group that touches the document repairs it first (repair.go).
	diverged bool
	// deleted: the row is gone but the document's history is not: the
	// row was deleted outside the gateway. The next group that touches
	// the document re-creates the row from the Yjs side where that side
	// is authoritative, or lets the deletion stand (repair.go).
	deleted *deletedRow
	// historyTenant: the row is gone, its deletion stands, and the
	// document's history (revisions, preserved text) is this tenant's.
	// Only this tenant may create the ID again: another would continue
	// that history and could read it.
	historyTenant string
	// regiven: the row is another document than the one the Yjs side
	// holds. Either the legacy application gave the ID to this school, in
	// place or by deleting and inserting the row (the ledger's last save
	// is of another tenant), or it deleted the row and created another
	// document at the ID for the same school after everything on the
	// ledger (the database logged where the ledger stood then; a row put
	// back as it was, with its school and created_at, is the same
	// document). The repair starts a new Yjs
	// generation from the row's text, so that nothing of the other
	// document's history, deleted text included, reaches this one.
	regiven regiving
	// era: the first revision of the document the row is now, when the
	// ID was given to its school outside the gateway (0: the whole
	// history); eraKnown: read since loaded (eraOf).
	era      int64
	eraKnown bool
	// pastSV: the state vector of the Yjs side of the document this ID
	// had before it was deleted outside the gateway (nil: none known).
	// Every Y.Doc draws a client ID of its own, so an update naming one
	// of these clients comes from a copy of the deleted document: a
	// student's tab still open on it, or reconnecting after its 4409.
	// Set where the deletion is found to stand, and at load from the
	// update log of the generations before the current one.
	pastSV yjs.StateVector
	// gaps: open client_gaps rows, client -> clock the client holds.
	gaps map[uint64]uint64

	capturing bool
	captured  [][]byte

	// ytextCache is the Yjs text as last materialised; any change of the
	// Yjs document (its update event) invalidates it. ymu guards it:
	// readers (under the lane's read lock) may fill it concurrently.
	ymu        sync.Mutex
	ytextCache string
	ytextValid bool

	// snapRaw, when set, is the snapshot to write as is (a backfill
	// genesis, whose document is not built in memory).
	snapRaw *rawSnapshot
}

type rawSnapshot struct {
	state, sv []byte
	text      string
}

// approxBytes estimates the memory the document holds in the cache: its
// texts (the row's, the last revision's, the materialised Yjs text) and
// its Yjs document, which grows with its structs far more than with its
// text. Only the group holding the document's lane, or the loader that
// made it, calls it.
func (st *docState) approxBytes() int64 {
	n := int64(512 + len(st.id) + len(st.tenant) + len(st.owner) + len(st.title) + len(st.content) + len(st.ledgerHash))
	if st.revText != st.content { // usually the same string, held once
		n += int64(len(st.revText))
	}
	n += int64(len(st.ytextCache)) + 48*int64(len(st.gaps))
	for _, c := range st.captured {
		n += int64(len(c))
	}
	if st.snapRaw != nil {
		n += int64(len(st.snapRaw.state) + len(st.snapRaw.sv) + len(st.snapRaw.text))
	}
	if st.ydoc != nil {
		n += st.ydoc.ApproxBytes()
	}
	return n
}

// serverClient is the Yjs client ID under which the syncer writes a
// document's legacy saves: stable per document, above the 32-bit range
// browsers draw from, below 2^53.
func serverClient(doc string) uint64 {
	s := sha256.Sum256([]byte("yawp-server:" + doc))
	return binary.BigEndian.Uint64(s[:8])&(1<<52-1) | 1<<52
}

func (st *docState) newYDoc() {
	st.ydoc = yjs.NewDoc(yjs.Options{ClientID: serverClient(st.id)})
	st.ymu.Lock()
	st.ytextValid = false
	st.ymu.Unlock()
	st.ydoc.OnUpdate(func(u []byte) {
		st.ymu.Lock()
		st.ytextValid = false
		st.ymu.Unlock()
		if st.capturing {
			st.captured = append(st.captured, u)
		}
	})
}

// ytext is the Yjs representation's text (materialised once per change).
func (st *docState) ytext() string {
	st.ymu.Lock()
	defer st.ymu.Unlock()
	if !st.ytextValid {
		st.ytextCache, st.ytextValid = storedText(st.ydoc), true
	}
	return st.ytextCache
}

// storedText is d's text as every text column keeps it: U+0000, which a
// Yjs client may type or paste but PostgreSQL's text cannot hold, reads
// as U+FFFD. The Yjs log keeps the exact bytes; the legacy row, snapshots,
// revisions and every comparison between them use this form, and a legacy
// save (which may not contain U+0000) replaces it in the Yjs text too.
func storedText(d *yjs.Doc) string {
	s := d.GetText(contract.YjsTextName).String()
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// setYText edits the Yjs text into want as the server client and returns
// the update that did it (nil if nothing changed).
//
// The edit is the text's word-by-word diff (merge.DiffUTF16), each
// changed span deleted and inserted on its own: a save that changed two
// places far apart leaves the text between them as it is, so operations
// other clients made there, or send later from an offline copy, still
// attach where they were made. (Replacing everything from the first
// change to the last, as it once did, undid their deletions and moved
// their insertions to its edge.) Texts too different for the diff's
// budget get that one span.
//
// want is text only; the Yjs text may also hold embeds (a rich-text
// client's images), which a Yjs index counts but the text does not show.
// The edit is worked out on the text, then placed by each character's Yjs
// index: deletions remove only text (the embeds among it stay), and an
// insertion goes right after the character before it.
func (st *docState) setYText(want string) ([]byte, error) {
	t := st.ydoc.GetText(contract.YjsTextName)
	cur, at := t.UTF16Indexed()
	tgt := utf16.Encode([]rune(want))
	p := 0
	for p < len(cur) && p < len(tgt) && cur[p] == tgt[p] {
		p++
	}
	if p > 0 && utf16.IsSurrogate(rune(cur[p-1])) && cur[p-1] < 0xdc00 {
		p-- // never split a surrogate pair
	}
	s := 0
	for s < len(cur)-p && s < len(tgt)-p && cur[len(cur)-1-s] == tgt[len(tgt)-1-s] {
		s++
	}
	if s > 0 && utf16.IsSurrogate(rune(cur[len(cur)-s])) && cur[len(cur)-s] >= 0xdc00 {
		s--
	}
	if len(cur)-s == p && len(tgt)-s == p {
		return nil, nil
	}
	hunks, ok := merge.DiffUTF16(cur[p:len(cur)-s], tgt[p:len(tgt)-s])
	if !ok {
		hunks = []merge.Hunk{{From: 0, To: len(cur) - s - p, BFrom: 0, BTo: len(tgt) - s - p}}
	}
	st.capturing, st.captured = true, nil
	defer func() { st.capturing, st.captured = false, nil }()
	err := st.ydoc.Transact(func(*yjs.Transaction) error {
		// Last span first, so that the Yjs indexes of the text before it
		// (at) still hold.
		for _, h := range slices.Backward(hunks) {
			if err := replaceSpan(t, at, p+h.From, p+h.To, tgt[p+h.BFrom:p+h.BTo]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch len(st.captured) {
	case 0:
		return nil, errors.New("store: local edit produced no update")
	case 1:
		return st.captured[0], nil
	default:
		return yjs.MergeUpdates(st.captured...)
	}
}

// replaceSpan replaces the text's characters from..to (text positions,
// at their Yjs indexes) with ins.
func replaceSpan(t *yjs.Text, at []int, from, to int, ins []uint16) error {
	// The deleted characters as runs of consecutive Yjs indexes, removed
	// last run first so the earlier runs' indexes still hold.
	type run struct{ from, n int }
	var runs []run
	for i := from; i < to; i++ {
		if k := len(runs) - 1; k >= 0 && runs[k].from+runs[k].n == at[i] {
			runs[k].n++
		} else {
			runs = append(runs, run{at[i], 1})
		}
	}
	for _, r := range slices.Backward(runs) {
		if err := t.Delete(r.from, r.n); err != nil {
			return err
		}
	}
	if len(ins) == 0 {
		return nil
	}
	insertAt := 0
	if from > 0 {
		insertAt = at[from-1] + 1
	}
	return t.InsertUTF16(insertAt, ins)
}

// doc returns a document's committed state, from memory or the database.
func (e *Engine) doc(ctx context.Context, id string) (*docState, error) {
	if st := e.cache.get(id); st != nil {
		return st, nil
	}
	st, err := e.load(ctx, id)
	if err != nil {
		return nil, err
	}
	e.cache.put(st)
	return st, nil
}

// docForRead is doc for a reader: a cached copy is served only while the
// legacy row is as it was when the copy was made. A write that bypassed
// the syncer moves the row's change_seq (or inserts or deletes the row);
// then the copy is dropped and the document loaded again, so a reader
// never gets text and a revision the store no longer holds. The caller
// holds the document's lane at least for reading.
func (e *Engine) docForRead(ctx context.Context, id string) (*docState, error) {
	st := e.cache.get(id)
	if st == nil {
		return e.doc(ctx, id)
	}
	var seq int64
	err := e.pool.QueryRow(ctx, `SELECT coalesce(change_seq, 0) FROM documents WHERE doc_id = $1`, id).Scan(&seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if !st.exists {
			return st, nil
		}
	case err != nil:
		return nil, err
	case st.exists && seq == st.changeSeq:
		return st, nil
	}
	e.cache.evict(id)
	return e.doc(ctx, id)
}

// pastClients returns the clients whose operations the document's Yjs
// generations before gen hold (a clock of 1 each: only who wrote
// matters), read from the update log.
func (e *Engine) pastClients(ctx context.Context, id string, gen int64) (yjs.StateVector, error) {
	rows, err := e.pool.Query(ctx, `SELECT update FROM yjs_updates WHERE doc_id = $1 AND generation < $2`, id, gen)
	if err != nil {
		return nil, fmt.Errorf("load earlier generations of %s: %w", id, err)
	}
	defer rows.Close()
	past := yjs.StateVector{}
	for rows.Next() {
		var u []byte
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("load earlier generations of %s: %w", id, err)
		}
		dec, err := yjs.DecodeUpdate(u)
		if err != nil {
			continue // it was applied once; one that does not decode names nobody
		}
		for _, c := range clientsOf(dec) {
			past[c] = 1
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load earlier generations of %s: %w", id, err)
	}
	return past, nil
}

// notePast sets st.pastSV, the clients of the Yjs documents this ID had
// before (deleted outside the gateway): of the generations before the
// current one, read from the update log, and, when the current one's
// deletion stands (gone), of it too. Copies of those documents are
// refused by their clients (pastStructs), after a reload too.
func (e *Engine) notePast(ctx context.Context, st *docState, gone bool) error {
	if st.generation > 1 {
		past, err := e.pastClients(ctx, st.id, st.generation)
		if err != nil {
			return err
		}
		st.pastSV = past
		if !gone && st.ydoc != nil {
			for c, k := range st.ydoc.StateVector() {
				if k > 0 {
					delete(st.pastSV, c) // this generation's own
				}
			}
		}
	}
	if gone && st.ydoc != nil {
		if st.pastSV == nil {
			st.pastSV = yjs.StateVector{}
		}
		for c, k := range st.ydoc.StateVector() {
			st.pastSV[c] = max(st.pastSV[c], k)
		}
	}
	return nil
}

func (e *Engine) load(ctx context.Context, id string) (*docState, error) {
	st := &docState{id: id}
	gone := false
	var lastRev *int64
	var lastRevSame *bool
	// The ledger's last entry of the document's own (not a refusal, a
	// client's announcement, or the record that the row's deletion stands,
	// which a creation may follow before its commit shows the row), and,
	// for a row written outside the gateway, where the ledger stood when
	// the legacy application last created a new document at the ID
	// (migration 00020; NULL: never since).
	var ledgerTenant *string
	var ledgerLast, createdAfter *int64
	err := e.pool.QueryRow(ctx, `
		SELECT d.tenant, d.owner, d.title, d.content, d.revision, d.created_at, d.updated_at, coalesce(d.change_seq, 0),
		       r.revision, coalesce(r.content_sha256 = encode(sha256(convert_to(d.content, 'UTF8')), 'hex'), r.content = d.content),
		       EXISTS (SELECT 1 FROM save_requests s WHERE s.doc_id = d.doc_id),
		       l.tenant, l.seq,
		       CASE WHEN d.change_seq IS NOT NULL THEN (SELECT c.ledger_seq FROM outside_creations c WHERE c.doc_id = d.doc_id) END
		FROM documents d
		LEFT JOIN LATERAL (SELECT revision, content, content_sha256 FROM document_revisions r
		                   WHERE r.doc_id = d.doc_id ORDER BY revision DESC LIMIT 1) r ON true
		LEFT JOIN LATERAL (SELECT l.tenant, l.seq FROM save_ledger l WHERE l.doc_id = d.doc_id AND l.kind NOT IN ('rejected', 'state-vector', 'disconnected')
		                     AND NOT (l.kind = 'repaired' AND l.body::jsonb->>'outcome' = $2)
		                   ORDER BY l.seq DESC LIMIT 1) l ON true
		WHERE d.doc_id = $1`, id, OutcomeDeletionStands).
		Scan(&st.tenant, &st.owner, &st.title, &st.content, &st.revision, &st.createdAt, &st.updatedAt, &st.changeSeq,
			&lastRev, &lastRevSame, &st.oldKeys, &ledgerTenant, &ledgerLast, &createdAfter)
	switch {
	case err == nil:
		st.exists = true
		if lastRev != nil {
			st.lastRev, st.lastRevSame = *lastRev, *lastRevSame
		}
	case errors.Is(err, pgx.ErrNoRows):
		// No row: never created, or deleted outside the gateway, which
		// leaves the document's history (its ledger; revisions too, unless
		// it was seeded into the legacy store and backfilled). Its
		// revision numbers go on from the history's last, so nothing
		// already in it is written again.
		var tenant, owner, title, lastOutcome *string
		var lastRev *int64
		err := e.pool.QueryRow(ctx, `
			WITH last AS (SELECT tenant, kind, body FROM save_ledger WHERE doc_id = $1 AND kind NOT IN ('rejected', 'state-vector', 'disconnected')
			              ORDER BY seq DESC LIMIT 1)
			SELECT (SELECT tenant FROM last),
			       (SELECT body::jsonb->>'outcome' FROM last WHERE kind = 'repaired'),
			       (SELECT saved_by FROM document_revisions WHERE doc_id = $1 ORDER BY revision LIMIT 1),
			       (SELECT title FROM document_revisions WHERE doc_id = $1 ORDER BY revision DESC LIMIT 1),
			       greatest((SELECT max(revision) FROM document_revisions WHERE doc_id = $1),
			                (SELECT max((body::jsonb->>'revision')::bigint) FROM save_ledger WHERE doc_id = $1))`, id).
			Scan(&tenant, &lastOutcome, &owner, &title, &lastRev)
		if err != nil {
			return nil, fmt.Errorf("load history of %s: %w", id, err)
		}
		if lastRev != nil {
			st.revision, st.lastRev = *lastRev, *lastRev
		}
		if tenant != nil && lastOutcome != nil && *lastOutcome == OutcomeDeletionStands {
			// Its deletion was let stand (recreate): gone for good, its
			// Yjs side included, until its school creates it again.
			st.historyTenant, gone = *tenant, true
		} else if tenant != nil {
			d := deletedRow{tenant: *tenant}
			if owner != nil {
				d.owner = *owner
			}
			if title != nil {
				d.title = *title
			}
			st.deleted = &d
		}
	default:
		return nil, fmt.Errorf("load %s: %w", id, err)
	}
	var state []byte
	err = e.pool.QueryRow(ctx, `SELECT generation, upto_seq, state FROM yjs_snapshots WHERE doc_id = $1`, id).
		Scan(&st.generation, &st.snapSeq, &state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("load snapshot of %s: %w", id, err)
	}
	if state != nil {
		st.newYDoc()
		if err := st.ydoc.ApplyUpdate(state); err != nil {
			return nil, fmt.Errorf("load snapshot of %s: %w", id, err)
		}
		st.logSeq = st.snapSeq
		st.snapBytes = int64(len(state))
	}
	rows, err := e.pool.Query(ctx, `SELECT seq, generation, update FROM yjs_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq`, id, st.snapSeq)
	if err != nil {
		return nil, fmt.Errorf("load log of %s: %w", id, err)
	}
	for rows.Next() {
		var seq, gen int64
		var u []byte
		if err := rows.Scan(&seq, &gen, &u); err != nil {
			rows.Close()
			return nil, err
		}
		if st.ydoc == nil || gen != st.generation {
			st.newYDoc() // a new generation starts from its own first update
			st.generation = gen
		}
		if err := st.ydoc.ApplyUpdate(u); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load log of %s at %d: %w", id, seq, err)
		}
		st.logSeq = seq
		st.logBytes += int64(len(u))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load log of %s: %w", id, err)
	}
	err = e.pool.QueryRow(ctx, `SELECT seq, hash FROM save_ledger WHERE doc_id = $1 ORDER BY seq DESC LIMIT 1`, id).
		Scan(&st.ledgerSeq, &st.ledgerHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("load ledger head of %s: %w", id, err)
	}
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(max(preserved_id), 0) FROM preserved_content WHERE doc_id = $1`, id).
		Scan(&st.preserved); err != nil {
		return nil, fmt.Errorf("load %s: %w", id, err)
	}
	gapRows, err := e.pool.Query(ctx, `SELECT client, clock_to FROM client_gaps WHERE doc_id = $1 AND closed_at IS NULL`, id)
	if err != nil {
		return nil, fmt.Errorf("load gaps of %s: %w", id, err)
	}
	for gapRows.Next() {
		var c, to int64
		if err := gapRows.Scan(&c, &to); err != nil {
			gapRows.Close()
			return nil, err
		}
		if st.gaps == nil {
			st.gaps = map[uint64]uint64{}
		}
		st.gaps[uint64(c)] = uint64(to)
	}
	gapRows.Close()
	if err := gapRows.Err(); err != nil {
		return nil, fmt.Errorf("load gaps of %s: %w", id, err)
	}
	if err := e.notePast(ctx, st, gone); err != nil {
		return nil, err
	}
	if gone {
		st.ydoc = nil
	}
	st.regiven = st.regivenBy(ledgerTenant, ledgerLast, createdAfter)
	st.diverged = st.outsideChange() || st.regiven != notRegiven || (st.exists && st.ydoc != nil && st.ytext() != st.content)
	return st, nil
}

// regiving: why a document's row is another document than its Yjs
// side's (docState.regiven).
type regiving uint8

const (
	notRegiven regiving = iota
	// regivenToSchool: the legacy application gave the ID to another
	// school.
	regivenToSchool
	// regivenRecreated: the legacy application deleted the row and
	// created it again for the same school.
	regivenRecreated
)

// regivenBy is whether st's row is another document than its Yjs side's:
// the school of the ledger's last entry of the document's own
// (ledgerTenant, at ledgerLast) and where the ledger stood when the
// legacy application last created a new document at the ID
// (createdAfter; nil: never, as far as the database logged).
func (st *docState) regivenBy(ledgerTenant *string, ledgerLast, createdAfter *int64) regiving {
	switch {
	case !st.exists || st.ydoc == nil || ledgerTenant == nil:
		return notRegiven
	case *ledgerTenant != st.tenant:
		return regivenToSchool
	case createdAfter != nil && *createdAfter >= *ledgerLast:
		return regivenRecreated
	}
	return notRegiven
}
