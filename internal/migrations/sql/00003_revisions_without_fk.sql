-- +goose Up
-- Revisions are written in the same group commit as their document and
-- documents are never deleted: the per-row foreign-key check only cost
-- every save a lookup and a row lock.
ALTER TABLE document_revisions DROP CONSTRAINT IF EXISTS document_revisions_doc_id_fkey;

-- +goose Down
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_doc_id_fkey
    FOREIGN KEY (doc_id) REFERENCES documents;
