package loadgen

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/placement"
)

// LegacySeed describes documents that exist before a rollout: rows the
// legacy write-through store wrote, with no Yjs representation and no
// ledger entry (the system did not exist yet).
type LegacySeed struct {
	// Tenants own the documents, round-robin.
	Tenants []string
	// Docs is the total number of documents.
	Docs int
	// Shards must equal the rollout's spec.gateway.shards: a document's
	// shard is placement.Shard(id, Shards).
	Shards int
}

// SeededDocumentID is the ID of the i-th document SeedLegacy writes.
func SeededDocumentID(i int) string { return fmt.Sprintf("seed-%04d", i) }

// SeedLegacy writes s's documents into the legacy store's tables of a
// migrated database (internal/migrations), as the legacy system would
// have: each document at revision 1 with its history row, and each tenant
// registered so bucket cohorts find it when they freeze. Documents that
// exist already are left alone, so it may run on every start. It returns
// how many documents it inserted.
func SeedLegacy(ctx context.Context, pool *pgxpool.Pool, s LegacySeed) (int, error) {
	if len(s.Tenants) == 0 || s.Docs <= 0 {
		return 0, nil
	}
	if s.Shards < 1 {
		return 0, fmt.Errorf("seed: shards must be positive, got %d", s.Shards)
	}
	at := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Microsecond)
	inserted := 0
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, t := range s.Tenants {
			if _, err := tx.Exec(ctx, `INSERT INTO tenants (tenant, bucket) VALUES ($1, $2) ON CONFLICT (tenant) DO NOTHING`,
				t, placement.TenantBucket(t)); err != nil {
				return err
			}
		}
		for i := range s.Docs {
			id, tenant := SeededDocumentID(i), s.Tenants[i%len(s.Tenants)]
			owner := fmt.Sprintf("student-%d", i%7)
			title := fmt.Sprintf("Essay %d", i)
			content := fmt.Sprintf("Essay %d of %s, written before local-first saving. ", i, tenant)
			tag, err := tx.Exec(ctx, `
				INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7) ON CONFLICT (doc_id) DO NOTHING`,
				id, tenant, owner, title, content, placement.Shard(id, s.Shards), at)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
				VALUES ($1, 1, $2, $3, $4, $5, $6, 0, 0)`, id, title, content, owner, at, dataplane.StageLegacy); err != nil {
				return err
			}
			inserted++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("seed legacy documents: %w", err)
	}
	return inserted, nil
}
