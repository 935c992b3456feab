package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// A revision's text is kept in one of three ways, each with its sha256:
// whole (content); by reference (migration 00006), for revisions made by
// Yjs updates: the position in the document's Yjs log whose state they
// materialise (yjs_seq), rebuilt by replaying the log, which is
// append-only and never pruned (snapshots only shortcut it); or as a
// splice of the revision before (migration 00009, below).

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// errDamagedHistory marks a revision's text that the stored history cannot
// rebuild (a splice or a Yjs update that does not apply, a sha256 that
// does not match): not a failure to read it, which says nothing of the
// history.
var errDamagedHistory = errors.New("damaged history")

// textsAt returns the document's text after each of the given log
// positions, in one replay.
func textsAt(ctx context.Context, q querier, doc string, seqs []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(seqs))
	if len(seqs) == 0 {
		return out, nil
	}
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	var d *yjs.Doc
	gen, from := int64(-1), int64(0)
	// Start from the snapshot when it is not past the first position asked.
	var state []byte
	var snapGen, upto int64
	err := q.QueryRow(ctx, `SELECT generation, upto_seq, state FROM yjs_snapshots WHERE doc_id = $1`, doc).Scan(&snapGen, &upto, &state)
	switch {
	case err == nil && upto <= seqs[0]:
		d = yjs.NewDoc(yjs.Options{ClientID: serverClient(doc)})
		if err := d.ApplyUpdate(state); err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w: %w", doc, errDamagedHistory, err)
		}
		gen, from = snapGen, upto
		if upto == seqs[0] {
			out[upto] = storedText(d)
		}
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("snapshot of %s: %w", doc, err)
	}
	rows, err := q.Query(ctx, `SELECT seq, generation, update FROM yjs_updates WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`,
		doc, from, seqs[len(seqs)-1])
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", doc, err)
	}
	defer rows.Close()
	next := 0
	for next < len(seqs) && seqs[next] <= from {
		next++
	}
	for rows.Next() {
		var seq, g int64
		var u []byte
		if err := rows.Scan(&seq, &g, &u); err != nil {
			return nil, err
		}
		if d == nil || g != gen {
			d, gen = yjs.NewDoc(yjs.Options{ClientID: serverClient(doc)}), g // a generation starts over
		}
		if err := d.ApplyUpdate(u); err != nil {
			return nil, fmt.Errorf("log of %s at %d: %w: %w", doc, seq, errDamagedHistory, err)
		}
		for next < len(seqs) && seqs[next] == seq {
			out[seq] = storedText(d)
			next++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, s := range seqs {
		if _, ok := out[s]; !ok {
			return nil, fmt.Errorf("log of %s has no position %d: %w", doc, s, errDamagedHistory)
		}
	}
	return out, nil
}

// Revisions of legacy saves whose previous revision this process wrote are
// kept as splices of it (migration 00009): the bytes kept from the start
// and from the end of the previous text, and what goes between. A chain
// is at most spliceChain revisions long, its first kept whole (or by
// reference); texts under spliceMinBytes are always kept whole.
const (
	spliceChain    = 32
	spliceMinBytes = 1024
)

// spliceBounds returns how many bytes at the start (head) and at the end
// (tail) of next are the same as in prev, not overlapping in either, and
// both on UTF-8 character boundaries, so next ==
// prev[:head] + next[head:len(next)-tail] + prev[len(prev)-tail:].
func spliceBounds(prev, next string) (head, tail int) {
	n := min(len(prev), len(next))
	for head < n && prev[head] == next[head] {
		head++
	}
	for head > 0 && head < len(next) && !utf8.RuneStart(next[head]) {
		head--
	}
	n -= head
	for tail < n && prev[len(prev)-1-tail] == next[len(next)-1-tail] {
		tail++
	}
	for tail > 0 && !utf8.RuneStart(next[len(next)-tail]) {
		tail--
	}
	return head, tail
}

// revisionTexts returns the texts of the document's revisions from..to
// (those that exist), reading from the last revision kept whole at or
// before from: a splice applies to the text of the revision just before
// it, and the text it gives must have the sha256 recorded with it.
func revisionTexts(ctx context.Context, q querier, doc string, from, to int64) (map[int64]string, error) {
	type row struct {
		rev        int64
		content    *string
		yseq       *int64
		head, tail *int32
		splice     *string
		sha        *string
	}
	rows, err := q.Query(ctx, `
		SELECT revision, content, yjs_seq, splice_head, splice_tail, splice_text, content_sha256
		FROM document_revisions
		WHERE doc_id = $1 AND revision <= $3 AND revision >= coalesce(
			(SELECT max(revision) FROM document_revisions WHERE doc_id = $1 AND revision <= $2 AND splice_text IS NULL), 1)
		ORDER BY revision`, doc, from, to)
	if err != nil {
		return nil, fmt.Errorf("revisions of %s: %w", doc, err)
	}
	var rs []row
	var seqs []int64
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.rev, &r.content, &r.yseq, &r.head, &r.tail, &r.splice, &r.sha); err != nil {
			rows.Close()
			return nil, err
		}
		if r.splice == nil && r.content == nil && r.yseq != nil {
			seqs = append(seqs, *r.yseq)
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revisions of %s: %w", doc, err)
	}
	logTexts, err := textsAt(ctx, q, doc, seqs)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]string, len(rs))
	var prev string
	prevRev := int64(-1)
	for _, r := range rs {
		var text string
		switch {
		case r.splice != nil:
			if prevRev != r.rev-1 || r.head == nil || r.tail == nil || r.sha == nil ||
				int(*r.head) < 0 || int(*r.tail) < 0 || int(*r.head)+int(*r.tail) > len(prev) {
				return nil, fmt.Errorf("revision %d of %s is a splice of revision %d, which cannot be read: %w", r.rev, doc, r.rev-1, errDamagedHistory)
			}
			text = prev[:*r.head] + *r.splice + prev[len(prev)-int(*r.tail):]
			if r.rev >= from && ledger.SHA256Hex([]byte(text)) != *r.sha {
				return nil, fmt.Errorf("revision %d of %s does not rebuild to its recorded sha256: %w", r.rev, doc, errDamagedHistory)
			}
		case r.content != nil:
			text = *r.content
		case r.yseq != nil:
			text = logTexts[*r.yseq]
		default:
			return nil, fmt.Errorf("revision %d of %s has neither text nor a log position: %w", r.rev, doc, errDamagedHistory)
		}
		prev, prevRev = text, r.rev
		if r.rev >= from {
			out[r.rev] = text
		}
	}
	return out, nil
}
