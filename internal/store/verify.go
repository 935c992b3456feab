package store

import (
	"context"
	"fmt"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// Verification compares a document's legacy row with the text its Yjs
// representation materialises to. Both are read by one statement, so
// they come from one committed state (every save writes both in one
// transaction); the Yjs text is materialised here from the stored
// snapshot state and the log after it, not taken from the snapshot's
// text column.

// Verdicts of a verified document.
const (
	// VerifyMatch: the legacy content equals the Yjs text.
	VerifyMatch = "match"
	// VerifyMismatch: they differ (or the Yjs state cannot be decoded).
	VerifyMismatch = "mismatch"
	// VerifyNoYjs: the document has no Yjs representation yet.
	VerifyNoYjs = "no-yjs"
)

// VerifyResult is one document's verification.
type VerifyResult struct {
	Doc     string
	Verdict string
	// Detail says why a document mismatched.
	Detail string
}

// VerifyDocs verifies documents of this shard (missing ones are left
// out of the result).
func (e *Engine) VerifyDocs(ctx context.Context, docs []string) ([]VerifyResult, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	rows, err := e.pool.Query(ctx, `
		SELECT d.doc_id, d.content, s.generation, s.state,
		       u.gens, u.updates
		FROM documents d
		LEFT JOIN yjs_snapshots s ON s.doc_id = d.doc_id
		LEFT JOIN LATERAL (SELECT array_agg(generation ORDER BY seq) AS gens, array_agg(update ORDER BY seq) AS updates
		                   FROM yjs_updates y WHERE y.doc_id = d.doc_id AND y.seq > coalesce(s.upto_seq, 0)) u ON true
		WHERE d.doc_id = ANY($1::text[]) AND d.shard = $2`, docs, e.cfg.Shard)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	out := make([]VerifyResult, 0, len(docs))
	for rows.Next() {
		var id, content string
		var gen *int64
		var state []byte
		var gens []int64
		var updates [][]byte
		if err := rows.Scan(&id, &content, &gen, &state, &gens, &updates); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		r := verifyOne(id, content, gen, state, gens, updates)
		if r.Verdict == VerifyMismatch {
			// The database holds something the cached document does not
			// (a write outside the gateway): drop the cached copy so reads
			// and saves start again from what is stored.
			e.cache.evict(id)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func verifyOne(id, content string, gen *int64, state []byte, gens []int64, updates [][]byte) VerifyResult {
	r := VerifyResult{Doc: id}
	if state == nil && len(updates) == 0 {
		r.Verdict = VerifyNoYjs
		return r
	}
	var d *yjs.Doc
	var g int64
	if state != nil {
		d = yjs.NewDoc(yjs.Options{ClientID: serverClient(id)})
		g = *gen
		if err := d.ApplyUpdate(state); err != nil {
			r.Verdict, r.Detail = VerifyMismatch, "snapshot cannot be decoded: "+err.Error()
			return r
		}
	}
	for i, u := range updates {
		if d == nil || (i < len(gens) && gens[i] != g) {
			d = yjs.NewDoc(yjs.Options{ClientID: serverClient(id)}) // a new generation starts over
			if i < len(gens) {
				g = gens[i]
			}
		}
		if err := d.ApplyUpdate(u); err != nil {
			r.Verdict, r.Detail = VerifyMismatch, "log cannot be decoded: "+err.Error()
			return r
		}
	}
	text := storedText(d)
	if text != content {
		r.Verdict = VerifyMismatch
		r.Detail = fmt.Sprintf("legacy content has %d bytes, the Yjs text %d", len(content), len(text))
		return r
	}
	r.Verdict = VerifyMatch
	return r
}
