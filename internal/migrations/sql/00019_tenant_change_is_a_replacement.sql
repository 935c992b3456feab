-- +goose Up
-- A documents row whose tenant the legacy application changes in place
-- (a document moved to another school) was logged as an UPDATE, like an
-- edit of its text: the syncer took it as the first school's document
-- changed, so the second school was shown the first school's ledger
-- (request IDs, users, refusals) and history in evidence, and the first
-- school was told its document was still there. A change of tenant is now
-- logged as what it is to both schools: the row deleted for the old
-- tenant, then created for the new one, exactly as a DELETE and an INSERT
-- by the legacy application are (00007, 00013, 00014), so every reader of
-- outside_changes (loading, evidence, revision reads, verification) sees a
-- replacement. Each keeps its own change_seq; the row holds the second.
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION documents_bump_change_seq() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    NEW.change_seq := nextval('documents_change_seq');
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, epoch)
    VALUES (NEW.doc_id, NEW.shard, NEW.change_seq, TG_OP, school_cohort_epoch(NEW.tenant));
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
