-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- write of the legacy application's behind it.
SET LOCAL lock_timeout = '2s';
-- Where a document's ledger stood when the legacy application deleted its
-- row, or created a new document at its ID: the last entry the ledger held
-- for the ID then (0: none). Evidence placed the ledger's entries before
-- or after such a change by comparing each entry's time (the syncer's
-- clock) with the change's (the database's): a syncer whose clock ran a
-- minute behind told a school that its own saves after the row was created
-- again were of the deleted document, and one running ahead did not see
-- the replacement at all. The position is read by the trigger of the
-- writing statement, so it depends on no clock.
--
-- On outside_changes, for deletions (NULL: logged before this column, or
-- not a deletion), with the deleted row's created_at. Adding nullable
-- columns without a default rewrites nothing.
ALTER TABLE outside_changes ADD COLUMN ledger_seq bigint;
ALTER TABLE outside_changes ADD COLUMN row_created_at timestamptz;

-- The latest new document the legacy application created at each ID: a
-- row inserted (not an upsert that found the row there: an AFTER INSERT
-- trigger does not fire for one) that is not the row just deleted put
-- back (the same school and created_at: a save done as DELETE and INSERT,
-- a deletion undone), or a row given to another school in place. A
-- document whose ledger has nothing of its own after ledger_seq is a new
-- document with the ID of an older one, not that one changed. change_seq
-- is the row's when created (the documents row's own), at when
-- (PostgreSQL's clock).
CREATE TABLE outside_creations (
    doc_id     text        PRIMARY KEY,
    ledger_seq bigint      NOT NULL,
    change_seq bigint      NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
-- The last ledger entry of a document ID (0: none). The ledger's primary
-- key (doc_id, seq) answers it from one index page.
CREATE FUNCTION ledger_head(doc text) RETURNS bigint LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT coalesce(max(seq), 0) FROM save_ledger WHERE doc_id = doc
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION note_outside_creation(doc text, seq bigint) RETURNS void LANGUAGE sql
SET search_path FROM CURRENT AS $$
    INSERT INTO outside_creations (doc_id, ledger_seq, change_seq) VALUES (doc, ledger_head(doc), seq)
    ON CONFLICT (doc_id) DO UPDATE SET ledger_seq = EXCLUDED.ledger_seq, change_seq = EXCLUDED.change_seq, at = EXCLUDED.at
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tenant IS DISTINCT FROM NEW.tenant THEN
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch, ledger_seq, row_created_at)
        VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), 'DELETE', OLD.tenant, school_cohort_epoch(OLD.tenant),
                ledger_head(OLD.doc_id), OLD.created_at);
        NEW.change_seq := nextval('documents_change_seq');
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch)
        VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, 'INSERT', school_cohort_epoch(NEW.tenant));
        PERFORM note_outside_creation(NEW.doc_id, NEW.change_seq);
        RETURN NEW;
    END IF;
    NEW.change_seq := nextval('documents_change_seq');
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch)
    VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, TG_OP, school_cohort_epoch(NEW.tenant));
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_log_delete() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch, ledger_seq, row_created_at)
    VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), TG_OP, OLD.tenant, school_cohort_epoch(OLD.tenant),
            ledger_head(OLD.doc_id), OLD.created_at);
    RETURN OLD;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION documents_log_creation() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM (SELECT tenant, row_created_at FROM outside_changes
                                  WHERE doc_id = NEW.doc_id AND op = 'DELETE' ORDER BY id DESC LIMIT 1) d
                   WHERE d.tenant = NEW.tenant AND d.row_created_at = NEW.created_at) THEN
        PERFORM note_outside_creation(NEW.doc_id, NEW.change_seq);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER documents_outside_creation AFTER INSERT ON documents
    FOR EACH ROW WHEN (current_setting('yawp.syncer', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION documents_log_creation();

-- +goose Down
SET LOCAL lock_timeout = '2s';
DROP TRIGGER documents_outside_creation ON documents;
DROP FUNCTION documents_log_creation();
-- The functions as migrations 00019 and 00014 left them.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tenant IS DISTINCT FROM NEW.tenant THEN
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch)
        VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), 'DELETE', OLD.tenant, school_cohort_epoch(OLD.tenant));
        NEW.change_seq := nextval('documents_change_seq');
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch)
        VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, 'INSERT', school_cohort_epoch(NEW.tenant));
        RETURN NEW;
    END IF;
    NEW.change_seq := nextval('documents_change_seq');
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch)
    VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, TG_OP, school_cohort_epoch(NEW.tenant));
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_log_delete() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch)
    VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), TG_OP, OLD.tenant, school_cohort_epoch(OLD.tenant));
    RETURN OLD;
END;
$$;
-- +goose StatementEnd
DROP FUNCTION note_outside_creation(text, bigint);
DROP FUNCTION ledger_head(text);
DROP TABLE outside_creations;
ALTER TABLE outside_changes DROP COLUMN row_created_at;
ALTER TABLE outside_changes DROP COLUMN ledger_seq;
