-- +goose Up
-- Divergence resolution and evidence gaps (issue 6).

-- Every divergence the syncer found between a document's representations,
-- or between what a client holds and what the server has, and how it was
-- resolved. A row without resolved_at is an open divergence; the shard's
-- report counts them per cohort, and counts the documents found diverged
-- under the cohort's current epoch as its mismatches.
--   kind out-of-band-write: the legacy row was changed outside the gateway
--        (found by verification, or by a save whose cached copy was stale);
--   kind foreign-history: a Yjs client sent a history the server does not
--        know (a document generation of its own), not CRDT-merged.
CREATE TABLE divergences (
    id           bigserial   PRIMARY KEY,
    doc_id       text        NOT NULL,
    shard        integer     NOT NULL,
    tenant       text        NOT NULL,
    kind         text        NOT NULL,
    cohort       text        NOT NULL DEFAULT '',
    epoch        bigint      NOT NULL DEFAULT 0,
    detected_at  timestamptz NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    resolved_at  timestamptz,
    resolution   text,
    ledger_seq   bigint
);
CREATE UNIQUE INDEX divergences_one_open ON divergences (doc_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX divergences_shard_cohort ON divergences (shard, cohort, epoch);

-- Operations a client announced (sync step 1) that the server never
-- received: one row per document and client, from when they were first
-- seen missing until an update covered them (closed_at). Rows open for
-- longer than a threshold are the shard's evidence gaps.
CREATE TABLE client_gaps (
    doc_id      text        NOT NULL,
    client      bigint      NOT NULL,
    shard       integer     NOT NULL,
    tenant      text        NOT NULL,
    clock_from  bigint      NOT NULL,
    clock_to    bigint      NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    closed_at   timestamptz,
    PRIMARY KEY (doc_id, client)
);
CREATE INDEX client_gaps_open ON client_gaps (shard, tenant) WHERE closed_at IS NULL;

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        GRANT SELECT, INSERT, UPDATE ON divergences, client_gaps TO yawp_service;
        GRANT USAGE ON SEQUENCE divergences_id_seq TO yawp_service;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE client_gaps;
DROP TABLE divergences;
