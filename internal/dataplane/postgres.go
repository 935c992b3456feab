package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/placement"
)

// NotifyChannel is the PostgreSQL channel on which every stage change is
// announced (payload: the rollout), so syncers observe it without polling.
const NotifyChannel = "yawp_stage"

// Postgres implements Store and ShardReporter with pgx.
type Postgres struct {
	pool *pgxpool.Pool
	// clock stands in for PostgreSQL's now() where the data plane stamps
	// or reads the time (WithClock); nil: now().
	clock func() time.Time
}

var (
	_ Store         = (*Postgres)(nil)
	_ ShardReporter = (*Postgres)(nil)
)

// NewPostgres returns a data plane on pool. The schema must be migrated
// (internal/migrations.Up).
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

// WithClock returns the data plane on the same pool with now standing in
// for PostgreSQL's clock (Now, the stamps of reports and stage changes):
// tests step a fake clock to pass soaks and age reports.
func (p *Postgres) WithClock(now func() time.Time) *Postgres {
	return &Postgres{pool: p.pool, clock: now}
}

// dbNow is the argument of `coalesce($n::timestamptz, now())`, the data
// plane's clock in SQL: nil (now()) unless WithClock set one.
func (p *Postgres) dbNow() *time.Time {
	if p.clock == nil {
		return nil
	}
	t := p.clock()
	return &t
}

// Now implements Store.
func (p *Postgres) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := p.pool.QueryRow(ctx, `SELECT coalesce($1::timestamptz, now())`, p.dbNow()).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("data plane time: %w", err)
	}
	return now, nil
}

// RegisterRollout implements Store.
func (p *Postgres) RegisterRollout(ctx context.Context, rollout, uid string, shards int) error {
	var recorded int
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// Serialised with ForgetRollout of the same rollout, so that a
		// registration cannot slip in between a forget's record and its
		// delete.
		if err := lockRolloutName(ctx, tx, rollout); err != nil {
			return err
		}
		if uid != "" {
			var at time.Time
			err := tx.QueryRow(ctx, `SELECT forgotten_at FROM forgotten_rollouts WHERE uid = $1`, uid).Scan(&at)
			if err == nil {
				return fmt.Errorf("object %s was deleted and its rollout forgotten at %s: %w", uid, at.UTC().Format(time.RFC3339), ErrRolloutForgotten)
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		// One database serves one rollout: documents are placed by hash
		// mod that rollout's shards, and shard ownership is per database.
		// Checked and recorded under a lock of the database's, not only of
		// the name: two rollouts registered at once (reconciled
		// concurrently) each saw no other and were both recorded.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('yawp rollouts', 0))`); err != nil {
			return err
		}
		var other string
		err := tx.QueryRow(ctx, `SELECT rollout FROM rollouts WHERE rollout <> $1 LIMIT 1`, rollout).Scan(&other)
		if err == nil {
			return fmt.Errorf("the database already serves rollout %s: %w", other, ErrDatabaseInUse)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// A registered rollout's row is not written again: every save
		// holds it FOR SHARE, which an update would wait for.
		err = tx.QueryRow(ctx, `SELECT shards FROM rollouts WHERE rollout = $1`, rollout).Scan(&recorded)
		if errors.Is(err, pgx.ErrNoRows) {
			// Epochs go on from the highest this database ever handed
			// out: a rollout forgotten by a RollbackToLegacy deletion
			// and created again (or another after it) never hands out
			// an epoch twice, and what was recorded under the old ones
			// (divergences found, reports) counts for none of its own.
			err = tx.QueryRow(ctx, `INSERT INTO rollouts (rollout, shards, epoch)
				VALUES ($1, $2, (SELECT coalesce(max(epoch) + 1, 0) FROM stage_changes)) RETURNING shards`,
				rollout, shards).Scan(&recorded)
		}
		if err != nil || uid == "" {
			return err
		}
		// Another object that manages the rollout is named before a
		// shard count this object would change; one refused for its
		// shard count takes nothing over.
		return p.claim(ctx, tx, rollout, uid, recorded == shards)
	})
	if err != nil {
		return fmt.Errorf("register rollout %s: %w", rollout, err)
	}
	if recorded != shards {
		return fmt.Errorf("register rollout %s with %d shards, %d recorded: %w", rollout, shards, recorded, ErrShardsChanged)
	}
	return nil
}

// lockStageChanges takes, first in a transaction that changes what saves
// read (a stage, an epoch, a membership, the rollout itself), the
// rollout's stage lock exclusively; every save transaction takes it
// shared before its row locks (QueueSaveStages, QueueGuardSaveStages). A heavyweight lock is
// granted in turn: saves that come after a waiting stage change wait
// behind it. The row locks alone were not: PostgreSQL lets a new FOR
// SHARE locker in past a waiting FOR UPDATE, so saves of many shards that
// overlapped without a pause held a stage change off for as long as they
// went on (TestAStageChangeIsNotHeldOffBySavesThatNeverPause).
func lockStageChanges(ctx context.Context, tx pgx.Tx, rollout string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('yawp stages ' || $1, 0))`, rollout)
	return err
}

// lockRolloutName takes a transaction-scoped lock on a rollout's name
// (whether or not its row exists).
func lockRolloutName(ctx context.Context, tx pgx.Tx, rollout string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('yawp rollout ' || $1, 0))`, rollout)
	return err
}

// FreezeCohort implements Store.
func (p *Postgres) FreezeCohort(ctx context.Context, key CohortKey, position int, sel Selector, at time.Time) (CohortState, error) {
	return p.FreezeCohortAs(ctx, key, SpecRef{}, position, sel, at)
}

// FreezeCohortAs implements Store.
func (p *Postgres) FreezeCohortAs(ctx context.Context, key CohortKey, spec SpecRef, position int, sel Selector, at time.Time) (CohortState, error) {
	var st CohortState
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockStageChanges(ctx, tx, key.Rollout); err != nil {
			return err
		}
		// Lock the rollout row: freezing and stage changes of one rollout
		// are serialised.
		var epoch, specGen int64
		var specUID string
		if err := tx.QueryRow(ctx, `SELECT epoch, spec_uid, spec_generation FROM rollouts WHERE rollout = $1 FOR UPDATE`,
			key.Rollout).Scan(&epoch, &specUID, &specGen); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("rollout %s is not registered", key.Rollout)
			}
			return err
		}
		if err := staleDecision(key.Rollout, spec.UID, spec.Generation, specUID, specGen); err != nil {
			return err
		}
		existing, err := cohortState(ctx, tx, key)
		if err == nil {
			st = existing
			return nil
		}
		if !errors.Is(err, ErrUnknownCohort) {
			return err
		}
		selJSON, err := json.Marshal(sel)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO rollout_cohorts (rollout, cohort, position, selector, stage, epoch, attempt, stage_since, soak_started_at, frozen_at)
			VALUES ($1, $2, $3, $4, $5, $6, 1, coalesce($8::timestamptz, now()), coalesce($8::timestamptz, now()), $7)`,
			key.Rollout, key.Cohort, position, selJSON, StageLegacy, epoch, at, p.dbNow()); err != nil {
			return err
		}
		if err := freezeMembers(ctx, tx, key, sel, at); err != nil {
			return err
		}
		st, err = cohortState(ctx, tx, key)
		if err != nil {
			return err
		}
		if st.HeldElsewhere, st.HeldOutsideSpec, err = heldElsewhere(ctx, tx, key, sel); err != nil {
			return err
		}
		msg := fmt.Sprintf("froze the membership of cohort %s: %d schools", key.Cohort, st.Members)
		if st.HeldElsewhere > 0 {
			msg += fmt.Sprintf("; %d more it selects belong to other cohorts and stay there (memberships are never moved)", st.HeldElsewhere)
		}
		if st.HeldOutsideSpec > 0 {
			msg += fmt.Sprintf(", %d of them to cohorts no longer in the spec", st.HeldOutsideSpec)
		}
		return recordChange(ctx, tx, key, "", StageChange{Stage: StageLegacy, Attempt: 1, Reason: "CohortStarted",
			Message: msg, At: at}, st.Epoch)
	})
	if err != nil {
		return CohortState{}, fmt.Errorf("freeze cohort %s/%s: %w", key.Rollout, key.Cohort, err)
	}
	return st, nil
}

// heldElsewhere counts the schools sel selects that belong to a cohort
// other than key's, and how many of those belong to a cohort no longer in
// the spec (marked removed, or of another rollout): a renamed cohort's
// schools stay with its old name.
func heldElsewhere(ctx context.Context, tx pgx.Tx, key CohortKey, sel Selector) (all, outside int64, err error) {
	const counts = `SELECT count(*), count(*) FILTER (WHERE m.rollout <> $1 OR c.removed_at IS NOT NULL)
		FROM cohort_members m LEFT JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort`
	switch {
	case len(sel.Tenants) > 0:
		err = tx.QueryRow(ctx, counts+`
			WHERE m.tenant = ANY($3::text[]) AND (m.rollout, m.cohort) <> ($1, $2)`, key.Rollout, key.Cohort, sel.Tenants).Scan(&all, &outside)
	case sel.Buckets != nil:
		err = tx.QueryRow(ctx, counts+` JOIN tenants t ON t.tenant = m.tenant
			WHERE t.bucket >= $3 AND t.bucket < $4 AND (m.rollout, m.cohort) <> ($1, $2)`,
			key.Rollout, key.Cohort, sel.Buckets.From, sel.Buckets.To).Scan(&all, &outside)
	}
	return all, outside, err
}

func freezeMembers(ctx context.Context, tx pgx.Tx, key CohortKey, sel Selector, at time.Time) error {
	switch {
	case len(sel.Tenants) > 0:
		buckets := make([]int16, len(sel.Tenants))
		for i, t := range sel.Tenants {
			buckets[i] = int16(placement.TenantBucket(t))
		}
		// Listed tenants the data plane has not seen yet are registered so
		// their first save already finds its cohort.
		if _, err := tx.Exec(ctx, `
			INSERT INTO tenants (tenant, bucket)
			SELECT * FROM unnest($1::text[], $2::smallint[])
			ON CONFLICT (tenant) DO NOTHING`, sel.Tenants, buckets); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO cohort_members (tenant, rollout, cohort, joined_at)
			SELECT t.tenant, $2, $3, $4 FROM tenants t WHERE t.tenant = ANY($1::text[])
			ORDER BY t.tenant
			FOR UPDATE OF t
			ON CONFLICT (tenant) DO NOTHING`, sel.Tenants, key.Rollout, key.Cohort, at)
		return err
	case sel.Buckets != nil:
		_, err := tx.Exec(ctx, `
			INSERT INTO cohort_members (tenant, rollout, cohort, joined_at)
			SELECT t.tenant, $3, $4, $5 FROM tenants t WHERE t.bucket >= $1 AND t.bucket < $2
			ORDER BY t.tenant
			FOR UPDATE OF t
			ON CONFLICT (tenant) DO NOTHING`, sel.Buckets.From, sel.Buckets.To, key.Rollout, key.Cohort, at)
		return err
	default:
		return errors.New("selector names neither tenants nor buckets")
	}
}

const selectCohorts = `
	SELECT c.cohort, c.position, c.stage, c.epoch, c.attempt, c.outcome, c.stage_since, c.soak_started_at, c.frozen_at, c.removed_at,
	       (SELECT count(*) FROM cohort_members m WHERE m.rollout = c.rollout AND m.cohort = c.cohort), c.selector,
	       (SELECT w.seen_at FROM cohort_soak_watch w WHERE w.rollout = c.rollout AND w.cohort = c.cohort AND w.epoch = c.epoch),
	       (SELECT s.message FROM stage_changes s WHERE s.rollout = c.rollout AND s.cohort = c.cohort AND s.outcome <> '' ORDER BY s.id DESC LIMIT 1)
	FROM rollout_cohorts c WHERE c.rollout = $1`

func scanCohort(row pgx.Row) (CohortState, error) {
	var st CohortState
	var removed *time.Time
	var selector []byte
	var seen *time.Time
	var outcomeMsg *string
	err := row.Scan(&st.Cohort, &st.Position, &st.Stage, &st.Epoch, &st.Attempt, &st.Outcome,
		&st.StageSince, &st.SoakStartedAt, &st.FrozenAt, &removed, &st.Members, &selector, &seen, &outcomeMsg)
	if outcomeMsg != nil && st.Outcome != "" {
		st.OutcomeMessage = *outcomeMsg
	}
	if removed != nil {
		st.RemovedAt = *removed
	}
	if seen != nil {
		st.SoakSeenAt = *seen
	}
	if err == nil && len(selector) > 0 {
		if jerr := json.Unmarshal(selector, &st.Selector); jerr != nil {
			return st, fmt.Errorf("cohort %s: selector: %w", st.Cohort, jerr)
		}
	}
	return st, err
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func cohortState(ctx context.Context, q queryer, key CohortKey) (CohortState, error) {
	st, err := scanCohort(q.QueryRow(ctx, selectCohorts+` AND c.cohort = $2`, key.Rollout, key.Cohort))
	if errors.Is(err, pgx.ErrNoRows) {
		return CohortState{}, ErrUnknownCohort
	}
	return st, err
}

// MarkCohortsInSpec implements Store. It costs one read while the spec's
// cohorts stay the same. When marks change, it takes the rollout's row
// first, in the lock order of saves, FreezeCohort and SetStage (rollout,
// then tenants, then cohorts): a save holds one cohort's row FOR SHARE and
// may then lock another's (a school seen for the first time), so updating
// several cohort rows in scan order without the rollout's row deadlocked
// with it. A save that read the cohorts just before the mark committed may
// still place its new school in the cohort, as it would have a moment
// earlier; no save that reads them after does.
func (p *Postgres) MarkCohortsInSpec(ctx context.Context, rollout string, spec SpecRef, inSpec []string, at time.Time) (removed, restored []string, err error) {
	if inSpec == nil {
		inSpec = []string{}
	}
	const changing = `rollout = $1 AND (cohort = ANY($2::text[])) = (removed_at IS NOT NULL)`
	var changes bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rollout_cohorts WHERE `+changing+`)`, rollout, inSpec).Scan(&changes); err != nil {
		return nil, nil, fmt.Errorf("mark cohorts of %s: %w", rollout, err)
	}
	if !changes {
		return nil, nil, nil
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		removed, restored = nil, nil
		// FOR NO KEY UPDATE: serialised with the stage changes (FOR
		// UPDATE), not with the saves (FOR KEY SHARE), which do not read
		// the marks.
		var specUID string
		var specGen int64
		if err := tx.QueryRow(ctx, `SELECT spec_uid, spec_generation FROM rollouts WHERE rollout = $1 FOR NO KEY UPDATE`,
			rollout).Scan(&specUID, &specGen); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := staleDecision(rollout, spec.UID, spec.Generation, specUID, specGen); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			UPDATE rollout_cohorts
			SET removed_at = CASE WHEN cohort = ANY($2::text[]) THEN NULL ELSE $3::timestamptz END
			WHERE `+changing+`
			RETURNING cohort, removed_at IS NOT NULL`, rollout, inSpec, at)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cohort string
			var isRemoved bool
			if err := rows.Scan(&cohort, &isRemoved); err != nil {
				return err
			}
			if isRemoved {
				removed = append(removed, cohort)
			} else {
				restored = append(restored, cohort)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mark cohorts of %s: %w", rollout, err)
	}
	slices.Sort(removed)
	slices.Sort(restored)
	return removed, restored, nil
}

// SchoolsOutsideCohorts implements Store. Memberships are per database
// (one rollout to a database: RegisterRollout), so no rollout is named.
func (p *Postgres) SchoolsOutsideCohorts(ctx context.Context, sample int) (int64, []string, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT count(*) OVER (), t.tenant FROM tenants t
		WHERE NOT EXISTS (SELECT 1 FROM cohort_members m WHERE m.tenant = t.tenant)
		ORDER BY t.tenant LIMIT $1`, max(sample, 1))
	if err != nil {
		return 0, nil, fmt.Errorf("schools outside cohorts: %w", err)
	}
	defer rows.Close()
	var n int64
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&n, &name); err != nil {
			return 0, nil, fmt.Errorf("schools outside cohorts: %w", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("schools outside cohorts: %w", err)
	}
	return n, names[:min(len(names), sample)], nil
}

// SpecSeen implements Store. It writes only when the record changes;
// saves do not read it, so it does not wait for them (they lock the row
// FOR KEY SHARE).
func (p *Postgres) SpecSeen(ctx context.Context, rollout, uid string, generation int64) error {
	var prevUID string
	var prevGen int64
	var claim Claim
	// The claim too: an object that does not manage the rollout (taken
	// over while its reconcile was under way, another cluster's) records
	// nothing, or its decisions would pass staleDecision and the
	// manager's would not.
	const read = `SELECT r.spec_uid, r.spec_generation, coalesce(c.uid, ''), coalesce(c.claimed_at, now()), c.released_at IS NOT NULL
		FROM rollouts r LEFT JOIN rollout_claims c ON c.rollout = r.rollout WHERE r.rollout = $1`
	err := p.pool.QueryRow(ctx, read, rollout).Scan(&prevUID, &prevGen, &claim.UID, &claim.Since, &claim.Released)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spec seen of %s: %w", rollout, err)
	}
	if err := claimedBy(rollout, uid, claim); err != nil {
		return err
	}
	if err := staleSpec(rollout, uid, generation, prevUID, prevGen); err != nil || (prevUID == uid && prevGen >= generation) {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, read+` FOR NO KEY UPDATE OF r`, rollout).Scan(&prevUID, &prevGen, &claim.UID, &claim.Since, &claim.Released)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := claimedBy(rollout, uid, claim); err != nil {
			return err
		}
		if err := staleSpec(rollout, uid, generation, prevUID, prevGen); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE rollouts SET spec_uid = $2, spec_generation = $3
			WHERE rollout = $1 AND (spec_uid <> $2 OR spec_generation < $3)`, rollout, uid, generation)
		return err
	})
	if err != nil && !errors.Is(err, ErrStaleSpec) && !errors.Is(err, ErrRolloutClaimed) {
		return fmt.Errorf("spec seen of %s: %w", rollout, err)
	}
	return err
}

// staleSpec is ErrStaleSpec when generation of object uid is older than
// the recorded one of the same object, nil otherwise.
func staleSpec(rollout, uid string, generation int64, recordedUID string, recorded int64) error {
	if generation > 0 && uid == recordedUID && recorded > generation {
		return fmt.Errorf("rollout %s: acting on generation %d, generation %d was acted on already: %w", rollout, generation, recorded, ErrStaleSpec)
	}
	return nil
}

// staleDecision is staleSpec for a write decided on spec, which its
// manager's SpecSeen recorded first: a record of another object means the
// rollout was deleted and created again since (a manager held up with a
// decision on the deleted one would otherwise move a cohort its successor
// holds), or that a manager of the deleted object is still about, in which
// case the next reconcile records this object again.
func staleDecision(rollout, uid string, generation int64, recordedUID string, recorded int64) error {
	if generation > 0 && recordedUID != "" && uid != recordedUID {
		return fmt.Errorf("rollout %s: decided on object %s, object %s was acted on since: %w", rollout, uid, recordedUID, ErrStaleSpec)
	}
	return staleSpec(rollout, uid, generation, recordedUID, recorded)
}

// SetStage implements Store.
func (p *Postgres) SetStage(ctx context.Context, ch StageChange) (CohortState, error) {
	var st CohortState
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockStageChanges(ctx, tx, ch.Key.Rollout); err != nil {
			return err
		}
		var epoch, specGen int64
		var specUID string
		if err := tx.QueryRow(ctx, `SELECT epoch, spec_uid, spec_generation FROM rollouts WHERE rollout = $1 FOR UPDATE`,
			ch.Key.Rollout).Scan(&epoch, &specUID, &specGen); err != nil {
			return err
		}
		if err := staleDecision(ch.Key.Rollout, ch.SpecUID, ch.SpecGeneration, specUID, specGen); err != nil {
			return err
		}
		// FOR UPDATE on the cohort row waits for every save transaction
		// that holds it FOR SHARE.
		var from, outcome string
		var current int64
		var attempt int32
		var soakStarted time.Time
		err := tx.QueryRow(ctx, `SELECT stage, epoch, outcome, attempt, soak_started_at FROM rollout_cohorts WHERE rollout = $1 AND cohort = $2 FOR UPDATE`,
			ch.Key.Rollout, ch.Key.Cohort).Scan(&from, &current, &outcome, &attempt, &soakStarted)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnknownCohort
		}
		if err != nil {
			return err
		}
		if current != ch.ExpectEpoch {
			return fmt.Errorf("expected epoch %d, found %d: %w", ch.ExpectEpoch, current, ErrEpochConflict)
		}
		if !ch.ExpectSoakStartedAt.IsZero() && !ch.ExpectSoakStartedAt.Equal(soakStarted) {
			return fmt.Errorf("the soak restarted at %s since the decision (made on the soak from %s): %w",
				soakStarted.UTC().Format(time.RFC3339Nano), ch.ExpectSoakStartedAt.UTC().Format(time.RFC3339Nano), ErrEpochConflict)
		}
		// A halt ends its attempt without a new epoch: a change decided
		// before it (a stale controller's promotion) must not go through
		// and erase it. Only a rollback, or a new attempt, follows an
		// ended one.
		if outcome != "" && ch.Outcome == "" && ch.Attempt <= attempt {
			return fmt.Errorf("attempt %d ended (%s) at epoch %d: %w", attempt, outcome, current, ErrEpochConflict)
		}
		epoch++
		if _, err := tx.Exec(ctx, `UPDATE rollouts SET epoch = $2 WHERE rollout = $1`, ch.Key.Rollout, epoch); err != nil {
			return err
		}
		// The soak starts by the data plane's clock, which the manager
		// times it by (Now), whatever the clock of the manager's node.
		if _, err := tx.Exec(ctx, `
			UPDATE rollout_cohorts SET stage = $3, epoch = $4, attempt = $5,
			  stage_since = coalesce($6::timestamptz, now()), soak_started_at = coalesce($6::timestamptz, now()), outcome = $7
			WHERE rollout = $1 AND cohort = $2`,
			ch.Key.Rollout, ch.Key.Cohort, ch.Stage, epoch, ch.Attempt, p.dbNow(), ch.Outcome); err != nil {
			return err
		}
		if err := recordChange(ctx, tx, ch.Key, from, ch, epoch); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, ch.Key.Rollout); err != nil {
			return err
		}
		st, err = cohortState(ctx, tx, ch.Key)
		return err
	})
	if err != nil {
		return CohortState{}, fmt.Errorf("set stage of %s/%s to %s: %w", ch.Key.Rollout, ch.Key.Cohort, ch.Stage, err)
	}
	return st, nil
}

// RestampPast implements Store. It takes the rollout's row and then the
// cohorts' rows, in the lock order of saves and SetStage, and notifies
// the syncers as a stage change does: they observe the new epochs at once.
func (p *Postgres) RestampPast(ctx context.Context, rollout string, spec SpecRef, past int64, reason, message string, at time.Time) ([]CohortState, error) {
	var out []CohortState
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockStageChanges(ctx, tx, rollout); err != nil {
			return err
		}
		var epoch, specGen int64
		var specUID string
		if err := tx.QueryRow(ctx, `SELECT epoch, spec_uid, spec_generation FROM rollouts WHERE rollout = $1 FOR UPDATE`,
			rollout).Scan(&epoch, &specUID, &specGen); err != nil {
			return err
		}
		if err := staleDecision(rollout, spec.UID, spec.Generation, specUID, specGen); err != nil {
			return err
		}
		if epoch > past {
			return nil // stamped already (or never went back in time)
		}
		rows, err := tx.Query(ctx, `SELECT cohort, stage, attempt, outcome FROM rollout_cohorts WHERE rollout = $1
			ORDER BY position, cohort FOR UPDATE`, rollout)
		if err != nil {
			return err
		}
		type row struct {
			cohort, stage, outcome string
			attempt                int32
		}
		cohorts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var c row
			return c, r.Scan(&c.cohort, &c.stage, &c.attempt, &c.outcome)
		})
		if err != nil {
			return err
		}
		epoch = past
		for _, c := range cohorts {
			epoch++
			key := CohortKey{Rollout: rollout, Cohort: c.cohort}
			// The stage stays, and so does the time it was entered; the
			// soak starts again, since what was verified under the old
			// epoch was of documents the restore took back.
			if _, err := tx.Exec(ctx, `
				UPDATE rollout_cohorts SET epoch = $3, soak_started_at = coalesce($4::timestamptz, now())
				WHERE rollout = $1 AND cohort = $2`, rollout, c.cohort, epoch, p.dbNow()); err != nil {
				return err
			}
			if err := recordChange(ctx, tx, key, c.stage, StageChange{Key: key, Stage: c.stage, Attempt: c.attempt, Outcome: c.outcome,
				Reason: reason, Message: message, At: at}, epoch); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE rollouts SET epoch = $2 WHERE rollout = $1`, rollout, epoch); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, rollout); err != nil {
			return err
		}
		for _, c := range cohorts {
			st, err := cohortState(ctx, tx, CohortKey{Rollout: rollout, Cohort: c.cohort})
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stamp the cohorts of %s past epoch %d: %w", rollout, past, err)
	}
	return out, nil
}

// HaltAttempt implements Store.
func (p *Postgres) HaltAttempt(ctx context.Context, ch StageChange) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var specUID string
		var specGen int64
		if err := tx.QueryRow(ctx, `SELECT spec_uid, spec_generation FROM rollouts WHERE rollout = $1 FOR SHARE`,
			ch.Key.Rollout).Scan(&specUID, &specGen); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := staleDecision(ch.Key.Rollout, ch.SpecUID, ch.SpecGeneration, specUID, specGen); err != nil {
			return err
		}
		var stage string
		var attempt int32
		// Only an attempt that runs: a halt keeps the epoch, so a second
		// controller that decided on the same epoch (an old leader) would
		// otherwise halt it again, with a second entry in the audit trail
		// and a second Warning Event.
		err := tx.QueryRow(ctx, `
			UPDATE rollout_cohorts SET outcome = $4
			WHERE rollout = $1 AND cohort = $2 AND epoch = $3 AND outcome = ''
			RETURNING stage, attempt`, ch.Key.Rollout, ch.Key.Cohort, ch.ExpectEpoch, OutcomeHalted).Scan(&stage, &attempt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrEpochConflict
		}
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, ch.Key, stage, StageChange{Stage: stage, Attempt: attempt, Outcome: OutcomeHalted,
			Reason: ch.Reason, Message: ch.Message, At: ch.At}, ch.ExpectEpoch)
	})
	if err != nil {
		return fmt.Errorf("halt %s/%s: %w", ch.Key.Rollout, ch.Key.Cohort, err)
	}
	return nil
}

func recordChange(ctx context.Context, tx pgx.Tx, key CohortKey, from string, ch StageChange, epoch int64) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO stage_changes (rollout, cohort, from_stage, to_stage, epoch, attempt, outcome, reason, message, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		key.Rollout, key.Cohort, from, ch.Stage, epoch, ch.Attempt, ch.Outcome, ch.Reason, ch.Message, ch.At)
	return err
}

// History implements Store.
func (p *Postgres) History(ctx context.Context, rollout string, limit int) ([]StageRecord, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT cohort, from_stage, to_stage, epoch, attempt, outcome, reason, message, at FROM (
			SELECT * FROM stage_changes WHERE rollout = $1 ORDER BY id DESC LIMIT $2
		) last ORDER BY id`, rollout, limit)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", rollout, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StageRecord, error) {
		var r StageRecord
		err := row.Scan(&r.Cohort, &r.FromStage, &r.ToStage, &r.Epoch, &r.Attempt, &r.Outcome, &r.Reason, &r.Message, &r.At)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", rollout, err)
	}
	return out, nil
}

// RestartSoak implements Store.
func (p *Postgres) RestartSoak(ctx context.Context, key CohortKey, expectEpoch int64, at time.Time) error {
	// Not fenced: saves do not read the soak, and lock the cohort's row
	// FOR KEY SHARE, which this update does not wait for.
	tag, err := p.pool.Exec(ctx, `
		UPDATE rollout_cohorts SET soak_started_at = greatest(soak_started_at, $4)
		WHERE rollout = $1 AND cohort = $2 AND epoch = $3`, key.Rollout, key.Cohort, expectEpoch, at)
	if err != nil {
		return fmt.Errorf("restart soak of %s/%s: %w", key.Rollout, key.Cohort, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("restart soak of %s/%s: %w", key.Rollout, key.Cohort, ErrEpochConflict)
	}
	return nil
}

// SoakSeen implements Store.
func (p *Postgres) SoakSeen(ctx context.Context, key CohortKey, epoch int64, at time.Time) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO cohort_soak_watch (rollout, cohort, epoch, seen_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (rollout, cohort) DO UPDATE SET epoch = EXCLUDED.epoch,
		  seen_at = CASE WHEN cohort_soak_watch.epoch = EXCLUDED.epoch THEN greatest(cohort_soak_watch.seen_at, EXCLUDED.seen_at) ELSE EXCLUDED.seen_at END
		WHERE cohort_soak_watch.epoch <= EXCLUDED.epoch`, key.Rollout, key.Cohort, epoch, at)
	if err != nil {
		return fmt.Errorf("soak seen of %s/%s: %w", key.Rollout, key.Cohort, err)
	}
	return nil
}

// Cohorts implements Store.
func (p *Postgres) Cohorts(ctx context.Context, rollout string) (map[string]CohortState, error) {
	rows, err := p.pool.Query(ctx, selectCohorts, rollout)
	if err != nil {
		return nil, fmt.Errorf("cohorts of %s: %w", rollout, err)
	}
	defer rows.Close()
	out := map[string]CohortState{}
	for rows.Next() {
		st, err := scanCohort(rows)
		if err != nil {
			return nil, fmt.Errorf("cohorts of %s: %w", rollout, err)
		}
		out[st.Cohort] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cohorts of %s: %w", rollout, err)
	}
	return out, nil
}

// ShardReports implements Store.
func (p *Postgres) ShardReports(ctx context.Context, rollout string) ([]ShardReport, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT s.shard, s.observed_epoch, s.holder, s.reported_at,
		       c.cohort, c.epoch, c.documents, c.backfilled, c.backfill_complete, c.verified,
		       c.mismatched, c.open_divergences, c.evidence_gaps, c.sample_mismatches, c.reported_at
		FROM shard_reports s
		LEFT JOIN shard_cohort_reports c ON c.rollout = s.rollout AND c.shard = s.shard
		WHERE s.rollout = $1
		ORDER BY s.shard, c.cohort`, rollout)
	if err != nil {
		return nil, fmt.Errorf("shard reports of %s: %w", rollout, err)
	}
	defer rows.Close()
	var out []ShardReport
	for rows.Next() {
		var (
			shard    int
			observed int64
			holder   string
			at       time.Time
			cohort   *string
			cr       CohortReport
			epoch    *int64
			counts   [7]*int64
			complete *bool
			samples  []string
			crAt     *time.Time
		)
		if err := rows.Scan(&shard, &observed, &holder, &at, &cohort, &epoch, &counts[0], &counts[1], &complete,
			&counts[2], &counts[3], &counts[4], &counts[5], &samples, &crAt); err != nil {
			return nil, fmt.Errorf("shard reports of %s: %w", rollout, err)
		}
		if len(out) == 0 || out[len(out)-1].Shard != shard {
			out = append(out, ShardReport{Rollout: rollout, Shard: shard, ObservedEpoch: observed, Holder: holder, ReportedAt: at})
		}
		if cohort == nil {
			continue
		}
		cr = CohortReport{
			Cohort: *cohort, Epoch: *epoch, Documents: *counts[0], Backfilled: *counts[1], BackfillComplete: *complete,
			Verified: *counts[2], Mismatched: *counts[3], OpenDivergences: *counts[4], EvidenceGaps: *counts[5],
			SampleMismatches: samples, ReportedAt: *crAt,
		}
		last := &out[len(out)-1]
		last.Cohorts = append(last.Cohorts, cr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shard reports of %s: %w", rollout, err)
	}
	return out, nil
}

// ReportShard implements ShardReporter. Counts for cohorts the rollout does
// not know are refused, so a report cannot invent a cohort.
//
// The report is stamped with the data plane's clock, not the reporter's:
// the manager ages reports by that clock (Now), and a syncer's node clock
// may be off from it by seconds or more. Only the age of each cohort's
// counts when reported (r.ReportedAt less c.ReportedAt, both by the
// reporter's clock, so its offset cancels) comes from the reporter.
func (p *Postgres) ReportShard(ctx context.Context, r ShardReport) error {
	now := p.dbNow()
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO shard_reports (rollout, shard, observed_epoch, holder, reported_at)
			VALUES ($1, $2, $3, $4, coalesce($5::timestamptz, now()))
			ON CONFLICT (rollout, shard) DO UPDATE SET
			  observed_epoch = EXCLUDED.observed_epoch, holder = EXCLUDED.holder, reported_at = EXCLUDED.reported_at`,
			r.Rollout, r.Shard, r.ObservedEpoch, r.Holder, now); err != nil {
			return err
		}
		for _, c := range r.Cohorts {
			var age time.Duration
			if !c.ReportedAt.IsZero() && !r.ReportedAt.IsZero() {
				age = max(r.ReportedAt.Sub(c.ReportedAt), 0)
			}
			samples := c.SampleMismatches
			if samples == nil {
				samples = []string{}
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO shard_cohort_reports (rollout, shard, cohort, epoch, documents, backfilled, backfill_complete,
				  verified, mismatched, open_divergences, evidence_gaps, sample_mismatches, reported_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13::timestamptz, now()) - $14 * interval '1 microsecond')
				ON CONFLICT (rollout, shard, cohort) DO UPDATE SET
				  epoch = EXCLUDED.epoch, documents = EXCLUDED.documents, backfilled = EXCLUDED.backfilled,
				  backfill_complete = EXCLUDED.backfill_complete, verified = EXCLUDED.verified,
				  mismatched = EXCLUDED.mismatched, open_divergences = EXCLUDED.open_divergences,
				  evidence_gaps = EXCLUDED.evidence_gaps, sample_mismatches = EXCLUDED.sample_mismatches,
				  reported_at = EXCLUDED.reported_at`,
				r.Rollout, r.Shard, c.Cohort, c.Epoch, c.Documents, c.Backfilled, c.BackfillComplete,
				c.Verified, c.Mismatched, c.OpenDivergences, c.EvidenceGaps, samples, now, age.Microseconds()); err != nil {
				return fmt.Errorf("cohort %s: %w", c.Cohort, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("report shard %d of %s: %w", r.Shard, r.Rollout, err)
	}
	return nil
}

// ForgetRollout implements Store.
func (p *Postgres) ForgetRollout(ctx context.Context, rollout, uid string) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockRolloutName(ctx, tx, rollout); err != nil {
			return err
		}
		if err := lockStageChanges(ctx, tx, rollout); err != nil {
			return err
		}
		var active int
		if err := tx.QueryRow(ctx, `
			SELECT count(*) FROM rollout_cohorts WHERE rollout = $1 AND stage <> $2`, rollout, StageLegacy).Scan(&active); err != nil {
			return err
		}
		if active > 0 {
			return fmt.Errorf("%d cohorts are not at Legacy", active)
		}
		if uid != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO forgotten_rollouts (uid, rollout) VALUES ($1, $2) ON CONFLICT (uid) DO NOTHING`, uid, rollout); err != nil {
				return err
			}
		}
		// Members go with their cohorts (ON DELETE CASCADE).
		_, err := tx.Exec(ctx, `DELETE FROM rollouts WHERE rollout = $1`, rollout)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget rollout %s: %w", rollout, err)
	}
	return nil
}

// RecordRolloutObject implements Store.
func (p *Postgres) RecordRolloutObject(ctx context.Context, rollout, uid string) error {
	if uid == "" {
		return nil
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// Only by the object that manages the rollout: one that lost it
		// since it registered (taken over) must not point the syncers at
		// itself.
		if err := lockRolloutName(ctx, tx, rollout); err != nil {
			return err
		}
		if c, _, err := readClaim(ctx, tx, rollout); err != nil {
			return err
		} else if err := claimedBy(rollout, uid, c); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO rollout_objects (rollout, uid) VALUES ($1, $2)
			ON CONFLICT (rollout) DO UPDATE SET uid = EXCLUDED.uid, recorded_at = now() WHERE rollout_objects.uid <> EXCLUDED.uid`, rollout, uid)
		return err
	})
	if err != nil {
		return fmt.Errorf("record the object of rollout %s: %w", rollout, err)
	}
	return nil
}

// RegisteredAs reads whether rollout is registered in the database q
// reaches, and which object serves it (uid: "" when none is recorded:
// not yet, or by an operator built before migration 00021). It reads a
// database at any schema version, an empty one too (not registered), and
// writes nothing: a syncer asks it before it migrates or takes a shard.
func RegisteredAs(ctx context.Context, q Querier, rollout string) (registered bool, uid string, err error) {
	var table, objects bool
	err = q.QueryRow(ctx, `SELECT to_regclass('rollouts') IS NOT NULL, to_regclass('rollout_objects') IS NOT NULL`).Scan(&table, &objects)
	if err != nil || !table {
		return false, "", err
	}
	sql := `SELECT '' FROM rollouts WHERE rollout = $1`
	if objects {
		sql = `SELECT coalesce(o.uid, '') FROM rollouts r LEFT JOIN rollout_objects o ON o.rollout = r.rollout WHERE r.rollout = $1`
	}
	err = q.QueryRow(ctx, sql, rollout).Scan(&uid)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	return err == nil, uid, err
}
