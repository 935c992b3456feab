package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/placement"
)

// SaveStage is the (stage, epoch) a save commits under: its tenant's
// cohort's row, read FOR SHARE. A tenant in no cohort is Legacy at epoch 0
// with an empty Cohort.
type SaveStage struct {
	Rollout string `json:"rollout,omitempty"`
	Cohort  string `json:"cohort,omitempty"`
	Stage   string `json:"stage"`
	Epoch   int64  `json:"epoch"`
}

// LockSaveStages is the first thing a save transaction does. For each
// tenant it registers the tenant if unseen (a tenant first seen after a
// bucket cohort was frozen joins that cohort by its stored selector), locks
// the tenants row FOR SHARE (serialising with FreezeCohort, which locks it
// FOR UPDATE) and its cohort's row FOR SHARE (so a SetStage waits for the
// transaction), and returns the stage each tenant's saves commit under.
//
// rollout is the rollout the caller serves; its row is locked FOR SHARE
// first, the lock order FreezeCohort and SetStage use (rollouts, tenants,
// cohorts), so a tenant registered here cannot miss a concurrent freeze.
// Locks are held until tx ends.
func LockSaveStages(ctx context.Context, tx pgx.Tx, rollout string, tenants []string) (map[string]SaveStage, error) {
	ts := slices.Clone(tenants)
	slices.Sort(ts)
	ts = slices.Compact(ts)
	out := make(map[string]SaveStage, len(ts))
	if len(ts) == 0 {
		return out, nil
	}
	if rollout != "" {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM rollouts WHERE rollout = $1 FOR SHARE`, rollout).Scan(&one)
		if err != nil && err != pgx.ErrNoRows {
			return nil, fmt.Errorf("lock rollout %s: %w", rollout, err)
		}
	}
	buckets := make([]int16, len(ts))
	for i, t := range ts {
		buckets[i] = int16(placement.TenantBucket(t))
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO tenants (tenant, bucket)
		SELECT * FROM unnest($1::text[], $2::smallint[]) ORDER BY 1
		ON CONFLICT (tenant) DO NOTHING
		RETURNING tenant, bucket`, ts, buckets)
	if err != nil {
		return nil, fmt.Errorf("register tenants: %w", err)
	}
	fresh := map[string]int{}
	for rows.Next() {
		var t string
		var b int16
		if err := rows.Scan(&t, &b); err != nil {
			rows.Close()
			return nil, err
		}
		fresh[t] = int(b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("register tenants: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM tenants WHERE tenant = ANY($1::text[]) ORDER BY tenant FOR SHARE`, ts); err != nil {
		return nil, fmt.Errorf("lock tenants: %w", err)
	}
	if len(fresh) > 0 {
		if err := joinFrozenBucketCohorts(ctx, tx, rollout, fresh); err != nil {
			return nil, err
		}
	}
	rows, err = tx.Query(ctx, `
		SELECT m.tenant, c.rollout, c.cohort, c.stage, c.epoch
		FROM cohort_members m
		JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort
		WHERE m.tenant = ANY($1::text[])
		ORDER BY c.rollout, c.cohort
		FOR SHARE OF c`, ts)
	if err != nil {
		return nil, fmt.Errorf("lock cohort stages: %w", err)
	}
	for rows.Next() {
		var t string
		var s SaveStage
		if err := rows.Scan(&t, &s.Rollout, &s.Cohort, &s.Stage, &s.Epoch); err != nil {
			rows.Close()
			return nil, err
		}
		out[t] = s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock cohort stages: %w", err)
	}
	for _, t := range ts {
		if _, ok := out[t]; !ok {
			out[t] = SaveStage{Stage: StageLegacy}
		}
	}
	return out, nil
}

// joinFrozenBucketCohorts places tenants registered just now into the
// first bucket cohort (the caller's rollout first, then by rollout and
// position) whose stored selector covers their bucket.
func joinFrozenBucketCohorts(ctx context.Context, tx pgx.Tx, rollout string, fresh map[string]int) error {
	rows, err := tx.Query(ctx, `
		SELECT rollout, cohort, selector FROM rollout_cohorts
		WHERE selector ? 'buckets'
		ORDER BY rollout <> $1, rollout, position`, rollout)
	if err != nil {
		return fmt.Errorf("bucket cohorts: %w", err)
	}
	type cohort struct {
		rollout, cohort string
		sel             Selector
	}
	var cs []cohort
	for rows.Next() {
		var c cohort
		var raw []byte
		if err := rows.Scan(&c.rollout, &c.cohort, &raw); err != nil {
			rows.Close()
			return err
		}
		if json.Unmarshal(raw, &c.sel) == nil && c.sel.Buckets != nil {
			cs = append(cs, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("bucket cohorts: %w", err)
	}
	names := make([]string, 0, len(fresh))
	for t := range fresh {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		b := fresh[t]
		for _, c := range cs {
			if b >= c.sel.Buckets.From && b < c.sel.Buckets.To {
				if _, err := tx.Exec(ctx, `
					INSERT INTO cohort_members (tenant, rollout, cohort, joined_at)
					VALUES ($1, $2, $3, now()) ON CONFLICT (tenant) DO NOTHING`, t, c.rollout, c.cohort); err != nil {
					return fmt.Errorf("join tenant %s to %s/%s: %w", t, c.rollout, c.cohort, err)
				}
				break
			}
		}
	}
	return nil
}

// ReadTenantStage returns the stage a tenant's documents are read under,
// without locking (reads do not need fencing). A tenant in no cohort is
// Legacy at epoch 0.
func ReadTenantStage(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, tenant string) (SaveStage, error) {
	var s SaveStage
	err := q.QueryRow(ctx, `
		SELECT c.rollout, c.cohort, c.stage, c.epoch
		FROM cohort_members m JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort
		WHERE m.tenant = $1`, tenant).Scan(&s.Rollout, &s.Cohort, &s.Stage, &s.Epoch)
	if err == pgx.ErrNoRows {
		return SaveStage{Stage: StageLegacy}, nil
	}
	if err != nil {
		return SaveStage{}, fmt.Errorf("stage of tenant %s: %w", tenant, err)
	}
	return s, nil
}
