-- +goose NO TRANSACTION
-- +goose Up
-- A keyed save's idempotency record moves into the revision the save made
-- (every save that is remembered makes exactly one): the key and the
-- answer it got, as the JSON text the syncer wrote. One heap row, its index
-- entry, a statement per group commit and a jsonb parse fewer per save
-- (legacy saves at 16 writers ran 10-16% faster without the record at all).
-- Keys recorded before stay in save_requests and are still honoured: a
-- document with any is never saved on the one-round-trip path, which
-- detects a repeated key only by this index.
-- The table lock is waited for at most 2 s (internal/migrations retries
-- the migration): a lock request queued behind a long reader would hold
-- every save on the table behind it. Not for the concurrent build below,
-- which waits for older transactions by design and locks out no save.
SET lock_timeout = '2s';
ALTER TABLE document_revisions ADD COLUMN IF NOT EXISTS idem_key text,
    ADD COLUMN IF NOT EXISTS idem_result text;
RESET lock_timeout;
-- Built CONCURRENTLY: a large history is not locked against saves of other
-- syncers while it is read. A build that failed before left an invalid
-- index behind; it is dropped and built again.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'document_revisions_idem' AND NOT i.indisvalid) THEN
        DROP INDEX document_revisions_idem;
    END IF;
END;
$$;
-- +goose StatementEnd
-- The build takes as long as reading the history does: no statement
-- timeout of the role may cut it short (and leave it to start over at every
-- start). Other processes starting meanwhile wait for the migration lock
-- (internal/migrations: up to 30 minutes).
SET statement_timeout = 0;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS document_revisions_idem
    ON document_revisions (doc_id, idem_key) WHERE idem_key IS NOT NULL;
RESET statement_timeout;

-- +goose Down
INSERT INTO save_requests (doc_id, idem_key, result, at)
    SELECT doc_id, idem_key, idem_result::jsonb, saved_at FROM document_revisions WHERE idem_key IS NOT NULL
    ON CONFLICT DO NOTHING;
DROP INDEX IF EXISTS document_revisions_idem;
ALTER TABLE document_revisions DROP COLUMN IF EXISTS idem_result, DROP COLUMN IF EXISTS idem_key;
