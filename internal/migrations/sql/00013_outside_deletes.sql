-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- A documents row deleted outside the gateway is an outside change too:
-- logged in outside_changes, with the row's tenant (there is no row left
-- to find it by), so that incremental verification finds the document and
-- the syncer repairs it (where the Yjs side is authoritative it makes the
-- row again from it; where the legacy side is, the deletion stands).
-- Adding a nullable column without a default rewrites nothing; rows
-- before it have no tenant and are found through their documents row.
ALTER TABLE outside_changes ADD COLUMN tenant text;

-- +goose StatementBegin
CREATE FUNCTION documents_log_delete() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outside_changes (doc_id, shard, change_seq, op, tenant)
    VALUES (OLD.doc_id, OLD.shard, nextval('documents_change_seq'), TG_OP, OLD.tenant);
    RETURN OLD;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER documents_outside_delete AFTER DELETE ON documents
    FOR EACH ROW WHEN (current_setting('yawp.syncer', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION documents_log_delete();

-- +goose Down
DROP TRIGGER documents_outside_delete ON documents;
DROP FUNCTION documents_log_delete();
ALTER TABLE outside_changes DROP COLUMN tenant;
