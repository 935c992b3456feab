package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/yawp/persistence-operator/internal/placement"
)

// SaveStage is the (stage, epoch) a save commits under: its tenant's
// cohort's row, read FOR KEY SHARE. A tenant in no cohort is Legacy at epoch 0
// with an empty Cohort.
type SaveStage struct {
	Rollout string `json:"rollout,omitempty"`
	Cohort  string `json:"cohort,omitempty"`
	Stage   string `json:"stage"`
	Epoch   int64  `json:"epoch"`
}

// Querier is what the save-path functions need of a transaction: a pgx.Tx
// or a connection inside an explicit BEGIN.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LockSaveStages is the first thing a save transaction does. For each
// tenant it registers the tenant if unseen (a tenant first seen after a
// bucket cohort was frozen joins that cohort by its stored selector, unless
// the cohort has left its rollout's spec), locks
// the tenants row FOR KEY SHARE (serialising with FreezeCohort, which locks
// it FOR UPDATE) and its cohort's row FOR KEY SHARE (so a SetStage waits for
// the transaction), and returns the stage each tenant's saves commit under.
//
// rollout is the rollout the caller serves; its stage lock is taken shared
// and its row locked FOR KEY SHARE first (lockRolloutForSave), the lock
// order FreezeCohort and SetStage use (stage lock, rollouts, tenants,
// cohorts), so a tenant registered here cannot miss a concurrent freeze.
// Locks are held until tx ends.
func LockSaveStages(ctx context.Context, tx pgx.Tx, rollout string, tenants []string) (map[string]SaveStage, error) {
	b := &pgx.Batch{}
	s := QueueSaveStages(b, rollout, tenants, nil)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock save stages: %w", err)
	}
	return s.Finish(ctx, tx)
}

// SaveStages is the pending result of QueueSaveStages.
type SaveStages struct {
	rollout string
	tenants []string
	fresh   map[string]int
	stages  map[string]SaveStage
}

// lockRolloutForSave takes the rollout's stage lock shared, then its row
// FOR KEY SHARE: a stage change takes the lock exclusively first
// (lockStageChanges), and a save that comes after it waits its turn. The
// function scan in FROM runs before the row lock, which is taken on the
// rows the join yields.
//
// Saves lock the rollout's, its tenants' and cohorts' rows FOR KEY SHARE,
// the weakest lock: the stage changes that fence saves (SetStage,
// FreezeCohort, RestampPast, ForgetRollout) lock them FOR UPDATE, which
// waits for it; bookkeeping that saves do not read (a soak restarted, an
// attempt halted, a cohort marked out of the spec, the spec generation
// seen) updates them without waiting for any save, and without holding
// any up.
const lockRolloutForSave = `SELECT 1 FROM pg_advisory_xact_lock_shared(hashtextextended('yawp stages ' || $1, 0)) l, rollouts r
		WHERE r.rollout = $1 FOR KEY SHARE OF r`

const selectSaveStages = `
		SELECT m.tenant, c.rollout, c.cohort, c.stage, c.epoch
		FROM cohort_members m
		JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort
		WHERE m.tenant = ANY($1::text[])
		ORDER BY c.rollout, c.cohort
		FOR KEY SHARE OF c`

func (s *SaveStages) scanStages(rows pgx.Rows) error {
	for rows.Next() {
		var t string
		var st SaveStage
		if err := rows.Scan(&t, &st.Rollout, &st.Cohort, &st.Stage, &st.Epoch); err != nil {
			return err
		}
		s.stages[t] = st
	}
	return rows.Err()
}

// QueueSaveStages queues LockSaveStages's statements on b, so a group
// commit sends them in the same round trip as its other first statements
// (b must run inside the save transaction); call Finish after b has run.
// known, if set, reports tenants the caller has seen committed in the
// tenants table (rows are never deleted): when it knows them all, the
// registration statement is skipped.
func QueueSaveStages(b *pgx.Batch, rollout string, tenants []string, known func(string) bool) *SaveStages {
	ts := slices.Clone(tenants)
	slices.Sort(ts)
	ts = slices.Compact(ts)
	s := &SaveStages{rollout: rollout, tenants: ts, fresh: map[string]int{}, stages: make(map[string]SaveStage, len(ts))}
	if len(ts) == 0 {
		return s
	}
	if rollout != "" {
		b.Queue(lockRolloutForSave, rollout)
	}
	if known == nil || slices.ContainsFunc(ts, func(t string) bool { return !known(t) }) {
		s.queueRegister(b)
	}
	b.Queue(`SELECT 1 FROM tenants WHERE tenant = ANY($1::text[]) ORDER BY tenant FOR KEY SHARE`, ts)
	b.Queue(selectSaveStages, ts).Query(s.scanStages)
	return s
}

func (s *SaveStages) queueRegister(b *pgx.Batch) {
	buckets := make([]int16, len(s.tenants))
	for i, t := range s.tenants {
		buckets[i] = int16(placement.TenantBucket(t))
	}
	b.Queue(`
		INSERT INTO tenants (tenant, bucket)
		SELECT * FROM unnest($1::text[], $2::smallint[]) ORDER BY 1
		ON CONFLICT (tenant) DO NOTHING
		RETURNING tenant, bucket`, s.tenants, buckets).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var t string
			var bk int16
			if err := rows.Scan(&t, &bk); err != nil {
				return err
			}
			s.fresh[t] = int(bk)
		}
		return rows.Err()
	})
}

// Finish places tenants registered by the queued statements into frozen
// bucket cohorts (re-reading their stages) and returns every tenant's
// stage.
func (s *SaveStages) Finish(ctx context.Context, q Querier) (map[string]SaveStage, error) {
	if len(s.fresh) > 0 {
		if err := joinFrozenBucketCohorts(ctx, q, s.rollout, s.fresh); err != nil {
			return nil, err
		}
		names := make([]string, 0, len(s.fresh))
		for t := range s.fresh {
			names = append(names, t)
		}
		rows, err := q.Query(ctx, selectSaveStages, names)
		if err != nil {
			return nil, fmt.Errorf("lock cohort stages: %w", err)
		}
		err = s.scanStages(rows)
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("lock cohort stages: %w", err)
		}
	}
	for _, t := range s.tenants {
		if _, ok := s.stages[t]; !ok {
			s.stages[t] = SaveStage{Stage: StageLegacy}
		}
	}
	return s.stages, nil
}

// joinFrozenBucketCohorts places tenants registered just now into the
// first bucket cohort (the caller's rollout first, then by rollout and
// position) whose stored selector covers their bucket. Cohorts removed from
// their rollout's spec (MarkCohortsInSpec) are skipped: a renamed cohort's
// old row selects the same buckets as the new one, and a dropped one's may
// be rolled back or Yjs-authoritative; a new school belongs where the spec
// says, or in no cohort (Legacy) until a cohort of the spec takes it.
func joinFrozenBucketCohorts(ctx context.Context, tx Querier, rollout string, fresh map[string]int) error {
	rows, err := tx.Query(ctx, `
		SELECT rollout, cohort, selector FROM rollout_cohorts
		WHERE selector ? 'buckets' AND removed_at IS NULL
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

// QueueGuardSaveStages is the one-round-trip form of LockSaveStages for a
// caller that already knows its tenants are registered and expects their
// stages: it queues on b, inside the save transaction, the same stage and row
// locks (rollout, tenants, cohorts, in that order) and then a statement
// that fails (division by zero, SQLSTATE 22012) unless every tenant's
// cohort, stage and epoch are still the expected ones. The caller's
// transaction then aborts and it retries with LockSaveStages.
func QueueGuardSaveStages(b *pgx.Batch, rollout string, expect map[string]SaveStage) {
	ts := make([]string, 0, len(expect))
	for t := range expect {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	if len(ts) == 0 {
		return
	}
	if rollout != "" {
		b.Queue(lockRolloutForSave, rollout)
	}
	b.Queue(`SELECT 1 FROM tenants WHERE tenant = ANY($1::text[]) ORDER BY tenant FOR KEY SHARE`, ts)
	b.Queue(selectSaveStages, ts)
	rollouts, cohorts, stages := make([]string, len(ts)), make([]string, len(ts)), make([]string, len(ts))
	epochs := make([]int64, len(ts))
	for i, t := range ts {
		s := expect[t]
		rollouts[i], cohorts[i], stages[i], epochs[i] = s.Rollout, s.Cohort, s.Stage, s.Epoch
	}
	b.Queue(`
		SELECT 1 / (count(*) = $6 AND bool_and(
		         coalesce(c.rollout, '') = x.rollout AND coalesce(c.cohort, '') = x.cohort
		         AND coalesce(c.stage, 'Legacy') = x.stage AND coalesce(c.epoch, 0) = x.epoch))::int
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS x(tenant, rollout, cohort, stage, epoch)
		JOIN tenants t ON t.tenant = x.tenant
		LEFT JOIN cohort_members m ON m.tenant = x.tenant
		LEFT JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort`,
		ts, rollouts, cohorts, stages, epochs, len(ts))
}
