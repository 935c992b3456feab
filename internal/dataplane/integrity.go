package dataplane

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Queries of the shard integrity work (backfill and verification) that
// join the document tables with cohort membership. The syncer of a shard
// lists its cohorts' documents here; reading and writing the documents
// themselves is internal/store's.

// CohortCounts is, for one cohort, how many of a shard's documents it has
// and how many of them have a Yjs representation.
type CohortCounts struct {
	Documents int64
	WithYjs   int64
}

// CohortIntegrity counts, per cohort of rollout, the documents of the
// cohort's tenants on shard and those of them that have a Yjs
// representation (a snapshot or a logged update), in one statement (a
// scan of the shard: 0.4 s for 100k documents; callers cache it).
func (p *Postgres) CohortIntegrity(ctx context.Context, rollout string, shard int) (map[string]CohortCounts, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT m.cohort, count(*),
		       count(*) FILTER (WHERE s.doc_id IS NOT NULL OR EXISTS (SELECT 1 FROM yjs_updates u WHERE u.doc_id = d.doc_id))
		FROM documents d JOIN cohort_members m ON m.tenant = d.tenant AND m.rollout = $1
		LEFT JOIN yjs_snapshots s ON s.doc_id = d.doc_id
		WHERE d.shard = $2
		GROUP BY m.cohort`, rollout, shard)
	if err != nil {
		return nil, fmt.Errorf("cohort integrity of shard %d: %w", shard, err)
	}
	defer rows.Close()
	out := map[string]CohortCounts{}
	for rows.Next() {
		var c string
		var n CohortCounts
		if err := rows.Scan(&c, &n.Documents, &n.WithYjs); err != nil {
			return nil, err
		}
		out[c] = n
	}
	return out, rows.Err()
}

// BackfillCandidates lists, in doc_id order after after, up to limit
// documents of a cohort's tenants on shard that have no Yjs
// representation yet.
func (p *Postgres) BackfillCandidates(ctx context.Context, rollout, cohort string, shard int, after string, limit int) ([]string, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT d.doc_id
		FROM documents d JOIN cohort_members m ON m.tenant = d.tenant
		WHERE d.shard = $3 AND m.rollout = $1 AND m.cohort = $2 AND d.doc_id > $4
		  AND NOT EXISTS (SELECT 1 FROM yjs_snapshots s WHERE s.doc_id = d.doc_id)
		  AND NOT EXISTS (SELECT 1 FROM yjs_updates u WHERE u.doc_id = d.doc_id)
		ORDER BY d.doc_id
		LIMIT $5`, rollout, cohort, shard, after, limit)
	if err != nil {
		return nil, fmt.Errorf("backfill candidates of %s/%s on shard %d: %w", rollout, cohort, shard, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// CohortDoc is one document of a cohort on a shard, with its legacy row's
// change sequence (0 for rows not changed since change_seq was added).
type CohortDoc struct {
	Doc       string
	Cohort    string
	ChangeSeq int64
	// OutsideID is the outside_changes row that named it (OutsideChanges).
	OutsideID int64
}

// ShardCohortDocs lists every document on shard of the given cohorts of
// rollout, in doc_id order.
func (p *Postgres) ShardCohortDocs(ctx context.Context, rollout string, shard int, cohorts []string) ([]CohortDoc, error) {
	if len(cohorts) == 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `
		SELECT d.doc_id, m.cohort, coalesce(d.change_seq, 0)
		FROM documents d JOIN cohort_members m ON m.tenant = d.tenant
		WHERE d.shard = $2 AND m.rollout = $1 AND m.cohort = ANY($3::text[])
		ORDER BY d.doc_id`, rollout, shard, cohorts)
	if err != nil {
		return nil, fmt.Errorf("documents of shard %d: %w", shard, err)
	}
	return pgx.CollectRows(rows, scanCohortDoc)
}

func scanCohortDoc(r pgx.CollectableRow) (CohortDoc, error) {
	var d CohortDoc
	err := r.Scan(&d.Doc, &d.Cohort, &d.ChangeSeq)
	return d, err
}

// OutsideChanges lists, after the outside_changes row after, the
// documents on shard whose legacy row was written outside the syncer, with
// their cohort among the given ones ("" when the row is now in none of
// them: given to a school outside them), and the last row id read (after,
// if none).
func (p *Postgres) OutsideChanges(ctx context.Context, rollout string, shard int, cohorts []string, after int64) ([]CohortDoc, int64, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT o.id, o.doc_id, coalesce(m.cohort, ''), o.change_seq
		FROM outside_changes o
		LEFT JOIN documents d ON d.doc_id = o.doc_id
		LEFT JOIN cohort_members m ON m.tenant = coalesce(d.tenant, o.tenant) AND m.rollout = $1 AND m.cohort = ANY($3::text[])
		WHERE o.shard = $2 AND o.id > $4
		ORDER BY o.id`, rollout, shard, cohorts, after)
	if err != nil {
		return nil, after, fmt.Errorf("outside changes of shard %d: %w", shard, err)
	}
	defer rows.Close()
	var out []CohortDoc
	last := after
	for rows.Next() {
		var d CohortDoc
		if err := rows.Scan(&d.OutsideID, &d.Doc, &d.Cohort, &d.ChangeSeq); err != nil {
			return nil, after, err
		}
		last = max(last, d.OutsideID)
		out = append(out, d)
	}
	return out, last, rows.Err()
}

// OpenDivergencesOfGoneDocuments lists (up to limit) the documents of
// shard with an open divergence whose legacy row no longer exists: deleted
// outside the gateway where no pass saw the deletion happen (while the
// syncer was down, or before a full pass moved past it). Left open, each
// counts against its cohort's open-divergence gate at every attempt.
func (p *Postgres) OpenDivergencesOfGoneDocuments(ctx context.Context, shard, limit int) ([]string, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT DISTINCT v.doc_id FROM divergences v
		WHERE v.shard = $1 AND v.resolved_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.doc_id = v.doc_id)
		ORDER BY v.doc_id LIMIT $2`, shard, limit)
	if err != nil {
		return nil, fmt.Errorf("open divergences of shard %d: %w", shard, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// OutsideChangesHead is the id of shard's latest outside_changes row (0:
// none).
func (p *Postgres) OutsideChangesHead(ctx context.Context, shard int) (int64, error) {
	var id int64
	err := p.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM outside_changes WHERE shard = $1`, shard).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("outside changes of shard %d: %w", shard, err)
	}
	return id, nil
}

// ShardCohortDocsOf returns which of docs are on shard in one of the given
// cohorts, with their cohort.
func (p *Postgres) ShardCohortDocsOf(ctx context.Context, rollout string, shard int, cohorts, docs []string) ([]CohortDoc, error) {
	if len(cohorts) == 0 || len(docs) == 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `
		SELECT d.doc_id, m.cohort, coalesce(d.change_seq, 0)
		FROM documents d JOIN cohort_members m ON m.tenant = d.tenant
		WHERE d.doc_id = ANY($4::text[]) AND d.shard = $2 AND m.rollout = $1 AND m.cohort = ANY($3::text[])`, rollout, shard, cohorts, docs)
	if err != nil {
		return nil, fmt.Errorf("documents of shard %d: %w", shard, err)
	}
	return pgx.CollectRows(rows, scanCohortDoc)
}

// DivergenceCounts is, for one cohort on a shard, what the divergence
// records say (internal/store repair.go writes them).
type DivergenceCounts struct {
	// Found counts the documents found diverged under the cohort's
	// current epoch, resolved or not; Samples names a few of them.
	Found   int64
	Samples []string
	// Open counts divergences not resolved, whenever they were found.
	Open int64
	// Gaps counts clients' operations announced and still not received
	// after gapAfter (evidence gaps).
	Gaps int64
}

// CohortDivergences counts, per cohort of rollout, the divergences and
// evidence gaps of shard's documents, in one statement. A gap of a
// document whose row is gone (deleted outside the gateway, the deletion
// standing) is not counted: no editor can sync into it any more, so it
// would never close and would hold the cohort at its gate for good. The
// gap stays on record, and evidence still shows it.
func (p *Postgres) CohortDivergences(ctx context.Context, rollout string, shard int, gapAfter time.Duration, samples int) (map[string]DivergenceCounts, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT c.cohort,
		       (SELECT count(DISTINCT v.doc_id) FROM divergences v
		        WHERE v.shard = $2 AND v.cohort = c.cohort AND v.epoch = c.epoch AND v.kind = 'out-of-band-write'),
		       (SELECT array_agg(doc_id) FROM (SELECT DISTINCT v.doc_id FROM divergences v
		        WHERE v.shard = $2 AND v.cohort = c.cohort AND v.epoch = c.epoch AND v.kind = 'out-of-band-write'
		        ORDER BY v.doc_id LIMIT $4) s),
		       (SELECT count(*) FROM divergences v WHERE v.shard = $2 AND v.cohort = c.cohort AND v.resolved_at IS NULL),
		       (SELECT count(*) FROM client_gaps g JOIN cohort_members m ON m.tenant = g.tenant AND m.rollout = $1
		        WHERE g.shard = $2 AND m.cohort = c.cohort AND g.closed_at IS NULL
		          AND g.first_seen < now() - make_interval(secs => $3)
		          AND EXISTS (SELECT 1 FROM documents d WHERE d.doc_id = g.doc_id))
		FROM rollout_cohorts c WHERE c.rollout = $1`, rollout, shard, gapAfter.Seconds(), samples)
	if err != nil {
		return nil, fmt.Errorf("divergences of shard %d: %w", shard, err)
	}
	defer rows.Close()
	out := map[string]DivergenceCounts{}
	for rows.Next() {
		var c string
		var n DivergenceCounts
		if err := rows.Scan(&c, &n.Found, &n.Samples, &n.Open, &n.Gaps); err != nil {
			return nil, err
		}
		out[c] = n
	}
	return out, rows.Err()
}
