-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- Each write that bypasses the syncer records the epoch its school's
-- cohort was at (NULL: a school in no cohort, and every row before this
-- column). A divergence it causes is counted under that epoch: a row the
-- legacy application wrote while its cohort was rolled back to Legacy,
-- found only after the next attempt began, is not a mismatch of that
-- attempt. Adding a nullable column without a default rewrites nothing.
ALTER TABLE outside_changes ADD COLUMN epoch bigint;
-- The outside change a divergence was counted under the epoch of (NULL:
-- counted under the epoch it was found in): each excuses one divergence.
ALTER TABLE divergences ADD COLUMN outside_change bigint;

-- +goose StatementBegin
-- The epoch of the cohort a school belongs to (NULL: in none). Called by
-- the triggers below as their owner (they are SECURITY DEFINER).
CREATE FUNCTION school_cohort_epoch(school text) RETURNS bigint LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT c.epoch FROM cohort_members m JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort
    WHERE m.tenant = school
$$;
-- +goose StatementEnd

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

-- +goose Down
-- +goose StatementBegin
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
CREATE OR REPLACE FUNCTION documents_log_delete() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant)
    VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), TG_OP, OLD.tenant);
    RETURN OLD;
END;
$$;
-- +goose StatementEnd
DROP FUNCTION school_cohort_epoch(text);
ALTER TABLE divergences DROP COLUMN outside_change;
ALTER TABLE outside_changes DROP COLUMN epoch;
