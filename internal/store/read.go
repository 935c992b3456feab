package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
)

// Document is a document as read through the legacy API.
type Document struct {
	ID            string              `json:"id"`
	Tenant        string              `json:"tenant"`
	Owner         string              `json:"owner"`
	Title         string              `json:"title"`
	Content       string              `json:"content"`
	Revision      int64               `json:"revision"`
	CreatedAt     time.Time           `json:"created_at"`
	UpdatedAt     time.Time           `json:"updated_at"`
	Stage         dataplane.SaveStage `json:"stage"`
	HasYjs        bool                `json:"has_yjs"`
	Generation    int64               `json:"generation,omitempty"`
	ContentSHA256 string              `json:"content_sha256"`
	// StateVector is the Yjs representation's state vector.
	StateVector []byte `json:"state_vector,omitempty"`
	// LegacyContent is the legacy row's content when it differs from
	// Content (it should not from DualWrite on).
	LegacyContent *string `json:"legacy_content,omitempty"`
}

// Read returns a tenant's document as its stage's authoritative side
// has it.
func (e *Engine) Read(ctx context.Context, tenant, doc string) (Document, error) {
	d, recreate, err := e.read(ctx, tenant, doc)
	if recreate {
		// Its row was deleted outside the gateway, and the Yjs side,
		// authoritative at its stage, still holds it: the row is made
		// again first (recreate, repair.go), then read. Or the row was
		// given to this school and the Yjs side is still the other's.
		if _, err := e.Submit(ctx, Request{Kind: KindRepair, Doc: doc}); err != nil {
			return Document{}, err
		}
		d, _, err = e.read(ctx, tenant, doc)
	}
	return d, err
}

func (e *Engine) read(ctx context.Context, tenant, doc string) (Document, bool, error) {
	l := e.laneOf(doc)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if verr := e.validate(&Request{Kind: KindReject, Doc: doc, Tenant: tenant}); verr != nil {
		return Document{}, false, verr
	}
	st, err := e.docForRead(ctx, doc)
	if err != nil {
		return Document{}, false, err
	}
	if !st.exists && st.deleted != nil && st.deleted.tenant == tenant && st.ydoc != nil {
		stage, err := dataplane.ReadTenantStage(ctx, e.pool, tenant)
		if err != nil {
			return Document{}, false, err
		}
		if !legacyAuthoritative(stage.Stage) {
			return Document{}, true, nil
		}
	}
	if !st.exists || st.tenant != tenant {
		return Document{}, false, notFound(doc)
	}
	stage, err := dataplane.ReadTenantStage(ctx, e.pool, st.tenant)
	if err != nil {
		return Document{}, false, err
	}
	if st.regiven != notRegiven && stage.Stage != dataplane.StageLegacyRetired {
		// The legacy application gave the ID to this school, or created
		// its row again: the Yjs side is another document until the
		// repair starts this one's own (repair.go); repaired first, then
		// read.
		return Document{}, true, nil
	}
	text := st.text(stage.Stage)
	d := Document{ID: st.id, Tenant: st.tenant, Owner: st.owner, Title: st.title, Content: text, Revision: st.revision,
		CreatedAt: st.createdAt, UpdatedAt: st.updatedAt, Stage: stage, HasYjs: st.ydoc != nil, Generation: st.generation,
		ContentSHA256: ledger.SHA256Hex([]byte(text))}
	if st.ydoc != nil {
		d.StateVector = st.ydoc.EncodeStateVector()
		if st.content != text {
			c := st.content
			d.LegacyContent = &c
		}
	}
	return d, false, nil
}

// Summary is a document in a list.
type Summary struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Owner     string    `json:"owner"`
	Revision  int64     `json:"revision"`
	UpdatedAt time.Time `json:"updated_at"`
}

// List returns a tenant's documents on every shard (committed state), by ID.
func List(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, tenant string, after string, limit int) ([]Summary, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := q.Query(ctx, `SELECT doc_id, title, owner, revision, updated_at FROM documents
		WHERE tenant = $1 AND doc_id > $2 ORDER BY doc_id LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	out := []Summary{}
	for rows.Next() {
		var s Summary
		if err := rows.Scan(&s.ID, &s.Title, &s.Owner, &s.Revision, &s.UpdatedAt); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, s)
	}
	rows.Close()
	return out, rows.Err()
}

// List is List on the engine's pool.
func (e *Engine) List(ctx context.Context, tenant, after string, limit int) ([]Summary, error) {
	return List(ctx, e.pool, tenant, after, limit)
}

// Revision is one revision of the legacy store's save history.
type Revision struct {
	Doc      string              `json:"doc"`
	Revision int64               `json:"revision"`
	Title    string              `json:"title"`
	Content  string              `json:"content"`
	SavedBy  string              `json:"saved_by"`
	SavedAt  time.Time           `json:"saved_at"`
	Stage    dataplane.SaveStage `json:"stage"`
}

// ReadRevision returns a preserved revision of a tenant's document: only
// to the school it was written under (historyOwner), whoever holds the
// document's row now.
func (e *Engine) ReadRevision(ctx context.Context, tenant, doc string, rev int64) (Revision, error) {
	r := Revision{Doc: doc, Revision: rev}
	err := e.pool.QueryRow(ctx, `
		SELECT title, saved_by, saved_at, stage, epoch FROM document_revisions WHERE doc_id = $1 AND revision = $2`, doc, rev).
		Scan(&r.Title, &r.SavedBy, &r.SavedAt, &r.Stage.Stage, &r.Stage.Epoch)
	if err == nil {
		err = e.ownHistory(ctx, tenant, doc, "revision", rev, r.SavedAt)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Revision{}, errf(http.StatusNotFound, CodeNotFound, "no revision %d of document %q for this tenant", rev, doc)
	}
	if err != nil {
		return Revision{}, err
	}
	texts, err := revisionTexts(ctx, e.pool, doc, rev, rev)
	if err != nil {
		return Revision{}, err
	}
	text, ok := texts[rev]
	if !ok {
		return Revision{}, fmt.Errorf("revision %d of %s vanished while read", rev, doc)
	}
	r.Content = text
	return r, nil
}

// Preserved is content a save supplied that was kept aside.
type Preserved struct {
	Doc          string    `json:"doc"`
	ID           int64     `json:"preserved_id"`
	BaseRevision int64     `json:"base_revision"`
	Content      string    `json:"content"`
	Title        *string   `json:"title,omitempty"` // the save's title, when it sent one and was kept aside whole
	Reason       string    `json:"reason"`
	SavedBy      string    `json:"saved_by"`
	SavedAt      time.Time `json:"saved_at"`
}

// ReadPreserved returns preserved content of a tenant's document: only
// to the school it was kept for (historyOwner).
func (e *Engine) ReadPreserved(ctx context.Context, tenant, doc string, id int64) (Preserved, error) {
	p := Preserved{Doc: doc, ID: id}
	err := e.pool.QueryRow(ctx, `
		SELECT base_revision, content, title, reason, saved_by, saved_at FROM preserved_content WHERE doc_id = $1 AND preserved_id = $2`, doc, id).
		Scan(&p.BaseRevision, &p.Content, &p.Title, &p.Reason, &p.SavedBy, &p.SavedAt)
	if err == nil {
		err = e.ownHistory(ctx, tenant, doc, "preserved_id", id, p.SavedAt)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Preserved{}, errf(http.StatusNotFound, CodeNotFound, "no preserved content %d of document %q for this tenant", id, doc)
	}
	if err != nil {
		return Preserved{}, err
	}
	return p, nil
}

// historyKinds are the ledger entries that name a revision or preserved
// text the document they were written for holds: its commits, repairs,
// backfills and foreign histories kept aside.
var historyKinds = []string{ledger.KindCreated, ledger.KindCommitted, ledger.KindMerged, ledger.KindPreserved,
	ledger.KindRepaired, ledger.KindBackfill, ledger.KindForeign}

// ownHistory answers pgx.ErrNoRows unless the revision or preserved text
// n (field names it in a ledger entry: "revision", "preserved_id"),
// saved at savedAt, is tenant's: historyOwner's.
func (e *Engine) ownHistory(ctx context.Context, tenant, doc, field string, n int64, savedAt time.Time) error {
	owner, err := e.historyOwner(ctx, tenant, doc, field, n, savedAt)
	if err != nil {
		return err
	}
	if owner == "" || owner != tenant {
		return pgx.ErrNoRows
	}
	return nil
}

// historyOwner is the school a revision or preserved text of doc was
// written under. The history (revisions, preserved text) outlives the
// document's row and has no tenant of its own; the row's tenant is not
// its owner once the legacy application (outside the gateway) deleted
// the row and created a row with the same ID for another school: checked
// against the row, that school read the first school's essays. So:
//   - the first ledger entry naming it says whose document wrote it
//     (every commit, repair and kept-aside text through the syncer has
//     one, under its document's tenant);
//   - one no entry names (saved before the ledger began, by the legacy
//     application behind the gateway, or a row's text a repair took into
//     the history) belongs to the row its save reached: the first row of
//     the ID deleted outside the gateway at or after savedAt, as the
//     database logged it with the row's tenant (migration 00013); if none
//     was, the row there now, or for an ID without one, the school its
//     history is (the deleted document's: the ledger's last save of it).
//
// A deletion's time is PostgreSQL's clock and savedAt the syncer's; a
// save reaching a row in the same instant it was deleted is the only one
// this can place on the wrong side, and only a row without a ledger
// entry.
func (e *Engine) historyOwner(ctx context.Context, tenant, doc, field string, n int64, savedAt time.Time) (string, error) {
	var owner string
	err := e.pool.QueryRow(ctx, `SELECT tenant FROM save_ledger WHERE doc_id = $1 AND kind = ANY($2) AND body::jsonb->>$3 = $4
		ORDER BY seq LIMIT 1`, doc, historyKinds, field, strconv.FormatInt(n, 10)).Scan(&owner)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		if err != nil {
			return "", fmt.Errorf("whose %s %d of %s is: %w", field, n, doc, err)
		}
		return owner, nil
	}
	var deleted *string
	err = e.pool.QueryRow(ctx, `SELECT tenant FROM outside_changes WHERE doc_id = $1 AND op = 'DELETE' AND at >= $2
		ORDER BY id LIMIT 1`, doc, savedAt).Scan(&deleted)
	switch {
	case err == nil && deleted != nil:
		return *deleted, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("whose %s %d of %s is: %w", field, n, doc, err)
	}
	return e.currentOwner(ctx, tenant, doc)
}

// currentOwner is the school the document's row is (""): for an ID whose
// row is gone, the school whose history the document is, the one the
// ledger last saved it for, as evidence takes it.
func (e *Engine) currentOwner(ctx context.Context, tenant, doc string) (string, error) {
	l := e.laneOf(doc)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if verr := e.validate(&Request{Kind: KindReject, Doc: doc, Tenant: tenant}); verr != nil {
		return "", verr
	}
	st, err := e.docForRead(ctx, doc)
	if err != nil {
		return "", err
	}
	switch {
	case st.exists:
		return st.tenant, nil
	case st.deleted != nil:
		return st.deleted.tenant, nil
	}
	return st.historyTenant, nil
}

// LedgerRows returns a document's ledger rows in order.
func LedgerRows(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, doc string) ([]ledger.Row, error) {
	rows, err := q.Query(ctx, `SELECT seq, body, prev_hash, hash FROM save_ledger WHERE doc_id = $1 ORDER BY seq`, doc)
	if err != nil {
		return nil, fmt.Errorf("ledger of %s: %w", doc, err)
	}
	var out []ledger.Row
	for rows.Next() {
		var r ledger.Row
		var body string
		if err := rows.Scan(&r.Seq, &body, &r.PrevHash, &r.Hash); err != nil {
			rows.Close()
			return nil, err
		}
		r.Body = []byte(body)
		out = append(out, r)
	}
	rows.Close()
	return out, rows.Err()
}

// VerifyLedger checks a document's hash chain (operator-only), and each
// receipt given against it (ledger.CheckReceipts): rows removed from the
// chain's end, or a tail rewritten with fresh hashes, pass the chain
// check and fail a receipt for them.
func (e *Engine) VerifyLedger(ctx context.Context, doc string, receipts ...ledger.Receipt) (VerifyReport, error) {
	rows, err := LedgerRows(ctx, e.pool, doc)
	if err != nil {
		return VerifyReport{}, err
	}
	return chainReport(doc, rows, receipts), nil
}

func chainReport(doc string, rows []ledger.Row, receipts []ledger.Receipt) VerifyReport {
	rep := VerifyReport{Doc: doc, Entries: len(rows), Problems: ledger.Verify(doc, rows),
		Receipts: ledger.CheckReceipts(rows, receipts)}
	rep.OK = len(rep.Problems) == 0
	if rep.Problems == nil {
		rep.Problems = []ledger.Problem{} // always in the answer: [] when intact
	}
	for _, c := range rep.Receipts {
		rep.OK = rep.OK && c.Verdict == ledger.ReceiptConfirmed
	}
	if n := len(rows); n > 0 {
		rep.Head = hex.EncodeToString(rows[n-1].Hash)
		rep.Receipt = ledger.FormatReceipt(rows[n-1].Seq, rows[n-1].Hash)
	}
	return rep
}

// VerifyReport is the result of checking a ledger chain.
type VerifyReport struct {
	Doc     string `json:"doc"`
	OK      bool   `json:"ok"`
	Entries int    `json:"entries"`
	Head    string `json:"head,omitempty"`
	// Receipt is the last entry's receipt: kept, it lets a later check
	// find entries removed or rewritten up to this point.
	Receipt  string                `json:"receipt,omitempty"`
	Problems []ledger.Problem      `json:"problems"`
	Receipts []ledger.ReceiptCheck `json:"receipts,omitempty"`
}
