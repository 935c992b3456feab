-- +goose Up
-- Waits at most 2 s for a table's lock (internal/migrations tries again),
-- so saves do not queue behind it while a long reader holds the table
-- (added after release: an upgrade from before this migration held up
-- every save for as long as a backup read documents).
SET LOCAL lock_timeout = '2s';
-- Shard integrity (issue 6): the backfill's checkpoints and a change
-- sequence on the legacy rows for incremental verification.

-- Where each shard's backfill of a cohort got to: documents are migrated
-- in doc_id order; after_doc is the last one a committed backfill
-- transaction covered, written in that same transaction. A checkpoint
-- taken under another cohort epoch (the cohort was rolled back and
-- started again) is ignored: the scan starts over, and documents that
-- already have a Yjs representation are skipped.
CREATE TABLE backfill_checkpoints (
    rollout    text        NOT NULL,
    cohort     text        NOT NULL,
    shard      integer     NOT NULL CHECK (shard >= 0),
    epoch      bigint      NOT NULL,
    after_doc  text        NOT NULL,
    backfilled bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (rollout, cohort, shard)
);

-- Every insert or update of a legacy row, by the syncer or by anything
-- else (an out-of-band write), takes the next change_seq, so verification
-- can re-check just the documents changed since its last pass. Rows that
-- predate this migration have NULL (covered by full passes).
CREATE SEQUENCE documents_change_seq;
ALTER TABLE documents ADD COLUMN change_seq bigint;

-- +goose StatementBegin
CREATE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := nextval('documents_change_seq');
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER documents_change_seq BEFORE INSERT OR UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_bump_change_seq();

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        GRANT SELECT, INSERT, UPDATE ON backfill_checkpoints TO yawp_service;
        GRANT USAGE ON SEQUENCE documents_change_seq TO yawp_service;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER documents_change_seq ON documents;
DROP FUNCTION documents_bump_change_seq();
ALTER TABLE documents DROP COLUMN change_seq;
DROP SEQUENCE documents_change_seq;
DROP TABLE backfill_checkpoints;
