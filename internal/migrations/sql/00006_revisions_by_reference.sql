-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- A revision made by a Yjs update is not stored as full text: the Yjs log
-- holds it, and the revision names the log position it materialises
-- (yjs_seq). Every revision records the sha256 of its text, so the legacy
-- row can be compared with the latest revision without the text. Rows
-- from before keep their content and a NULL sha (compared by content).
ALTER TABLE document_revisions ALTER COLUMN content DROP NOT NULL;
ALTER TABLE document_revisions ADD COLUMN yjs_seq bigint;
ALTER TABLE document_revisions ADD COLUMN content_sha256 text;
-- NOT VALID: every existing row has its content, so none needs checking,
-- and checking them would scan the whole history under an exclusive lock,
-- with every save waiting; new rows are checked.
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_text_kept
    CHECK (content IS NOT NULL OR (yjs_seq IS NOT NULL AND content_sha256 IS NOT NULL)) NOT VALID;

-- +goose Down
ALTER TABLE document_revisions DROP CONSTRAINT document_revisions_text_kept;
ALTER TABLE document_revisions DROP COLUMN content_sha256;
ALTER TABLE document_revisions DROP COLUMN yjs_seq;
ALTER TABLE document_revisions ALTER COLUMN content SET NOT NULL;
