-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- A legacy save's revision no longer copies the whole text when the one
-- before it is known: it stores the splice that turns the previous
-- revision's text into its own (keep splice_head bytes of the start and
-- splice_tail bytes of the end of revision - 1, put splice_text between),
-- and the sha256 of the result. Every 32nd revision of a chain, and any
-- revision whose splice is not much smaller than its text, is stored
-- whole, so a revision is rebuilt from at most 32 rows (revtext.go). A
-- save of an 8 KiB document wrote the text twice (row and revision),
-- about 14 KiB of WAL; now once.
ALTER TABLE document_revisions
    ADD COLUMN splice_head integer,
    ADD COLUMN splice_tail integer,
    ADD COLUMN splice_text text;
-- The new rule only adds a way to keep the text, so every existing row
-- already satisfies it: NOT VALID skips re-checking them (which would scan
-- the whole history under an exclusive lock); new rows are checked.
ALTER TABLE document_revisions DROP CONSTRAINT document_revisions_text_kept;
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_text_kept CHECK (
    content IS NOT NULL
    OR (yjs_seq IS NOT NULL AND content_sha256 IS NOT NULL)
    OR (splice_text IS NOT NULL AND splice_head IS NOT NULL AND splice_tail IS NOT NULL
        AND splice_head >= 0 AND splice_tail >= 0 AND content_sha256 IS NOT NULL)) NOT VALID;

-- +goose Down
-- Splice rows have no text of their own; a schema without the columns
-- cannot read them, so going down is refused while any exist.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM document_revisions WHERE splice_text IS NOT NULL) THEN
        RAISE EXCEPTION 'document_revisions holds revisions stored as splices; they cannot be represented before migration 9';
    END IF;
END;
$$;
-- +goose StatementEnd
ALTER TABLE document_revisions DROP CONSTRAINT document_revisions_text_kept;
ALTER TABLE document_revisions ADD CONSTRAINT document_revisions_text_kept
    CHECK (content IS NOT NULL OR (yjs_seq IS NOT NULL AND content_sha256 IS NOT NULL));
ALTER TABLE document_revisions DROP COLUMN splice_text, DROP COLUMN splice_tail, DROP COLUMN splice_head;
