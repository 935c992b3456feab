-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- Where a document's row was deleted or created outside the gateway, in
-- its ledger: the last entry the ledger held for the ID then (0: none).
-- Evidence placed the ledger's entries before or after such a change by
-- comparing each entry's time (the syncer's clock) with the change's (the
-- database's): a syncer pod whose clock ran a minute behind the
-- database's told a school that its own saves after the legacy
-- application recreated the row were of the document deleted before, and
-- one running ahead did not see the replacement at all. The position is
-- read by the trigger in the writing statement, so it does not depend on
-- any clock. NULL: a change logged before this column, or an edit (only
-- deletions and creations bound a document). Adding a nullable column
-- without a default rewrites nothing.
ALTER TABLE outside_changes ADD COLUMN ledger_seq bigint;

-- +goose StatementBegin
-- The last ledger entry of a document ID (0: none). The ledger's primary
-- key (doc_id, seq) answers it from one index page.
CREATE FUNCTION ledger_head(doc text) RETURNS bigint LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT coalesce(max(seq), 0) FROM save_ledger WHERE doc_id = doc
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tenant IS DISTINCT FROM NEW.tenant THEN
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch, ledger_seq)
        VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), 'DELETE', OLD.tenant, school_cohort_epoch(OLD.tenant), ledger_head(OLD.doc_id));
        NEW.change_seq := nextval('documents_change_seq');
        INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch, ledger_seq)
        VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, 'INSERT', school_cohort_epoch(NEW.tenant), ledger_head(NEW.doc_id));
        RETURN NEW;
    END IF;
    NEW.change_seq := nextval('documents_change_seq');
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch, ledger_seq)
    VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, TG_OP, school_cohort_epoch(NEW.tenant),
            CASE WHEN TG_OP = 'INSERT' THEN ledger_head(NEW.doc_id) END);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_log_delete() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant, epoch, ledger_seq)
    VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), TG_OP, OLD.tenant, school_cohort_epoch(OLD.tenant), ledger_head(OLD.doc_id));
    RETURN OLD;
END;
$$;
-- +goose StatementEnd

-- +goose Down
SET LOCAL lock_timeout = '2s';
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
DROP FUNCTION ledger_head(text);
ALTER TABLE outside_changes DROP COLUMN ledger_seq;
