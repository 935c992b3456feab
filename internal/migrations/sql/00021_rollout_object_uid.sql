-- +goose Up
-- A lock on rollouts waited for at most 2 s (internal/migrations retries
-- the migration): the foreign key below takes one that the operator's
-- writes of the table wait for (not the saves' row locks).
SET LOCAL lock_timeout = '2s';
-- The PersistenceRollout object whose gateway template serves the rollout
-- (its UID), recorded by the operator once it has applied that template:
-- an object deleted with Retain and created again takes the rollout over
-- then, and one refused (another shard count) or whose template could not
-- be applied does not. A syncer is told its object's UID by the template
-- and takes no shard in a database whose rollout of the same namespace
-- and name another object serves: another cluster's, or another
-- environment's copy of this one's that its operator took over. No row:
-- not recorded yet (or by an operator built before this table), nothing
-- checked. A table of its own, apart from the rollout's row that every
-- save locks.
CREATE TABLE rollout_objects (
    rollout     text        PRIMARY KEY REFERENCES rollouts ON DELETE CASCADE,
    uid         text        NOT NULL CHECK (uid <> ''),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE rollout_objects;
