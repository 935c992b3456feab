-- +goose Up
-- A revision made by a Yjs update is not stored as full text: the Yjs log
-- holds it, and the revision names the log position it materialises
-- (yjs_seq). Every revision records the sha256 of its text, so the legacy
-- row can be compared with the latest revision without the text. Rows
-- from before keep their content and a NULL sha (compared by content).
ALTER TABLE document_revisions ALTER COLUMN content DROP NOT NULL;
ALTER TABLE document_revisions ADD COLUMN yjs_seq bigint;
ALTER TABLE document_revisions ADD COLUMN content_sha256 text;
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_text_kept
    CHECK (content IS NOT NULL OR (yjs_seq IS NOT NULL AND content_sha256 IS NOT NULL));

-- +goose Down
ALTER TABLE document_revisions DROP CONSTRAINT document_revisions_text_kept;
ALTER TABLE document_revisions DROP COLUMN content_sha256;
ALTER TABLE document_revisions DROP COLUMN yjs_seq;
ALTER TABLE document_revisions ALTER COLUMN content SET NOT NULL;
