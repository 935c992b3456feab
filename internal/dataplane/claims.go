package dataplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrRolloutClaimed is returned when another PersistenceRollout object
// manages the rollout of that namespace and name in the database: another
// cluster's operator given this database, or an object of this cluster
// deleted without its deletion reaching the database. A *ClaimedError
// says which object, and since when.
var ErrRolloutClaimed = errors.New("dataplane: another object manages the rollout")

// ClaimedError is ErrRolloutClaimed with the object that holds the claim.
type ClaimedError struct {
	Rollout string
	// UID is the object that manages the rollout, Since when it does.
	UID   string
	Since time.Time
}

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("rollout %s in this database is managed by another PersistenceRollout object (uid %s, since %s)",
		e.Rollout, e.UID, e.Since.UTC().Format(time.RFC3339))
}

// Is makes a *ClaimedError ErrRolloutClaimed.
func (e *ClaimedError) Is(target error) bool { return target == ErrRolloutClaimed }

// Claim is the record of the object that manages a rollout.
type Claim struct {
	UID   string
	Since time.Time
	// Released: the object was deleted with deletionPolicy Retain and its
	// deletion recorded (ReleaseRollout); the next object takes over.
	Released bool
}

// readClaim reads rollout's claim (found false: none recorded).
func readClaim(ctx context.Context, q Querier, rollout string) (c Claim, found bool, err error) {
	err = q.QueryRow(ctx, `SELECT uid, claimed_at, released_at IS NOT NULL FROM rollout_claims WHERE rollout = $1`, rollout).
		Scan(&c.UID, &c.Since, &c.Released)
	if errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, false, nil
	}
	return c, err == nil, err
}

// claim records uid as the object that manages the registered rollout,
// unless another object does and has not let it go: a *ClaimedError then.
// Written only when the claim changes hands, and only if take; the caller
// holds the rollout's name lock.
func (p *Postgres) claim(ctx context.Context, tx pgx.Tx, rollout, uid string, take bool) error {
	c, found, err := readClaim(ctx, tx, rollout)
	if err != nil {
		return err
	}
	if err := claimedBy(rollout, uid, c); err != nil || (found && c.UID == uid) || !take {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO rollout_claims (rollout, uid, claimed_at) VALUES ($1, $2, coalesce($3::timestamptz, now()))
		ON CONFLICT (rollout) DO UPDATE SET uid = EXCLUDED.uid, claimed_at = EXCLUDED.claimed_at, released_at = NULL`,
		rollout, uid, p.dbNow())
	return err
}

// RolloutClaim implements Store.
func (p *Postgres) RolloutClaim(ctx context.Context, rollout string) (Claim, bool, error) {
	c, found, err := readClaim(ctx, p.pool, rollout)
	if err != nil {
		return Claim{}, false, fmt.Errorf("claim of rollout %s: %w", rollout, err)
	}
	return c, found, nil
}

// TakeOverRollout implements Store.
func (p *Postgres) TakeOverRollout(ctx context.Context, rollout, from, to string) error {
	if from == "" || to == "" {
		return fmt.Errorf("take over rollout %s: both objects' UIDs are needed", rollout)
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockRolloutName(ctx, tx, rollout); err != nil {
			return err
		}
		c, found, err := readClaim(ctx, tx, rollout)
		switch {
		case err != nil:
			return err
		case !found || c.UID == to:
			return nil
		case c.UID != from:
			return &ClaimedError{Rollout: rollout, UID: c.UID, Since: c.Since}
		}
		if _, err := tx.Exec(ctx, `UPDATE rollout_claims SET uid = $2, claimed_at = coalesce($3::timestamptz, now()), released_at = NULL
			WHERE rollout = $1`, rollout, to, p.dbNow()); err != nil {
			return err
		}
		// The decisions of from still under way are stale from now on
		// (staleDecision): the spec acted on is to's.
		_, err = tx.Exec(ctx, `UPDATE rollouts SET spec_uid = $2, spec_generation = 0 WHERE rollout = $1`, rollout, to)
		return err
	})
	if err != nil {
		return fmt.Errorf("take over rollout %s from object %s: %w", rollout, from, err)
	}
	return nil
}

// ReleaseRollout implements Store.
func (p *Postgres) ReleaseRollout(ctx context.Context, rollout, uid string) error {
	if uid == "" {
		return nil
	}
	_, err := p.pool.Exec(ctx, `UPDATE rollout_claims SET released_at = coalesce($3::timestamptz, now())
		WHERE rollout = $1 AND uid = $2 AND released_at IS NULL`, rollout, uid, p.dbNow())
	if err != nil {
		return fmt.Errorf("release rollout %s: %w", rollout, err)
	}
	return nil
}

// claimedBy is a *ClaimedError when claim is held by another object than
// uid and not released; nil for uid "" (no object) or no claim.
func claimedBy(rollout, uid string, claim Claim) error {
	if uid != "" && claim.UID != "" && claim.UID != uid && !claim.Released {
		return &ClaimedError{Rollout: rollout, UID: claim.UID, Since: claim.Since}
	}
	return nil
}
