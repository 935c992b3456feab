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

// CohortStage is one cohort's stage under its epoch.
type CohortStage struct {
	Cohort string
	Stage  string
	Epoch  int64
}

// Observe reads a rollout's epoch and its cohorts' stages in one statement.
func (p *Postgres) Observe(ctx context.Context, rollout string) (Observation, error) {
	obs := Observation{Rollout: rollout}
	rows, err := p.pool.Query(ctx, `
		SELECT r.epoch, r.shards, c.cohort, c.stage, c.epoch
		FROM rollouts r LEFT JOIN rollout_cohorts c ON c.rollout = r.rollout
		WHERE r.rollout = $1
		ORDER BY c.position, c.cohort`, rollout)
	if err != nil {
		return obs, fmt.Errorf("observe %s: %w", rollout, err)
	}
	defer rows.Close()
	for rows.Next() {
		var cohort, stage *string
		var epoch *int64
		if err := rows.Scan(&obs.Epoch, &obs.Shards, &cohort, &stage, &epoch); err != nil {
			return obs, fmt.Errorf("observe %s: %w", rollout, err)
		}
		obs.Registered = true
		if cohort != nil {
			obs.Cohorts = append(obs.Cohorts, CohortStage{Cohort: *cohort, Stage: *stage, Epoch: *epoch})
		}
	}
	if err := rows.Err(); err != nil {
		return obs, fmt.Errorf("observe %s: %w", rollout, err)
	}
	return obs, nil
}
