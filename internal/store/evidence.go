package store

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Verdicts of the design brief.
const (
	VerdictSynced                = "synced"
	VerdictSavedLocallyNotSynced = "saved-locally-not-synced"
	VerdictOverwrittenPreserved  = "overwritten-preserved"
	VerdictRejected              = "rejected"
	VerdictNeverPersisted        = "never-persisted"
)

// EvidenceQuery asks about a document, optionally narrowed to one subject:
// a request (idempotency key or request ID), a revision, a Yjs client, a
// user.
type EvidenceQuery struct {
	Doc      string
	Tenant   string
	Request  string
	Revision int64
	Client   uint64
	User     string
	Since    time.Time
}

// TimelineEntry is a ledger entry with its chain hashes.
type TimelineEntry struct {
	ledger.Entry
	Hash     string `json:"hash"`
	PrevHash string `json:"prev_hash"`
}

// Finding is one verdict with its proof.
type Finding struct {
	Verdict string `json:"verdict"`
	Summary string `json:"summary"`
	// Entries are the ledger positions that prove it.
	Entries []int64 `json:"entries,omitempty"`
	Hash    string  `json:"hash,omitempty"`
	// Revision or StateVector name the committed state.
	Revision    int64             `json:"revision,omitempty"`
	StateVector map[string]uint64 `json:"state_vector,omitempty"`
	// Missing: what a client holds that we never received.
	Missing map[string][2]uint64 `json:"missing,omitempty"`
	// Pending: per client, the clock ranges [from, to) of operations the
	// server holds durably but cannot put in the text yet; WaitingFor:
	// per client, the clock of an operation they build on that it never
	// received.
	Pending    map[string][][2]uint64 `json:"pending,omitempty"`
	WaitingFor map[string]uint64      `json:"waiting_for,omitempty"`
	LastSeen   *time.Time             `json:"last_seen,omitempty"`
	// PreservedAt is the API path where superseded content can be read.
	PreservedAt string `json:"preserved_at,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Evidence answers an EvidenceQuery.
type Evidence struct {
	Doc      string          `json:"doc"`
	Exists   bool            `json:"exists"`
	Subject  string          `json:"subject,omitempty"`
	Verdict  string          `json:"verdict"`
	Proof    Finding         `json:"proof"`
	Findings []Finding       `json:"findings"`
	Chain    VerifyReport    `json:"chain"`
	Timeline []TimelineEntry `json:"timeline"`
}

func (q EvidenceQuery) subject() string {
	switch {
	case q.Request != "":
		return "request " + q.Request
	case q.Revision != 0:
		return "revision " + strconv.FormatInt(q.Revision, 10)
	case q.Client != 0:
		return "client " + strconv.FormatUint(q.Client, 10)
	case q.User != "":
		return "user " + q.User
	}
	return ""
}

func (q EvidenceQuery) matches(en ledger.Entry) bool {
	switch {
	case q.Request != "":
		return en.IdempotencyKey == q.Request || en.RequestID == q.Request
	case q.Revision != 0:
		return en.Revision == q.Revision && en.Kind != ledger.KindStateVector && en.Kind != ledger.KindRejected && en.Kind != ledger.KindDisconnected
	case q.Client != 0:
		c := strconv.FormatUint(q.Client, 10)
		if slices.Contains(en.Clients, q.Client) {
			return true
		}
		if en.Kind == ledger.KindStateVector || en.Kind == ledger.KindDisconnected {
			_, ok := en.StateVector[c]
			return ok
		}
		return false
	case q.User != "":
		return en.User == q.User
	}
	return true
}

// Evidence builds the timeline and verdicts of a document for a tenant.
func (e *Engine) Evidence(ctx context.Context, q EvidenceQuery) (Evidence, error) {
	l := e.laneOf(q.Doc)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if verr := e.validate(&Request{Kind: KindReject, Doc: q.Doc, Tenant: q.Tenant}); verr != nil {
		return Evidence{}, verr
	}
	// As a read: a row changed, inserted or deleted outside the gateway
	// since the copy in memory was made is loaded again.
	st, err := e.docForRead(ctx, q.Doc)
	if err != nil {
		return Evidence{}, err
	}
	// Another school's document answers as an ID without a trace would
	// (exists false, never persisted), showing only the asker's own
	// entries on it: a 404 here, against 200 for an unused ID, told any
	// school for free which IDs others use. Its chain is not reported.
	foreign := st.exists && st.tenant != q.Tenant
	rows, err := LedgerRows(ctx, e.pool, q.Doc)
	if err != nil {
		return Evidence{}, err
	}
	if !st.exists {
		foreign = foreignID(st, q, rows)
	}
	replaced, err := e.replacement(ctx, st, rows)
	if err != nil {
		return Evidence{}, err
	}
	existed := st.exists
	ev := Evidence{Doc: q.Doc, Exists: st.exists && !foreign, Subject: q.subject(), Findings: []Finding{}, Timeline: []TimelineEntry{}}
	if foreign {
		ev.Chain = chainReport(q.Doc, nil, nil)
		own := rows[:0:0]
		for _, r := range rows {
			var en ledger.Entry
			if json.Unmarshal(r.Body, &en) == nil && (en.Tenant == q.Tenant || (!existed && en.Tenant == contract.UnauthenticatedTenant)) {
				own = append(own, r)
			}
		}
		rows = own
		st = &docState{id: q.Doc}
	} else {
		ev.Chain = chainReport(q.Doc, rows, nil)
	}
	all := timelineOf(rows, st, q, replaced, foreign)
	if n := len(rows); n > 0 {
		ev.Chain.Head = hex.EncodeToString(rows[n-1].Hash)
	}
	made := false // asked about a revision: its first commit made it
	for _, t := range all {
		if q.matches(t.Entry) && (q.Since.IsZero() || !t.At.Before(q.Since)) {
			if q.Revision != 0 && isCommit(t.Kind) {
				// A later commit that changed no text (an update held
				// pending, or one of no text) carries the revision it
				// left, but is not part of it.
				if made {
					continue
				}
				made = true
			}
			ev.Timeline = append(ev.Timeline, t)
		}
	}
	ev.Findings = e.findings(st, q, all, ev.Timeline)
	if err := e.noteOutside(ctx, ev.Findings, st, q, all, replaced, foreign); err != nil {
		return Evidence{}, err
	}
	if f, ok, err := e.preLedgerFinding(ctx, st, q, all, replaced); err != nil {
		return Evidence{}, err
	} else if ok && replaced != nil {
		// The row there now heads the answer, before the deleted
		// document's last save.
		ev.Findings = append([]Finding{f}, ev.Findings...)
	} else if ok {
		ev.Findings = append(ev.Findings, f)
	}
	broken := noteBrokenChain(ev.Findings, ev.Chain.Problems)
	ev.Verdict, ev.Proof = verdict(ev.Findings, ev.Subject != "")
	if ev.Verdict == VerdictNeverPersisted {
		ev.Proof.Summary = neverPersistedSummary(ev, st, q, all) + broken
	}
	if foreign {
		// Positions and hashes in another school's chain are its facts.
		for i := range ev.Timeline {
			ev.Timeline[i].Seq, ev.Timeline[i].Hash, ev.Timeline[i].PrevHash = 0, "", ""
			// Its stage, cohort and epoch are the owner school's too.
			ev.Timeline[i].Stage, ev.Timeline[i].Cohort, ev.Timeline[i].Epoch = "", "", 0
		}
		ev.Chain.Head = ""
		for i := range ev.Findings {
			ev.Findings[i].Entries, ev.Findings[i].Hash = nil, ""
		}
		ev.Proof.Entries, ev.Proof.Hash = nil, ""
	}
	return ev, nil
}

// timelineOf is the ledger's entries as the asker may see them, with
// their chain hashes.
func timelineOf(rows []ledger.Row, st *docState, q EvidenceQuery, replaced *rowReplacement, foreign bool) []TimelineEntry {
	var all []TimelineEntry
	for _, r := range rows {
		var en ledger.Entry
		if err := json.Unmarshal(r.Body, &en); err != nil {
			continue // reported by the chain check
		}
		if replaced != nil && !foreign && r.Seq <= replaced.lastOld && en.Tenant != q.Tenant && en.Tenant != contract.UnauthenticatedTenant {
			// Another school's entries from before the row was created
			// again outside the gateway: its document's (the legacy
			// application gave the ID to this school), or its attempts
			// to reach that document, not this one. Its request IDs,
			// users and text hashes are its own.
			continue
		}
		shown := en.Kind == ledger.KindRejected && (st.exists || en.Tenant == contract.UnauthenticatedTenant)
		if en.Tenant != q.Tenant && en.Tenant != "" && !shown {
			// Another tenant's entries on the ID: on a document of this
			// tenant only its refused attempts show (who tried to reach
			// the document); what it announced before the document
			// existed says nothing of this tenant's saves. Refusals
			// without a valid token show either way: a create refused
			// for an expired token was likely the asker's own. The
			// system's entries (repairs) stay.
			continue
		}
		all = append(all, TimelineEntry{Entry: en, Hash: hex.EncodeToString(r.Hash), PrevHash: hex.EncodeToString(r.PrevHash)})
	}
	return all
}

// noteOutside tells, on the findings, what was done to the document's
// row outside the gateway and is not on the ledger: deleted (the row is
// gone, or, for the asker's document whose ID another school holds now,
// gone for the asker), or deleted and created again (replaced).
func (e *Engine) noteOutside(ctx context.Context, fs []Finding, st *docState, q EvidenceQuery, all []TimelineEntry, replaced *rowReplacement, foreign bool) error {
	if st.deleted != nil {
		// The documents table's trigger logged the deletion with
		// PostgreSQL's clock (migration 00013), whatever the stage, and
		// with the ledger's position then (00020). Newest first: the scan
		// stops at the document's latest deletion.
		var d outsideDeletion
		err := e.pool.QueryRow(ctx, `SELECT at, ledger_seq FROM outside_changes WHERE doc_id = $1 AND op = 'DELETE' ORDER BY id DESC LIMIT 1`, st.id).Scan(&d.at, &d.ledgerSeq)
		switch {
		case err == nil:
			goneSince(fs, all, &d)
		case errors.Is(err, pgx.ErrNoRows):
			goneSince(fs, all, nil)
		default:
			return fmt.Errorf("read when %s was deleted: %w", st.id, err)
		}
	}
	switch {
	case replaced == nil:
	case foreign && replaced.tenant == q.Tenant:
		// The asker's document was deleted outside the gateway, and its
		// ID given to another school since: gone, as for a row only
		// deleted (nothing is said of the row there now).
		goneSince(fs, all, &replaced.deleted)
	case !foreign:
		noteReplaced(fs, replaced, replaced.tenant == q.Tenant)
	}
	return nil
}

// goneSince notes on the synced and rejected findings that the
// document's row is gone: deleted outside the gateway (the legacy
// application, or by hand) after the last commit on record, and not on
// record itself yet (the next request for the document records it where
// its Yjs side needs that; at Legacy, nothing does). "Synced" alone read
// as if the text were still there for a student who cannot find it, and
// a refusal whose work was "already committed" as if it were safe.
// deleted is the row's deletion as the database logged it, if it did
// after that commit.
func goneSince(fs []Finding, all []TimelineEntry, deleted *outsideDeletion) {
	var last *TimelineEntry
	for i := range all {
		if isCommit(all[i].Kind) {
			last = &all[i]
		}
	}
	if last == nil {
		return
	}
	if _, ok := deletedAfter(all, *last, time.Time{}); ok {
		return // on record: the findings say so themselves
	}
	gone := fmt.Sprintf("; the document no longer exists: its row was deleted outside the gateway after ledger entry %d (the deletion is not on record yet)", last.Seq)
	if deleted != nil && deleted.after(*last) {
		gone = fmt.Sprintf("; the document no longer exists: its row was deleted outside the gateway on %s, after ledger entry %d (the database logged the deletion; it is not on the ledger yet)",
			deleted.at.UTC().Format(time.RFC3339), last.Seq)
	}
	for i := range fs {
		if fs[i].Verdict == VerdictSynced || fs[i].Verdict == VerdictRejected {
			fs[i].Summary += gone
		}
	}
}

// rowReplacement: the document's row was deleted outside the gateway and
// a row with its ID created there again (the legacy application reusing
// the ID, for the same school or another), after ledger entries of the
// deleted document.
type rowReplacement struct {
	// deleted is the row's deletion as the database logged it.
	deleted   outsideDeletion
	createdAt time.Time
	// tenant is the deleted row's school.
	tenant string
	// lastOld is the last ledger entry written before the row was
	// created again: it and those before it are not the current
	// document's.
	lastOld int64
}

// replacement finds whether st's row replaced, outside the gateway, a
// document the ledger has entries of (nil: it did not). Nothing else
// tells them apart: the ID is the same, the syncer takes the new row for
// the old one changed (a repair captures its text as the next revision),
// and the ledger's earlier entries read as the current document's
// history. The documents table's triggers log the deletion (migration
// 00013) and the new document's creation with where the ledger stood
// then (00020), which is where the old document's entries end; the
// syncer's own creates are not logged, nor is a row put back as it was
// (its school and created_at), so neither is a replacement. Only a row
// written outside the gateway (change_seq set) is looked up. A
// replacement logged before migration 00020 has no ledger position: its
// entries are placed by their times, the syncer's clock against
// PostgreSQL's.
func (e *Engine) replacement(ctx context.Context, st *docState, rows []ledger.Row) (*rowReplacement, error) {
	if !st.exists || st.changeSeq == 0 || len(rows) == 0 {
		return nil, nil
	}
	var r rowReplacement
	// The deletion before the creation: the latest logged at or before
	// it (one transaction stamps both with the same time).
	err := e.pool.QueryRow(ctx, `
		SELECT d.at, d.ledger_seq, coalesce(d.tenant, ''), c.at, c.ledger_seq
		FROM outside_creations c,
		     LATERAL (SELECT at, ledger_seq, tenant FROM outside_changes WHERE doc_id = $1 AND op = 'DELETE' AND at <= c.at
		              ORDER BY id DESC LIMIT 1) d
		WHERE c.doc_id = $1`, st.id).
		Scan(&r.deleted.at, &r.deleted.ledgerSeq, &r.tenant, &r.createdAt, &r.lastOld)
	switch {
	case err == nil:
	case errors.Is(err, pgx.ErrNoRows):
		return e.replacementByClock(ctx, st, rows)
	default:
		return nil, fmt.Errorf("read whether the row of %s was replaced: %w", st.id, err)
	}
	if r.lastOld == 0 {
		return nil, nil // the ledger began with the row there now
	}
	return &r, nil
}

// replacementByClock is replacement for a row deleted and created again
// before migration 00020 (its deletion logged with no ledger position):
// the first creation logged after that deletion, and the ledger's entries
// placed by their times.
func (e *Engine) replacementByClock(ctx context.Context, st *docState, rows []ledger.Row) (*rowReplacement, error) {
	var r rowReplacement
	err := e.pool.QueryRow(ctx, `
		SELECT d.at, coalesce(d.tenant, ''), i.at
		FROM (SELECT id, at, tenant, ledger_seq FROM outside_changes WHERE doc_id = $1 AND op = 'DELETE' ORDER BY id DESC LIMIT 1) d,
		     LATERAL (SELECT at FROM outside_changes WHERE doc_id = $1 AND op = 'INSERT' AND id > d.id ORDER BY id LIMIT 1) i
		WHERE d.ledger_seq IS NULL`, st.id).
		Scan(&r.deleted.at, &r.tenant, &r.createdAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read whether the row of %s was replaced: %w", st.id, err)
	}
	for _, row := range rows {
		var en ledger.Entry
		if json.Unmarshal(row.Body, &en) == nil && en.At.Before(r.createdAt) {
			r.lastOld = row.Seq
		}
	}
	if r.lastOld == 0 {
		return nil, nil
	}
	return &r, nil
}

// outsideDeletion: a documents row deleted outside the gateway, as the
// database logged it.
type outsideDeletion struct {
	at time.Time
	// ledgerSeq is the ledger's last entry for the ID then (nil: logged
	// before migration 00020).
	ledgerSeq *int64
}

// after: the row was deleted after ledger entry t was written. By the
// ledger's position when the database logged it; a deletion logged
// before that was recorded is placed by its time, PostgreSQL's clock
// against the syncer's.
func (d *outsideDeletion) after(t TimelineEntry) bool {
	if d.ledgerSeq != nil {
		return *d.ledgerSeq >= t.Seq
	}
	return !d.at.Before(t.At)
}

// current: t is an entry of the document whose row is there now.
func (r *rowReplacement) current(t TimelineEntry) bool {
	return r == nil || t.Seq > r.lastOld
}

// noteReplaced tells, on the findings, which document they are of once
// its row was replaced outside the gateway: those resting only on
// entries from before then are of the deleted document, and the current
// document's saves say that its row was replaced. sameSchool: the deleted
// row was the asker's school's; otherwise nothing is said of it (its
// entries are not shown).
func noteReplaced(fs []Finding, r *rowReplacement, sameSchool bool) {
	del, ins := r.deleted.at.UTC().Format(time.RFC3339), r.createdAt.UTC().Format(time.RFC3339)
	old := fmt.Sprintf("; that was before the row at this ID now was created outside the gateway on %s", ins)
	now := fmt.Sprintf("; the document's row was created outside the gateway on %s: the ledger's entries from before then are not this document's", ins)
	if sameSchool {
		old = fmt.Sprintf("; that was the document deleted outside the gateway on %s, not the one at this ID now: its row was created again outside the gateway on %s", del, ins)
		now = fmt.Sprintf("; the document's row was replaced outside the gateway: deleted on %s and created again with this ID on %s, so ledger entries up to %d are of the document deleted then",
			del, ins, r.lastOld)
	}
	for i := range fs {
		switch f := &fs[i]; {
		case len(f.Entries) == 0:
		case slices.Max(f.Entries) <= r.lastOld:
			f.Summary += old
		case f.Verdict == VerdictSynced:
			f.Summary += now
		}
	}
}

// noteBrokenChain tells, on every finding, that the ledger's hash chain
// fails its check, with the problems evidence verify reports: a finding
// resting on an entry that fails it says which and why, and any other
// problem is named, so that no finding reads as proof from a sound
// chain (an entry rewritten by a superuser can turn a save into another
// request's, or make one vanish). It returns the note for an answer that
// found nothing ("" when the chain is intact).
func noteBrokenChain(fs []Finding, problems []ledger.Problem) string {
	if len(problems) == 0 {
		return ""
	}
	why := map[int64][]string{}
	var seqs []int64
	for _, p := range problems {
		if _, ok := why[p.Seq]; !ok {
			seqs = append(seqs, p.Seq)
		}
		why[p.Seq] = append(why[p.Seq], p.Problem)
	}
	broken := fmt.Sprintf("; the ledger's hash chain fails its check at %s (evidence verify shows why): entries may have been changed after they were written, "+
		"so this answer cannot be relied on until an operator has checked the ledger", positions(seqs))
	for i := range fs {
		f := &fs[i]
		rests := 0
		for _, s := range f.Entries {
			if w, ok := why[s]; ok {
				f.Summary += fmt.Sprintf("; ledger entry %d, which this rests on, fails the hash-chain check (%s): it was changed after it was written, so this cannot be relied on",
					s, strings.Join(w, "; "))
				rests++
			}
		}
		if rests < len(seqs) {
			f.Summary += broken
		}
	}
	return broken
}

// foreignID reports whether an ID no document holds is another school's:
// a deleted document's history is its school's; otherwise an ID another
// school's students touched (a state vector announced before the first
// save) has that school's chain.
func foreignID(st *docState, q EvidenceQuery, rows []ledger.Row) bool {
	if st.historyTenant != "" || st.deleted != nil {
		owner := st.historyTenant
		if st.deleted != nil {
			owner = st.deleted.tenant
		}
		return owner != q.Tenant
	}
	for _, r := range rows {
		var en ledger.Entry
		if json.Unmarshal(r.Body, &en) == nil && en.Tenant != q.Tenant && en.Tenant != "" && en.Tenant != contract.UnauthenticatedTenant {
			return true
		}
	}
	return false
}

// neverPersistedSummary says why nothing was found where the default
// ("no trace at any layer") would deny what the ledger or the document
// shows.
func neverPersistedSummary(ev Evidence, st *docState, q EvidenceQuery, all []TimelineEntry) string {
	switch {
	case q.Request != "" && !slices.ContainsFunc(all, func(t TimelineEntry) bool { return q.matches(t.Entry) }):
		// Say what was looked for, and where: a mistyped key or the
		// wrong document is the usual cause.
		return fmt.Sprintf("no entry in the ledger of document %s names request %s (as its Idempotency-Key or X-Request-Id)", q.Doc, q.Request)
	case !q.Since.IsZero() && ev.Subject == "" && st.exists && !slices.ContainsFunc(all, func(t TimelineEntry) bool { return isCommit(t.Kind) }):
		// Saved before the ledger began, not since the time asked about.
		return fmt.Sprintf("no save since %s: the document's row was last saved on %s, not through the gateway (ask without since)",
			q.Since.UTC().Format(time.RFC3339Nano), st.updatedAt.UTC().Format(time.RFC3339))
	case !q.Since.IsZero() && len(all) > 0:
		// There is a trace, only none since the time asked about.
		return "nothing of it reached the ledger since " + q.Since.UTC().Format(time.RFC3339Nano) +
			"; earlier entries exist (ask without since)"
	case len(ev.Timeline) > 0:
		// Entries that are not saves (a state vector announced with
		// nothing the server lacked, a disconnection): a trace, no save.
		kinds := make([]string, 0, len(ev.Timeline))
		for _, t := range ev.Timeline {
			kinds = append(kinds, t.Kind)
		}
		slices.Sort(kinds)
		return fmt.Sprintf("nothing of it was saved: the ledger names it in %d entries (%s), none of them a save",
			len(ev.Timeline), strings.Join(slices.Compact(kinds), ", "))
	}
	return ev.Proof.Summary
}

// isDeletion: a repaired entry recording that a row deleted outside the
// gateway stays deleted; it commits no text.
func isDeletion(en ledger.Entry) bool {
	return en.Kind == ledger.KindRepaired && en.Outcome == OutcomeDeletionStands
}

// textRevision is the revision whose text first held a commit's
// operations: its own, unless it was an update held pending, whose
// operations enter the text with the first later commit that takes its
// clients past the state vector it left (false: still held).
func textRevision(all []TimelineEntry, t TimelineEntry) (int64, bool) {
	if t.Outcome != OutcomePending || len(t.Clients) == 0 {
		return t.Revision, true
	}
	for _, s := range all {
		if s.Seq <= t.Seq || !isCommit(s.Kind) || s.StateVector == nil {
			continue
		}
		in := true
		for _, c := range t.Clients {
			k := strconv.FormatUint(c, 10)
			if s.StateVector[k] <= t.StateVector[k] {
				in = false
				break
			}
		}
		if in {
			return s.Revision, true
		}
	}
	return t.Revision, false
}

func isCommit(k string) bool {
	return k == ledger.KindCreated || k == ledger.KindCommitted || k == ledger.KindMerged || k == ledger.KindPreserved ||
		k == ledger.KindRepaired
}

// schoolOf is the school whose work a document's entries are: the
// document's, or, while no document holds the ID (never made, or deleted
// outside the gateway), the asker's.
func schoolOf(st *docState, q EvidenceQuery) string {
	if !st.exists {
		return q.Tenant
	}
	return st.tenant
}

// otherSchool: en is another school's (a refusal of its request to reach
// this school's document), not one refused without a valid token, whose
// school is not known, nor the system's.
func otherSchool(en ledger.Entry, school string) bool {
	return en.Tenant != school && en.Tenant != "" && en.Tenant != contract.UnauthenticatedTenant
}

// unsyncedFindings are the saved-locally-not-synced findings: clients
// that announced operations the server still does not hold, or sent them
// in an update that was refused or could not be confirmed (the gateway
// got it, the syncer was down) and never sent them again.
func unsyncedFindings(st *docState, q EvidenceQuery, all, sub []TimelineEntry) []Finding {
	var out []Finding
	// Per client, every announcement of its operations we lacked. The
	// highest clock any of them announced is what exists somewhere: a
	// later, smaller announcement (another tab holding only some of a
	// client's operations) does not make the rest any less unsynced.
	announced := map[string][]TimelineEntry{}
	subjectClient := ""
	if q.Client != 0 {
		subjectClient = strconv.FormatUint(q.Client, 10)
	}
	// The school whose refused updates count: the document's, or, while
	// no document holds the ID (never made, or deleted outside the
	// gateway), the asker's. Comparing with the empty tenant of an ID
	// without a document left out every refusal there: a student's edit
	// of a deleted document, refused, read as "rejected", and the whole
	// ID as "synced" from the deleted document's last save.
	school := schoolOf(st, q)
	for _, t := range sub {
		if t.Kind != ledger.KindStateVector && t.Kind != ledger.KindDisconnected && t.Kind != ledger.KindRejected {
			continue
		}
		if t.Kind == ledger.KindRejected && t.Tenant != school {
			// Another school's refused update (not_found) carries no
			// operation of this document's clients.
			continue
		}
		for c := range t.Missing {
			// Asked about one client: its own operations, not others' it
			// happened to hold (a peer's, received from another tab).
			if subjectClient == "" || c == subjectClient {
				announced[c] = append(announced[c], t)
			}
		}
	}
	clients := make([]string, 0, len(announced))
	for c := range announced {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	for _, c := range clients {
		top := announced[c][0]
		for _, t := range announced[c][1:] {
			if t.Missing[c][1] >= top.Missing[c][1] {
				top = t // the highest claim; the latest of equal ones
			}
		}
		id, _ := strconv.ParseUint(c, 10, 64)
		claimed := top.Missing[c][1]
		var have uint64 // the first clock still lacking
		if st.ydoc != nil {
			lack, ok := st.ydoc.Missing(yjs.StateVector{id: claimed})[id]
			if !ok {
				continue // received since (integrated, or held pending)
			}
			have = lack.Clock
		}
		if preservedUpTo(all, c) >= claimed {
			continue // a foreign history, kept aside: overwritten-preserved
		}
		if heldByADeletedDocument(all, c, top, claimed) {
			// Committed to the document at this ID after the
			// announcement, then deleted outside the gateway: synced,
			// saying so (not "the server holds 0 of them").
			continue
		}
		// The proof is every announcement of operations the server still
		// lacks; last seen is the latest of them.
		var seqs []int64
		at := top.At
		for _, t := range announced[c] {
			if t.Missing[c][1] > have {
				seqs = append(seqs, t.Seq)
				if t.At.After(at) {
					at = t.At
				}
			}
		}
		summary := fmt.Sprintf("client %s announced operations up to clock %d; the server holds %d of them", c, claimed, have)
		if top.Kind == ledger.KindRejected {
			summary = fmt.Sprintf("client %s sent operations up to clock %d in an update that was not taken (%s); the server holds %d of them, "+
				"the rest exist only where that client kept them", c, claimed, top.Code, have)
		}
		for _, d := range all {
			// Deletions only: deletedHeld reads the whole ledger, and
			// measured for every entry it made this loop quadratic.
			if d.Seq <= top.Seq || !isDeletion(d.Entry) {
				continue
			}
			if held := deletedHeld(all, c, d); held > have {
				summary += fmt.Sprintf(" (the document deleted outside the gateway at ledger entry %d had %d of them: its saves answer synced)", d.Seq, held)
				break
			}
		}
		reason := ""
		if ref, del, ok := deletedCopyRefusal(all, announced[c]); ok {
			// Support must hear that the document was deleted, that the
			// copy was refused for it, and where the text is: the proof
			// otherwise read as an ordinary unsynced client, or, after a
			// reconnection, as an announcement the server had "0" of.
			summary = deletedCopySummary(st, all, c, claimed, have, ref, del)
			reason = ref.Reason
			seqs = append(seqs, del.Seq)
			slices.Sort(seqs)
		}
		out = append(out, Finding{
			Verdict: VerdictSavedLocallyNotSynced,
			Summary: summary, Reason: reason,
			Entries: seqs, Hash: top.Hash, LastSeen: &at,
			Missing: map[string][2]uint64{c: {have, claimed}},
		})
	}
	return out
}

// announcedFindings answer for operations the subject announced (a
// state vector naming operations the server lacked, a disconnection
// holding them) that reached the server since through other entries: an
// HTTP sync step 1 whose operations came over the WebSocket or a later
// POST of updates, a connection cut before it sent them. The subject's
// own entries hold no save, so without these the answer was
// never-persisted for work the server holds. Clients the subject's own
// commits carried, or that unsyncedFindings reports, are left out.
func announcedFindings(st *docState, q EvidenceQuery, all, sub []TimelineEntry, found []Finding) []Finding {
	subjectClient := ""
	if q.Client != 0 {
		subjectClient = strconv.FormatUint(q.Client, 10)
	}
	announced := map[string][]TimelineEntry{}
	carried := false // the subject's own entries carry operations
	school := schoolOf(st, q)
	for _, t := range sub {
		if isCommit(t.Kind) || (t.Kind == ledger.KindRejected && len(t.Clients) > 0 && !otherSchool(t.Entry, school)) {
			carried = true
			for _, c := range t.Clients {
				announced[strconv.FormatUint(c, 10)] = nil // carried: answered by its own entries
			}
		}
	}
	for _, t := range sub {
		if t.Kind != ledger.KindStateVector && t.Kind != ledger.KindDisconnected {
			continue
		}
		for c := range t.Missing {
			if prev, seen := announced[c]; (subjectClient == "" || c == subjectClient) && (!seen || prev != nil) {
				announced[c] = append(prev, t)
			}
		}
	}
	for _, f := range found {
		if f.Verdict == VerdictSavedLocallyNotSynced {
			for c := range f.Missing {
				delete(announced, c)
			}
		}
	}
	clients := make([]string, 0, len(announced))
	for c, ts := range announced {
		if len(ts) > 0 {
			clients = append(clients, c)
		}
	}
	slices.Sort(clients)
	var out []Finding
	for _, c := range clients {
		ts := announced[c]
		first, claimed := ts[0], uint64(0)
		seqs := make([]int64, 0, len(ts)+1)
		for _, t := range ts {
			claimed = max(claimed, t.Missing[c][1])
			seqs = append(seqs, t.Seq)
		}
		from := first.Missing[c][0]
		what := fmt.Sprintf("client %s announced operations up to clock %d that the server did not hold then (from clock %d; ledger entry %d)",
			c, claimed, from, first.Seq)
		if q.Request != "" && !carried {
			what = fmt.Sprintf("request %s carried no operations: %s", q.Request, what)
		}
		by, kept, came := broughtBy(all, c, first, from, claimed)
		if kept != nil && len(by) == 0 {
			if q.matches(kept.Entry) {
				continue // the subject's own: among the overwritten-preserved findings
			}
			out = append(out, Finding{
				Verdict: VerdictOverwrittenPreserved, Reason: kept.Reason,
				Summary: fmt.Sprintf("%s; they %s by request %s (ledger entry %d) as a copy from a history the server does not know, "+
					"which was not CRDT-merged (%s): its text is preserved", what, came, requestOf(*kept), kept.Seq, kept.Outcome),
				Entries: append(seqs, kept.Seq), Hash: kept.Hash, Revision: kept.Revision,
				PreservedAt: fmt.Sprintf("/v1/documents/%s/preserved/%d", st.id, kept.PreservedID),
			})
			continue
		}
		f := Finding{Verdict: VerdictSynced, Entries: seqs}
		if len(by) == 0 {
			// Held, with no later entry naming the client (an entry
			// from before updates recorded their clients): the server
			// holds them all the same.
			f.Revision = st.revision
			f.Summary = fmt.Sprintf("%s; the server holds them now (revision %d), and no later ledger entry names the update that brought them", what, st.revision)
			out = append(out, f)
			continue
		}
		last := by[len(by)-1]
		names := make([]string, 0, len(by))
		for _, t := range by {
			f.Entries = append(f.Entries, t.Seq)
			names = append(names, requestOf(t))
		}
		slices.Sort(names)
		names = slices.Compact(names)
		rev, in := textRevision(all, last)
		f.Hash, f.Revision, f.StateVector = last.Hash, rev, map[string]uint64{c: last.StateVector[c]}
		where := fmt.Sprintf("in the text as of revision %d (stage %s epoch %d)", rev, last.Stage, last.Epoch)
		if !in {
			where = fmt.Sprintf("held pending in the update log since revision %d: they build on operations the server never received", last.Revision)
		}
		f.Summary = fmt.Sprintf("%s; they were committed since by request %s (%s), %s",
			what, strings.Join(names, ", "), ledgerEntries(by), where)
		if d, ok := deletedAfter(all, last, q.Since); ok {
			f.Summary += fmt.Sprintf("; the document was deleted outside the gateway afterwards (%s, ledger entry %d): %s",
				d.At.UTC().Format(time.RFC3339), d.Seq, d.Reason)
			f.Entries = append(f.Entries, d.Seq)
		}
		out = append(out, f)
	}
	return out
}

// savedElsewhere says whether the work refusal t carried was committed by
// other requests, and what proves it. Later ones: for a refused Yjs
// update, commits after it whose state vectors hold every operation it
// carried (its clients' clock ranges, as its entry records them), which
// the server did not hold before it; for a refused legacy save or create,
// a later save by the same user whose text has the refused text's content
// hash. Or ones before it: a Yjs update every operation of which the
// document's text already held (a client sending again what it had
// delivered, the answer lost), or a save of the text the same user's
// save had just left the document with. Only what the ledger proves is
// said: a refusal recorded without its operations or content hash (an
// expired token on a legacy save, a create refused before its body was
// read) says nothing more, nor does one whose operations are held pending
// (not in any commit's state vector yet), some held before it and the
// rest committed after it, or whose text was saved only merged with
// other text.
func savedElsewhere(all []TimelineEntry, t TimelineEntry, since time.Time) (note string, seqs []int64, rev int64, ok bool) {
	var by []TimelineEntry
	textOnly := false // a refused save's or create's text, by its hash
	// all[:after] came before the refusal, all[after:] since.
	after := slices.IndexFunc(all, func(s TimelineEntry) bool { return s.Seq > t.Seq })
	if after < 0 {
		after = len(all)
	}
	switch {
	case len(t.Missing) > 0 && len(t.Clients) < MaxTraceClients:
		// A trace cut at MaxTraceClients does not name every operation.
		clients := make([]string, 0, len(t.Missing))
		for c := range t.Missing {
			clients = append(clients, c)
		}
		slices.Sort(clients)
		var ops []string
		var last TimelineEntry
		carriers := map[int64]bool{} // the commits that carried its clients
		held := 0                    // clients whose operations the text held before the refusal
		for _, c := range clients {
			from, to := t.Missing[c][0], t.Missing[c][1]
			id, _ := strconv.ParseUint(c, 10, 64)
			var before uint64 // what the server held of c before the refusal
			for _, s := range all[:after] {
				if isCommit(s.Kind) && !isDeletion(s.Entry) && s.StateVector != nil {
					before = s.StateVector[c]
				}
			}
			window := all[after:]
			if before >= to {
				// A resend of what the server had: the commits that
				// brought it are before the refusal.
				window, held = all[:after], held+1
			}
			cb, in, reached := intoText(window, c, to)
			if !reached {
				return "", nil, 0, false // not all of it committed since
			}
			for _, s := range cb {
				if slices.Contains(s.Clients, id) {
					carriers[s.Seq] = true
				}
			}
			by = append(by, cb...)
			if in.Seq > last.Seq {
				last = in
			}
			ops = append(ops, fmt.Sprintf("client %s clocks %d-%d", c, from, to-1))
		}
		if held > 0 && held < len(clients) {
			// Some of it held already, the rest committed since: the
			// note says one or the other of every operation, so none is
			// given.
			return "", nil, 0, false
		}
		slices.SortFunc(by, func(a, b TimelineEntry) int { return cmp.Compare(a.Seq, b.Seq) })
		by = slices.CompactFunc(by, func(a, b TimelineEntry) bool { return a.Seq == b.Seq })
		names := make([]string, 0, len(by))
		for _, s := range by {
			if carriers[s.Seq] {
				names = append(names, requestOf(s))
			}
			seqs = append(seqs, s.Seq)
		}
		slices.Sort(names)
		when := "committed later"
		if held > 0 {
			when = "already committed"
		}
		// Every client's clock is past what it carried as of last: its
		// operations are in that revision's text (a state vector counts
		// only integrated operations).
		note = fmt.Sprintf("every operation it carried (%s) was %s by request %s (%s), in the text as of revision %d",
			strings.Join(ops, ", "), when, strings.Join(slices.Compact(names), ", "), ledgerEntries(by), last.Revision)
		rev, by = last.Revision, []TimelineEntry{last}
	case t.ContentSHA256 != "" && t.User != "":
		textOnly = true
		same := func(s TimelineEntry) bool {
			return isCommit(s.Kind) && !isDeletion(s.Entry) && s.Tenant == t.Tenant && s.User == t.User && s.ContentSHA256 == t.ContentSHA256
		}
		// The text the document had when the save was refused: its last
		// commit's, unless it was deleted outside the gateway since.
		var cur TimelineEntry
		for _, s := range all[:after] {
			switch {
			case isDeletion(s.Entry):
				cur = TimelineEntry{}
			case isCommit(s.Kind):
				cur = s
			}
		}
		if same(cur) {
			note = fmt.Sprintf("the same text (content sha256 %s) was already committed by request %s of the same user (ledger entry %d), as revision %d",
				t.ContentSHA256, requestOf(cur), cur.Seq, cur.Revision)
			seqs, rev, by = []int64{cur.Seq}, cur.Revision, []TimelineEntry{cur}
			break
		}
		for _, s := range all[after:] {
			if same(s) {
				note = fmt.Sprintf("the same text (content sha256 %s) was committed later by request %s of the same user (ledger entry %d), as revision %d",
					t.ContentSHA256, requestOf(s), s.Seq, s.Revision)
				seqs, rev, by = []int64{s.Seq}, s.Revision, []TimelineEntry{s}
				break
			}
		}
		if note == "" {
			return "", nil, 0, false
		}
	default:
		return "", nil, 0, false
	}
	if textOnly {
		// Only its text's hash is on record: a renamed document's save,
		// refused, read as kept when its text was.
		note += "; the refusal records the text only (a refusal records no title), so this says nothing of a title it sent"
	}
	if d, ok := deletedAfter(all, by[0], since); ok {
		note += fmt.Sprintf("; the document was deleted outside the gateway afterwards (%s, ledger entry %d): %s",
			d.At.UTC().Format(time.RFC3339), d.Seq, d.Reason)
		seqs = append(seqs, d.Seq)
	}
	return note, seqs, rev, true
}

// intoText finds, among ts in ledger order, the commits that brought
// client c's operations below clock to into the text: those carrying c,
// up to the first whose state vector holds them (in, ok false: none
// does). That one may carry other clients: the commit that carried them
// may have been held pending, and the one that took them in (operations
// they built on arriving) carries those. After a deletion outside the
// gateway only a commit carrying c again counts: what came before it is
// not in the document at the ID since.
func intoText(ts []TimelineEntry, c string, to uint64) (by []TimelineEntry, in TimelineEntry, ok bool) {
	id, _ := strconv.ParseUint(c, 10, 64)
	carried := false
	for _, s := range ts {
		if isDeletion(s.Entry) {
			carried = false
			continue
		}
		if !isCommit(s.Kind) || s.StateVector == nil {
			continue
		}
		carries := slices.Contains(s.Clients, id)
		if carries {
			by, carried = append(by, s), true
		}
		if carried && s.StateVector[c] >= to {
			if !carries {
				by = append(by, s)
			}
			return by, s, true
		}
	}
	return nil, TimelineEntry{}, false
}

// deletedAfter is the first deletion outside the gateway after t (at or
// after since, if set).
func deletedAfter(all []TimelineEntry, t TimelineEntry, since time.Time) (TimelineEntry, bool) {
	for _, d := range all {
		if d.Seq > t.Seq && isDeletion(d.Entry) && (since.IsZero() || !d.At.Before(since)) {
			return d, true
		}
	}
	return TimelineEntry{}, false
}

// broughtBy are the entries that brought client c's operations [from,
// claimed) a subject announced at first: commits after the announcement
// carrying the client, up to the one that holds its claim. A history the
// server does not know is kept aside instead (kept, and how it came:
// since the announcement, or before it, when a client not reset after
// its refusal announced the same copy again).
func broughtBy(all []TimelineEntry, c string, first TimelineEntry, from, claimed uint64) (by []TimelineEntry, kept *TimelineEntry, came string) {
	var keptBefore *TimelineEntry
	id, _ := strconv.ParseUint(c, 10, 64)
	for i := range all {
		t := all[i]
		if t.Seq <= first.Seq {
			// Its operations are no more on the server than they were.
			if t.Kind == ledger.KindForeign && t.PreservedOps[c][1] >= claimed {
				keptBefore = &all[i]
			}
			continue
		}
		if t.Kind == ledger.KindForeign && t.PreservedOps[c][1] > from {
			return by, &all[i], "came since"
		}
		if isCommit(t.Kind) && slices.Contains(t.Clients, id) {
			by = append(by, t)
			if t.StateVector[c] >= claimed {
				break
			}
		}
	}
	if len(by) == 0 && keptBefore != nil {
		return by, keptBefore, "had come before"
	}
	return by, nil, ""
}

// requestOf names the request of an entry for a summary: its
// idempotency key or request ID.
func requestOf(t TimelineEntry) string {
	switch {
	case t.IdempotencyKey != "":
		return t.IdempotencyKey
	case t.RequestID != "":
		return t.RequestID
	}
	return "(none recorded)"
}

// ledgerEntries names the positions of ts: "ledger entry 5", "ledger
// entries 5, 7".
func ledgerEntries(ts []TimelineEntry) string {
	seqs := make([]int64, len(ts))
	for i, t := range ts {
		seqs[i] = t.Seq
	}
	return positions(seqs)
}

// positions names ledger positions: "ledger entry 5", "ledger entries 5, 7".
func positions(seqs []int64) string {
	s := make([]string, len(seqs))
	for i, n := range seqs {
		s[i] = strconv.FormatInt(n, 10)
	}
	if len(s) == 1 {
		return "ledger entry " + s[0]
	}
	return "ledger entries " + strings.Join(s, ", ")
}

// deletedCopyRefusal finds, among a client's entries ts, the latest
// refusal of its copy as foreign history that came after the document
// with this ID was deleted outside the gateway, and that deletion (ok
// false: none). Such a refusal is of a copy of the deleted document: its
// edit, or its whole copy sent again on reconnecting, whether the ID was
// free or held a new document.
func deletedCopyRefusal(all, ts []TimelineEntry) (ref, del TimelineEntry, ok bool) {
	for i := len(ts) - 1; i >= 0 && !ok; i-- {
		if ts[i].Kind == ledger.KindRejected && ts[i].Code == CodeForeignHistory {
			ref, ok = ts[i], true
		}
	}
	if !ok {
		return ref, del, false
	}
	ok = false
	for _, t := range all {
		if t.Seq < ref.Seq && isDeletion(t.Entry) {
			del, ok = t, true
		}
	}
	return ref, del, ok
}

// deletedCopySummary says what happened to a client's work refused as a
// copy of a deleted document: deleted when, refused where, and that the
// text is on the student's device, not in any document on the server
// (nor in a new document now at the ID).
func deletedCopySummary(st *docState, all []TimelineEntry, c string, claimed, have uint64, ref, del TimelineEntry) string {
	s := fmt.Sprintf("client %s's copy is of the document deleted outside the gateway on %s (ledger entry %d); "+
		"it was refused (%s, ledger entry %d) and nothing of it was merged", c, del.At.UTC().Format(time.RFC3339), del.Seq, ref.Code, ref.Seq)
	if st.exists {
		s += " into the new document now at this ID"
	}
	if have == 0 {
		s += fmt.Sprintf("; none of its operations up to clock %d is in a document on the server", claimed)
		if held := deletedHeld(all, c, del); held > 0 {
			// Its earlier work was committed to the deleted document,
			// whose saves the same answer reports as synced: "none on
			// the server" alone read as a contradiction.
			s += fmt.Sprintf(" (the deleted document's history keeps the first %d of them)", held)
		}
	} else {
		s += fmt.Sprintf("; the server holds %d of its operations up to clock %d", have, claimed)
	}
	return s + ": the text is on the student's device, in that client's local copy " +
		"(a local-first client keeps a refused copy, set aside as <store file>.foreign-<time> when it reloads)"
}

// heldByADeletedDocument: client c's operations up to claimed, announced
// at ann, were committed since to a document with this ID that was then
// deleted outside the gateway (the ID may hold a new document now).
func heldByADeletedDocument(all []TimelineEntry, c string, ann TimelineEntry, claimed uint64) bool {
	for _, d := range all {
		if d.Seq > ann.Seq && isDeletion(d.Entry) && deletedHeld(all, c, d) >= claimed {
			return true
		}
	}
	return false
}

// deletedHeld is how many of client c's operations the document deleted
// at del had committed: its last commit's state vector before del.
func deletedHeld(all []TimelineEntry, c string, del TimelineEntry) uint64 {
	var held uint64
	for _, t := range all {
		if t.Seq < del.Seq && isCommit(t.Kind) && t.StateVector != nil {
			held = t.StateVector[c]
		}
	}
	return held
}

func (e *Engine) findings(st *docState, q EvidenceQuery, all, sub []TimelineEntry) []Finding {
	out := []Finding{}
	out = append(out, unsyncedFindings(st, q, all, sub)...)
	// overwritten-preserved: a stale legacy save overwrote a revision
	// (kept in the history), or a conflicting save's text was kept aside
	// (since the time asked about, if any).
	for _, t := range all {
		if !q.Since.IsZero() && t.At.Before(q.Since) {
			continue
		}
		switch t.Kind {
		case ledger.KindRepaired, ledger.KindForeign:
			// A repair or a foreign history kept one side's text aside.
			if t.PreservedID != 0 && q.matches(t.Entry) {
				what := "a repair of diverged representations kept the conflicting side's text"
				if t.Kind == ledger.KindForeign {
					what = "a client's copy from a history the server does not know was not CRDT-merged (" + t.Outcome + "); its text"
				}
				out = append(out, Finding{
					Verdict: VerdictOverwrittenPreserved, Summary: what + " is preserved", Reason: t.Reason,
					Entries: []int64{t.Seq}, Hash: t.Hash, Revision: t.Revision,
					PreservedAt: fmt.Sprintf("/v1/documents/%s/preserved/%d", st.id, t.PreservedID),
				})
			}
			continue
		case ledger.KindPreserved:
		default:
			continue
		}
		if t.PreservedID != 0 && q.matches(t.Entry) {
			what := "the save's text conflicted" // entries from before the reason was recorded
			if t.Reason != "" {
				what = "the save was kept aside whole (" + t.Reason + ")"
			}
			out = append(out, Finding{
				Verdict: VerdictOverwrittenPreserved,
				Summary: fmt.Sprintf("%s: revision %d kept the document's text and title; the save is preserved", what, t.Revision), Reason: t.Reason,
				Entries: []int64{t.Seq}, Hash: t.Hash, Revision: t.Revision,
				PreservedAt: fmt.Sprintf("/v1/documents/%s/preserved/%d", st.id, t.PreservedID),
			})
		}
		if t.SupersededRevision != 0 {
			// Which revisions did it overwrite? Those after its base; the
			// newest first (it holds the most of the subject's text). An
			// update held pending counts at the revision its operations
			// entered the text, not the one it left.
			for i := len(all) - 1; i >= 0; i-- {
				s := all[i]
				if !isCommit(s.Kind) || s.Seq > t.Seq || !q.matches(s.Entry) {
					continue
				}
				rev, _ := textRevision(all, s)
				if rev <= t.BaseRevision || rev > t.SupersededRevision {
					continue
				}
				out = append(out, Finding{
					Verdict: VerdictOverwrittenPreserved,
					Summary: fmt.Sprintf("revision %d was overwritten by a save based on revision %d (now revision %d); its content is preserved", rev, t.BaseRevision, t.Revision),
					Entries: []int64{s.Seq, t.Seq}, Hash: t.Hash, Revision: rev,
					PreservedAt: fmt.Sprintf("/v1/documents/%s/revisions/%d", st.id, rev),
				})
			}
		}
	}
	// rejected.
	school := schoolOf(st, q)
	for _, t := range sub {
		if t.Kind == ledger.KindRejected {
			f := Finding{
				Verdict: VerdictRejected, Summary: "refused: " + t.Code, Reason: t.Reason,
				Entries: []int64{t.Seq}, Hash: t.Hash,
			}
			if otherSchool(t.Entry, school) {
				// Shown as who tried to reach the document; the work it
				// carried is nothing of this document's, whatever this
				// document's commits hold (a copy of one of its updates).
				f.Summary += "; a request of another school, refused without reaching this document: it says nothing of this document's saves"
				out = append(out, f)
				continue
			}
			// Refused is true of the request, but the work it carried may
			// have reached the server since (a retry under a new request
			// ID after a token refresh, a Yjs client resending on
			// reconnect), or before (a resend of work whose answer the
			// client missed): "refused" alone read as lost work.
			if note, seqs, rev, ok := savedElsewhere(all, t, q.Since); ok {
				f.Summary += "; " + note
				f.Entries = append(f.Entries, seqs...)
				slices.Sort(f.Entries) // work held already comes before its refusal
				f.Revision = rev
			}
			out = append(out, f)
		}
	}
	// synced, but not in the text yet: operations held pending. Before
	// the latest commit, so it heads the answer: a student whose edits
	// were saved yet do not show needs to hear why first.
	if f, ok := pendingFinding(st, q, sub); ok {
		out = append(out, f)
	}
	// synced: the latest committed entry of the subject.
	for i := len(sub) - 1; i >= 0; i-- {
		t := sub[i]
		if !isCommit(t.Kind) || isDeletion(t.Entry) {
			continue
		}
		f := Finding{
			Verdict: VerdictSynced, Entries: []int64{t.Seq}, Hash: t.Hash, Revision: t.Revision, StateVector: t.StateVector,
			Summary: fmt.Sprintf("committed as revision %d under stage %s epoch %d (content sha256 %s)", t.Revision, t.Stage, t.Epoch, t.ContentSHA256),
		}
		if t.Outcome == OutcomePending {
			if rev, ok := textRevision(all, t); ok {
				f.Revision = rev
				f.Summary = fmt.Sprintf("committed under stage %s epoch %d while the document was at revision %d, held pending; its operations entered the text as revision %d",
					t.Stage, t.Epoch, t.Revision, rev)
			}
		}
		for _, d := range all {
			if d.Seq > t.Seq && isDeletion(d.Entry) && (q.Since.IsZero() || !d.At.Before(q.Since)) {
				f.Summary += fmt.Sprintf("; the document was deleted outside the gateway afterwards (%s, ledger entry %d): %s",
					d.At.UTC().Format(time.RFC3339), d.Seq, d.Reason)
				f.Entries = append(f.Entries, d.Seq)
			}
		}
		out = append(out, f)
		break
	}
	out = append(out, announcedFindings(st, q, all, sub, out)...)
	if st.ydoc != nil && q.Client != 0 {
		// A client's operations are synced when we hold them, even if
		// they reached us through another client.
		if k := st.ydoc.StateVector()[q.Client]; k > 0 && !slices.ContainsFunc(out, func(f Finding) bool { return f.Verdict == VerdictSynced }) {
			out = append(out, Finding{Verdict: VerdictSynced, Summary: fmt.Sprintf("the server holds client %d's operations up to clock %d", q.Client, k),
				StateVector: map[string]uint64{strconv.FormatUint(q.Client, 10): k}, Revision: st.revision})
		}
	}
	return out
}

// preLedgerFinding answers for what was saved before the ledger began
// (the write-through store's row and history), which no ledger commit
// proves:
//   - the whole document when the ledger holds no save of it (untouched
//     since, or only backfilled), with since if its last save (the row's
//     updated_at) is not older;
//   - a revision below the first one a ledger commit made, if the
//     document is at it or its history (document_revisions) holds it;
//   - a user's saves in that history (saved_by, saved_at, since honoured)
//     from before the ledger's first entry, or the document's creation
//     if the user owns it and the history does not go back that far.
//
// A row that replaced a deleted document outside the gateway (replaced)
// is such a document too, whose history begins when it was created:
// the deleted document's commits and revisions are not its saves.
func (e *Engine) preLedgerFinding(ctx context.Context, st *docState, q EvidenceQuery, all []TimelineEntry, replaced *rowReplacement) (Finding, bool, error) {
	if !st.exists || q.Request != "" || q.Client != 0 {
		return Finding{}, false, nil
	}
	if replaced != nil {
		all = slices.DeleteFunc(slices.Clone(all), func(t TimelineEntry) bool { return !replaced.current(t) })
	}
	switch {
	case q.Revision != 0:
		return e.preLedgerRevision(ctx, st, q, all, replaced)
	case q.User != "":
		return e.preLedgerUser(ctx, st, q, all, replaced)
	}
	if slices.ContainsFunc(all, func(t TimelineEntry) bool { return isCommit(t.Kind) }) ||
		(!q.Since.IsZero() && st.updatedAt.Before(q.Since)) {
		return Finding{}, false, nil
	}
	f := Finding{Verdict: VerdictSynced, Revision: st.revision,
		Summary: fmt.Sprintf("the document exists at revision %d, saved before this ledger began (the write-through store's row, last saved %s); no save through the gateway since",
			st.revision, st.updatedAt.UTC().Format(time.RFC3339))}
	if replaced != nil {
		f.Summary = fmt.Sprintf("the document at this ID is a row created outside the gateway on %s (revision %d, last saved %s)",
			replaced.createdAt.UTC().Format(time.RFC3339), st.revision, st.updatedAt.UTC().Format(time.RFC3339))
		if replaced.tenant == q.Tenant {
			f.Summary += fmt.Sprintf(", which replaced one deleted outside the gateway on %s (ledger entries up to %d are that document's)",
				replaced.deleted.at.UTC().Format(time.RFC3339), replaced.lastOld)
		}
		f.Summary += "; no save through the gateway since"
	}
	for _, t := range all {
		if t.Kind == ledger.KindBackfill {
			f.Entries, f.Hash = []int64{t.Seq}, t.Hash
			f.Summary += fmt.Sprintf("; its Yjs representation was made from it at ledger entry %d (stage %s epoch %d)", t.Seq, t.Stage, t.Epoch)
		}
	}
	return f, true, nil
}

// preLedgerRevision: a revision saved before the ledger began (or, in a
// row that replaced a deleted document outside the gateway, outside the
// gateway since it was created). Not with since: asked about a revision,
// the time is its own.
func (e *Engine) preLedgerRevision(ctx context.Context, st *docState, q EvidenceQuery, all []TimelineEntry, replaced *rowReplacement) (Finding, bool, error) {
	if !q.Since.IsZero() || q.Revision > st.revision || slices.ContainsFunc(all, func(t TimelineEntry) bool { return isCommit(t.Kind) && t.Revision <= q.Revision }) {
		return Finding{}, false, nil // the ledger's entries answer
	}
	f := Finding{Verdict: VerdictSynced, Revision: q.Revision,
		Summary: fmt.Sprintf("revision %d was saved before this ledger began (the write-through store's)", q.Revision)}
	var from *time.Time
	if replaced != nil {
		from = &replaced.createdAt
		f.Summary = fmt.Sprintf("revision %d was saved outside the gateway, in the row created there on %s (the write-through store's)",
			q.Revision, replaced.createdAt.UTC().Format(time.RFC3339))
	}
	if q.Revision == st.revision {
		f.Summary += "; the document is still at it"
		return f, true, nil
	}
	var held bool
	// The deleted document's revisions are not this one's history.
	if err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM document_revisions WHERE doc_id = $1 AND revision = $2
		AND ($3::timestamptz IS NULL OR saved_at >= $3))`, st.id, q.Revision, from).Scan(&held); err != nil {
		return Finding{}, false, fmt.Errorf("revision %d of %s: %w", q.Revision, st.id, err)
	}
	if !held {
		return Finding{}, false, nil
	}
	f.Summary += fmt.Sprintf("; its history holds it (%s/%s/revisions/%d)", contract.PathDocuments, st.id, q.Revision)
	return f, true, nil
}

// preLedgerUser: the user's saves the write-through store's history
// records from before the ledger's first entry of the document (every
// revision a ledger-era save made is saved at its group's time, which is
// its ledger entry's, so none of them is older), since q.Since. In a row
// that replaced a deleted document outside the gateway, only revisions
// saved since it was created: the others are the deleted document's
// (another school's, perhaps).
func (e *Engine) preLedgerUser(ctx context.Context, st *docState, q EvidenceQuery, all []TimelineEntry, replaced *rowReplacement) (Finding, bool, error) {
	var began *time.Time
	for _, t := range all {
		if began == nil || t.At.Before(*began) {
			at := t.At
			began = &at
		}
	}
	var since, from *time.Time
	if !q.Since.IsZero() {
		since = &q.Since
	}
	if replaced != nil {
		from = &replaced.createdAt
	}
	// Every revision a save through the syncer made is saved at its
	// group's time, which is its ledger entry's, and that entry names it:
	// those are the ledger's to answer. The others are the write-through
	// store's own: before the ledger began, or written behind the gateway
	// since (the legacy application, after a rollback).
	// Revision 1, whoever saved it, too: the owner's creation is theirs
	// only when the history does not go back that far.
	rows, err := e.pool.Query(ctx, `SELECT revision, saved_at, saved_by = $2 FROM document_revisions
		WHERE doc_id = $1 AND ($4::timestamptz IS NULL OR saved_at >= $4)
		  AND (revision = 1 OR (saved_by = $2 AND ($3::timestamptz IS NULL OR saved_at >= $3)))
		ORDER BY revision`, st.id, q.User, since, from)
	if err != nil {
		return Finding{}, false, fmt.Errorf("%s's revisions of %s: %w", q.User, st.id, err)
	}
	historyHasFirst := false
	revs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (savedRev, error) {
		var s savedRev
		var theirs bool
		err := r.Scan(&s.rev, &s.at, &theirs)
		if s.rev == 1 {
			historyHasFirst = true
			if !theirs || (since != nil && s.at.Before(*since)) {
				s.rev = 0 // not one of theirs since the time asked
			}
		}
		return s, err
	})
	if err != nil {
		return Finding{}, false, fmt.Errorf("%s's revisions of %s: %w", q.User, st.id, err)
	}
	revs = slices.DeleteFunc(revs, func(s savedRev) bool { return s.rev == 0 })
	made := make(map[savedRev]bool, len(all))
	for _, t := range all {
		if t.Revision != 0 {
			made[savedRev{t.Revision, t.At.UTC()}] = true
		}
	}
	revs = slices.DeleteFunc(revs, func(s savedRev) bool { return made[savedRev{s.rev, s.at.UTC()}] })
	behind := slices.ContainsFunc(revs, func(s savedRev) bool { return began != nil && !s.at.Before(*began) })
	created := st.owner == q.User && !historyHasFirst && (began == nil || st.createdAt.Before(*began)) && (since == nil || !st.createdAt.Before(*since))
	if len(revs) == 0 && !created {
		return Finding{}, false, nil
	}
	var parts []string
	if created {
		parts = append(parts, fmt.Sprintf("created the document on %s", st.createdAt.UTC().Format(time.RFC3339)))
	}
	f := Finding{Verdict: VerdictSynced, Revision: 1}
	if n := len(revs); n > 0 {
		nums := make([]string, n)
		for i, s := range revs {
			nums[i] = strconv.FormatInt(s.rev, 10)
		}
		last := revs[n-1]
		f.Revision = last.rev
		what := "revision " + nums[0]
		if n > 1 {
			what = fmt.Sprintf("%d revisions (%s)", n, strings.Join(nums, ", "))
		}
		parts = append(parts, fmt.Sprintf("saved %s, the last on %s; the history holds each (%s/%s/revisions/%d)",
			what, last.at.UTC().Format(time.RFC3339), contract.PathDocuments, st.id, last.rev))
	}
	f.Summary = fmt.Sprintf("before this ledger began, %s %s in the write-through store", q.User, strings.Join(parts, " and "))
	if behind {
		f.Summary = fmt.Sprintf("in the write-through store, not through the gateway (some after this ledger began), %s %s", q.User, strings.Join(parts, " and "))
	}
	return f, true, nil
}

type savedRev struct {
	rev int64
	at  time.Time
}

// pendingFinding reports the subject's operations the server holds in
// pending structs: committed to the update log (durable, and acknowledged
// as such), but not integrable until operations they build on arrive,
// which may never happen if the client that made those lost them. The
// subject's clients are the one asked about, those of a user's entries,
// or for a whole document every client with pending operations; with a
// since, only clients of entries since then. A request or a revision is
// answered by its own entries: what its client holds pending now may be
// another update's.
func pendingFinding(st *docState, q EvidenceQuery, sub []TimelineEntry) (Finding, bool) {
	if st.ydoc == nil || q.Request != "" || q.Revision != 0 {
		return Finding{}, false
	}
	held := st.ydoc.PendingRanges()
	if len(held) == 0 {
		return Finding{}, false
	}
	var clients []uint64
	switch {
	case q.Client != 0:
		if !q.Since.IsZero() && len(sub) == 0 {
			return Finding{}, false
		}
		clients = []uint64{q.Client}
	case q.User == "" && q.Since.IsZero():
		for c := range held {
			clients = append(clients, c)
		}
	default:
		for _, t := range sub {
			clients = append(clients, t.Clients...)
		}
	}
	slices.Sort(clients)
	clients = slices.Compact(clients)
	f := Finding{Verdict: VerdictSynced, Revision: st.revision, Pending: map[string][][2]uint64{}, WaitingFor: map[string]uint64{}}
	var ops []string
	for _, c := range clients {
		for _, r := range held[c] {
			key := strconv.FormatUint(c, 10)
			f.Pending[key] = append(f.Pending[key], [2]uint64{r.Clock, r.End()})
			ops = append(ops, fmt.Sprintf("client %d's at clocks %d-%d", c, r.Clock, r.End()-1))
		}
	}
	if len(ops) == 0 {
		return Finding{}, false
	}
	var waits []string
	for c, k := range st.ydoc.PendingMissing() {
		f.WaitingFor[strconv.FormatUint(c, 10)] = k
		waits = append(waits, fmt.Sprintf("client %d's operation at clock %d", c, k))
	}
	slices.Sort(waits)
	f.Summary = fmt.Sprintf("the server holds operations durably in its update log (%s), but they are not in the text yet: "+
		"they build on operations it never received (%s); they appear when the client holding those syncs",
		strings.Join(ops, ", "), strings.Join(waits, ", "))
	return f, true
}

// preservedUpTo is the highest clock of client c's operations a foreign
// history resolution kept aside (0: none).
func preservedUpTo(all []TimelineEntry, c string) uint64 {
	var up uint64
	for _, t := range all {
		if t.Kind == ledger.KindForeign {
			up = max(up, t.PreservedOps[c][1])
		}
	}
	return up
}

// verdict picks the headline: what a student most needs to know first.
// For a whole document the latest commit outranks an old overwrite (which
// stays among the findings); for one subject the overwrite is the answer.
func verdict(fs []Finding, subject bool) (string, Finding) {
	order := []string{VerdictSavedLocallyNotSynced, VerdictSynced, VerdictOverwrittenPreserved, VerdictRejected}
	if subject {
		order = []string{VerdictSavedLocallyNotSynced, VerdictOverwrittenPreserved, VerdictSynced, VerdictRejected}
	}
	for _, v := range order {
		for _, f := range fs {
			if f.Verdict == v {
				return v, f
			}
		}
	}
	return VerdictNeverPersisted, Finding{Verdict: VerdictNeverPersisted,
		Summary: "no trace at any layer: no ledger entry, revision, Yjs update or client state vector names it"}
}
