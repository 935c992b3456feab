-- +goose Up
-- Waits at most 2 s for a table's lock (internal/migrations tries again),
-- so saves do not queue behind it while a long reader holds the table
-- (added after release: an upgrade from before this migration held up
-- every save for as long as a backup read documents).
SET LOCAL lock_timeout = '2s';
-- Writes of the legacy row that bypass the syncer. The syncer marks its own
-- transactions (SET LOCAL yawp.syncer = 'on'); any other insert or update
-- of a documents row takes the next change_seq (which every syncer write
-- guards on, so a cached copy older than the row is never written over)
-- and is logged in outside_changes, which incremental verification reads
-- instead of scanning the shard. The syncer's own writes leave change_seq
-- as it was, so the row stays eligible for HOT updates and no index on it
-- is needed.
DROP TRIGGER documents_change_seq ON documents;
CREATE TRIGGER documents_change_seq BEFORE INSERT OR UPDATE ON documents
    FOR EACH ROW WHEN (current_setting('yawp.syncer', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION documents_bump_change_seq();

CREATE TABLE outside_changes (
    id         bigserial   PRIMARY KEY,
    doc_id     text        NOT NULL,
    shard      integer     NOT NULL,
    change_seq bigint      NOT NULL,
    op         text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outside_changes_shard ON outside_changes (shard, id);

-- +goose StatementBegin
-- SECURITY DEFINER: whoever writes the row (a legacy application's role)
-- gets it logged without privileges of its own on outside_changes.
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    NEW.change_seq := nextval('documents_change_seq');
    INSERT INTO outside_changes (doc_id, shard, change_seq, op) VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, TG_OP);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        GRANT SELECT, INSERT ON outside_changes TO yawp_service;
        GRANT USAGE ON SEQUENCE outside_changes_id_seq TO yawp_service;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := nextval('documents_change_seq');
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
DROP TABLE outside_changes;
DROP TRIGGER documents_change_seq ON documents;
CREATE TRIGGER documents_change_seq BEFORE INSERT OR UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_bump_change_seq();
