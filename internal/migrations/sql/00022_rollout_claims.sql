-- +goose Up
-- A lock on rollouts waited for at most 2 s (internal/migrations retries
-- the migration), as in 00021: the foreign key takes one the operator's
-- writes of the table wait for.
SET LOCAL lock_timeout = '2s';
-- The PersistenceRollout object that manages the rollout (its UID): the
-- first to register it, until it lets it go. Another object of the same
-- namespace and name (another cluster's operator given this database, or
-- this cluster's object deleted without its deletion reaching the
-- database) is refused: it registers nothing, decides nothing, gets no
-- gateway, and its deletion rolls nothing back. Before, two such objects
-- took the rollout from each other at every reconcile, each acting on its
-- own spec, and the syncers of whichever had lost it refused their shards
-- when restarted.
--
-- released_at: the object was deleted with deletionPolicy Retain and its
-- deletion recorded here, so the next object of the name takes the rollout
-- over at once. An object whose deletion was not recorded is taken over
-- only when a person says so (the persistence.yawp.dev/take-over-from
-- annotation naming its UID).
CREATE TABLE rollout_claims (
    rollout     text        PRIMARY KEY REFERENCES rollouts ON DELETE CASCADE,
    uid         text        NOT NULL CHECK (uid <> ''),
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
);

-- A rollout registered before this migration is claimed by the object
-- whose gateway template serves it (00021); one without that record is
-- claimed by the first object to register it after the upgrade.
INSERT INTO rollout_claims (rollout, uid, claimed_at)
SELECT rollout, uid, recorded_at FROM rollout_objects;

-- +goose Down
DROP TABLE rollout_claims;
