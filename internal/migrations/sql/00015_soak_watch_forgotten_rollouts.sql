-- +goose Up
-- A soak counts only time the controller saw fresh reports. When it last
-- saw them for a cohort's epoch is kept here, so that a silence of the
-- shards while the controller was down, restarting or cut off from the
-- database (which their latest reports no longer show) still restarts the
-- soak. Its own table: rollout_cohorts' rows are held FOR SHARE by every
-- save, and this is written at every poll.
CREATE TABLE cohort_soak_watch (
    rollout text        NOT NULL,
    cohort  text        NOT NULL,
    epoch   bigint      NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (rollout, cohort),
    FOREIGN KEY (rollout, cohort) REFERENCES rollout_cohorts ON DELETE CASCADE
);

-- The Kubernetes objects (by UID) whose rollout a RollbackToLegacy deletion
-- forgot: a manager that read such an object before its deletion (an old
-- leader) may not register it again, which would bring back cohorts nobody
-- manages and refuse the database to the next rollout.
CREATE TABLE forgotten_rollouts (
    uid          text        PRIMARY KEY CHECK (uid <> ''),
    rollout      text        NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE forgotten_rollouts;
DROP TABLE cohort_soak_watch;
