-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): every save locks its rollout's row FOR SHARE, and a lock
-- request queued behind a long reader would hold them all behind it.
SET LOCAL lock_timeout = '2s';
-- The UID of the PersistenceRollout object that registered the rollout
-- (last: an object deleted with Retain and created again registers
-- anew). '' : registered before this column, or by a caller that named
-- no object. A syncer is told its rollout's UID by its pod's template and
-- takes no shard in a database whose rollout of the same namespace and
-- name another object registered: another cluster's, or another
-- environment's copy of this one's. Adding a column with a constant
-- default rewrites nothing.
ALTER TABLE rollouts ADD COLUMN uid text NOT NULL DEFAULT '';

-- +goose Down
SET LOCAL lock_timeout = '2s';
ALTER TABLE rollouts DROP COLUMN uid;
