-- +goose Up
-- The control tables of a rollout: which cohort each school belongs to, the
-- stage and epoch of every cohort, and what each shard reports. The
-- controller writes stages; syncers read them FOR SHARE in every save
-- transaction and write their reports.

-- One row per PersistenceRollout (namespace/name). epoch is the rollout's
-- last epoch: every stage change increments it in the same transaction, so
-- epochs grow strictly in commit order, and a shard that read epoch E has
-- seen every stage change up to E.
CREATE TABLE rollouts (
    rollout     text        PRIMARY KEY,
    shards      integer     NOT NULL CHECK (shards BETWEEN 1 AND 64),
    epoch       bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every school the data plane has seen. Syncers register a tenant on its
-- first save; freezing a bucket cohort selects from here.
CREATE TABLE tenants (
    tenant      text        PRIMARY KEY CHECK (length(tenant) BETWEEN 1 AND 128),
    bucket      smallint    NOT NULL CHECK (bucket BETWEEN 0 AND 99),
    first_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollout_cohorts (
    rollout         text        NOT NULL REFERENCES rollouts ON DELETE CASCADE,
    cohort          text        NOT NULL,
    position        integer     NOT NULL,
    -- {"tenants": [...]} or {"buckets": {"from": F, "to": T}}: the rule the
    -- membership was frozen with, kept so a tenant first seen later can be
    -- placed by the same rule.
    selector        jsonb       NOT NULL,
    stage           text        NOT NULL CHECK (stage IN ('Legacy', 'DualWrite', 'Backfill', 'Verify', 'LocalFirst', 'Complete', 'LegacyRetired')),
    epoch           bigint      NOT NULL,
    attempt         integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- How the attempt ended: '' while it runs, 'RolledBack' or 'Halted'.
    outcome         text        NOT NULL DEFAULT '' CHECK (outcome IN ('', 'RolledBack', 'Halted')),
    stage_since     timestamptz NOT NULL,
    soak_started_at timestamptz NOT NULL,
    frozen_at       timestamptz NOT NULL,
    PRIMARY KEY (rollout, cohort)
);

-- Frozen membership: a tenant belongs to at most one cohort, ever; it is
-- never re-bucketed.
CREATE TABLE cohort_members (
    tenant    text        PRIMARY KEY,
    rollout   text        NOT NULL,
    cohort    text        NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (rollout, cohort) REFERENCES rollout_cohorts ON DELETE CASCADE
);
CREATE INDEX cohort_members_cohort ON cohort_members (rollout, cohort);

-- Every stage change, for audits; never updated.
CREATE TABLE stage_changes (
    id         bigserial   PRIMARY KEY,
    rollout    text        NOT NULL,
    cohort     text        NOT NULL,
    from_stage text        NOT NULL,
    to_stage   text        NOT NULL,
    epoch      bigint      NOT NULL,
    attempt    integer     NOT NULL,
    outcome    text        NOT NULL DEFAULT '',
    reason     text        NOT NULL,
    message    text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL
);
CREATE INDEX stage_changes_rollout ON stage_changes (rollout, id);

-- The latest report of each shard: the rollout epoch it has observed.
CREATE TABLE shard_reports (
    rollout        text        NOT NULL REFERENCES rollouts ON DELETE CASCADE,
    shard          integer     NOT NULL CHECK (shard >= 0),
    observed_epoch bigint      NOT NULL,
    holder         text        NOT NULL DEFAULT '',
    reported_at    timestamptz NOT NULL,
    PRIMARY KEY (rollout, shard)
);

-- The latest counts of each shard for each cohort, computed under the
-- cohort epoch named in the row.
CREATE TABLE shard_cohort_reports (
    rollout           text        NOT NULL,
    shard             integer     NOT NULL CHECK (shard >= 0),
    cohort            text        NOT NULL,
    epoch             bigint      NOT NULL,
    documents         bigint      NOT NULL DEFAULT 0 CHECK (documents >= 0),
    backfilled        bigint      NOT NULL DEFAULT 0 CHECK (backfilled >= 0),
    backfill_complete boolean     NOT NULL DEFAULT false,
    verified          bigint      NOT NULL DEFAULT 0 CHECK (verified >= 0),
    mismatched        bigint      NOT NULL DEFAULT 0 CHECK (mismatched >= 0),
    open_divergences  bigint      NOT NULL DEFAULT 0 CHECK (open_divergences >= 0),
    evidence_gaps     bigint      NOT NULL DEFAULT 0 CHECK (evidence_gaps >= 0),
    sample_mismatches text[]      NOT NULL DEFAULT '{}',
    reported_at       timestamptz NOT NULL,
    PRIMARY KEY (rollout, shard, cohort),
    FOREIGN KEY (rollout, cohort) REFERENCES rollout_cohorts ON DELETE CASCADE
);

-- +goose Down
DROP TABLE shard_cohort_reports;
DROP TABLE shard_reports;
DROP TABLE stage_changes;
DROP TABLE cohort_members;
DROP TABLE rollout_cohorts;
DROP TABLE tenants;
DROP TABLE rollouts;
