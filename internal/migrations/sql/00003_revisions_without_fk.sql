-- +goose Up
-- Waits at most 2 s for a table's lock (internal/migrations tries again),
-- so saves do not queue behind it while a long reader holds the table
-- (added after release: an upgrade from before this migration held up
-- every save for as long as a backup read documents).
SET LOCAL lock_timeout = '2s';
-- Revisions are written in the same group commit as their document and
-- documents are never deleted: the per-row foreign-key check only cost
-- every save a lookup and a row lock.
ALTER TABLE document_revisions DROP CONSTRAINT IF EXISTS document_revisions_doc_id_fkey;

-- +goose Down
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_doc_id_fkey
    FOREIGN KEY (doc_id) REFERENCES documents;
