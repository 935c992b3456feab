package dataplane

import (
	"context"
	"fmt"
)

// Observation is what a syncer loads of its rollout: the rollout epoch and
// every cohort's stage and epoch, read in one snapshot, so a shard that
// loaded epoch E has seen every stage change up to E.
type Observation struct {
	Rollout string
	// Registered is false when the rollout has no row yet (Epoch 0).
	Registered bool
	Epoch      int64
	Shards     int
	Cohorts    []CohortStage
}

// CohortStage is one cohort's stage under its epoch, with its attempt,
// how the attempt ended ("" while it runs) and whether the cohort ever
// left Legacy.
type CohortStage struct {
	Cohort     string
	Stage      string
	Epoch      int64
	Attempt    int
	Outcome    string
	LeftLegacy bool
}

// RolledBack reports whether the cohort is back at Legacy after an
// attempt that left it (rolled back by a gate or a person). Its documents
// keep the Yjs side the attempt gave them, which the next attempt builds
// on. A cohort rolled back before it ever left Legacy has none.
func (c CohortStage) RolledBack() bool {
	return c.Stage == StageLegacy && c.LeftLegacy
}

// Observe reads a rollout's epoch and its cohorts' stages in one statement.
func (p *Postgres) Observe(ctx context.Context, rollout string) (Observation, error) {
	obs := Observation{Rollout: rollout}
	rows, err := p.pool.Query(ctx, `
		SELECT r.epoch, r.shards, c.cohort, c.stage, c.epoch, c.attempt, c.outcome,
		       EXISTS (SELECT 1 FROM stage_changes s WHERE s.rollout = c.rollout AND s.cohort = c.cohort
		               AND s.to_stage <> 'Legacy'
		               -- since it was frozen: not a forgotten rollout's of the same name
		               AND s.id >= (SELECT coalesce(max(f.id), 0) FROM stage_changes f
		                            WHERE f.rollout = c.rollout AND f.cohort = c.cohort AND f.from_stage = ''))
		FROM rollouts r LEFT JOIN rollout_cohorts c ON c.rollout = r.rollout
		WHERE r.rollout = $1
		ORDER BY c.position, c.cohort`, rollout)
	if err != nil {
		return obs, fmt.Errorf("observe %s: %w", rollout, err)
	}
	defer rows.Close()
	for rows.Next() {
		var cohort, stage, outcome *string
		var epoch *int64
		var attempt *int
		var left bool
		if err := rows.Scan(&obs.Epoch, &obs.Shards, &cohort, &stage, &epoch, &attempt, &outcome, &left); err != nil {
			return obs, fmt.Errorf("observe %s: %w", rollout, err)
		}
		obs.Registered = true
		if cohort != nil {
			obs.Cohorts = append(obs.Cohorts, CohortStage{Cohort: *cohort, Stage: *stage, Epoch: *epoch, Attempt: *attempt, Outcome: *outcome, LeftLegacy: left})
		}
	}
	if err := rows.Err(); err != nil {
		return obs, fmt.Errorf("observe %s: %w", rollout, err)
	}
	return obs, nil
}
