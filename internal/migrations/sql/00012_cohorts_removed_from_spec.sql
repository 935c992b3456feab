-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- A cohort that leaves its rollout's spec (removed, or renamed, which
-- removes the old name) keeps its row and its schools: memberships are
-- never moved. But a school seen for the first time must not join it any
-- more, or it lands in a cohort the spec no longer has. The controller sets
-- removed_at when a cohort leaves the spec and clears it when the cohort
-- comes back under its name; placing a newly seen school skips cohorts
-- where it is set. NULL: in the spec (and every row before this column).
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE rollout_cohorts ADD COLUMN removed_at timestamptz;

-- +goose Down
ALTER TABLE rollout_cohorts DROP COLUMN removed_at;
