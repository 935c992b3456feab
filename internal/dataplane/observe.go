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

// CohortStage is one cohort's stage under its epoch, with its attempt
// and how the attempt ended ("" while it runs).
type CohortStage struct {
	Cohort  string
	Stage   string
	Epoch   int64
	Attempt int
	Outcome string
}

// RolledBack reports whether the cohort is at Legacy after an attempt
// that ended (rolled back, by a gate or a person). Its documents keep
// the Yjs side the attempt gave them, which the next attempt builds on.
func (c CohortStage) RolledBack() bool {
	return c.Stage == StageLegacy && (c.Outcome != "" || c.Attempt > 1)
}

// Observe reads a rollout's epoch and its cohorts' stages in one statement.
func (p *Postgres) Observe(ctx context.Context, rollout string) (Observation, error) {
	obs := Observation{Rollout: rollout}
	rows, err := p.pool.Query(ctx, `
		SELECT r.epoch, r.shards, c.cohort, c.stage, c.epoch, c.attempt, c.outcome
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
		if err := rows.Scan(&obs.Epoch, &obs.Shards, &cohort, &stage, &epoch, &attempt, &outcome); err != nil {
			return obs, fmt.Errorf("observe %s: %w", rollout, err)
		}
		obs.Registered = true
		if cohort != nil {
			obs.Cohorts = append(obs.Cohorts, CohortStage{Cohort: *cohort, Stage: *stage, Epoch: *epoch, Attempt: *attempt, Outcome: *outcome})
		}
	}
	if err := rows.Err(); err != nil {
		return obs, fmt.Errorf("observe %s: %w", rollout, err)
	}
	return obs, nil
}
