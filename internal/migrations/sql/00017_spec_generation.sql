-- +goose Up
SET LOCAL lock_timeout = '2s';
-- The newest spec of the rollout object (its UID and metadata.generation)
-- a manager has acted on. A manager that read an older generation (an old
-- leader held up while a person edited the rollout and the new leader acted
-- on the edit) may not write cohort marks or stage changes decided on it:
-- the epoch compare-and-set cannot tell, since a Hold or a pause writes
-- nothing that moves the epoch. '' and 0: nothing recorded yet.
ALTER TABLE rollouts ADD COLUMN spec_uid text NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN spec_generation bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE rollouts DROP COLUMN spec_generation;
ALTER TABLE rollouts DROP COLUMN spec_uid;
