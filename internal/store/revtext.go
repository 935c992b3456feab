package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Revisions made by Yjs updates are kept by reference (migration 00006):
// no text, the position in the document's Yjs log whose state they
// materialise (yjs_seq) and the text's sha256. Their text is rebuilt here
// by replaying the log, which is append-only and never pruned (snapshots
// only shortcut it).

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

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
			return nil, fmt.Errorf("snapshot of %s: %w", doc, err)
		}
		gen, from = snapGen, upto
		if upto == seqs[0] {
			out[upto] = d.GetText(contract.YjsTextName).String()
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
			return nil, fmt.Errorf("log of %s at %d: %w", doc, seq, err)
		}
		for next < len(seqs) && seqs[next] == seq {
			out[seq] = d.GetText(contract.YjsTextName).String()
			next++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, s := range seqs {
		if _, ok := out[s]; !ok {
			return nil, fmt.Errorf("log of %s has no position %d", doc, s)
		}
	}
	return out, nil
}

// revisionText returns the text of a revision row: its content, or the
// log's state at its yjs_seq.
func revisionText(ctx context.Context, q querier, doc string, content *string, yjsSeq *int64) (string, error) {
	if content != nil {
		return *content, nil
	}
	if yjsSeq == nil {
		return "", fmt.Errorf("revision of %s has neither text nor a log position", doc)
	}
	m, err := textsAt(ctx, q, doc, []int64{*yjsSeq})
	if err != nil {
		return "", err
	}
	return m[*yjsSeq], nil
}
