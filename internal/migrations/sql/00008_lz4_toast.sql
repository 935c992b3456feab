-- +goose Up
-- Waits at most 2 s for a table's lock (internal/migrations tries again),
-- so saves do not queue behind it while a long reader holds the table
-- (added after release: an upgrade from before this migration held up
-- every save for as long as a backup read documents).
SET LOCAL lock_timeout = '2s';
-- Document text over about 2 KiB is compressed by TOAST on every save (the
-- legacy row and, for legacy saves, the revision). With the default pglz
-- that compression was the largest single cost of a save in PostgreSQL
-- (18% of the backends' CPU in make bench-store); lz4 compresses several
-- times faster for a slightly larger result. Only values written from now
-- on use it; values already stored keep pglz and read as before. No table
-- is rewritten, so this is instant on a large store. A server built
-- without lz4, or older than 14, keeps pglz.
-- +goose StatementBegin
DO $$
BEGIN
    -- EXECUTE: a server older than 14 does not even parse SET COMPRESSION.
    EXECUTE 'ALTER TABLE documents ALTER COLUMN content SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE document_revisions ALTER COLUMN content SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE preserved_content ALTER COLUMN content SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE yjs_updates ALTER COLUMN update SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE yjs_snapshots ALTER COLUMN state SET COMPRESSION lz4, ALTER COLUMN text SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'this PostgreSQL has no lz4 TOAST compression: document text stays compressed with pglz';
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE 'ALTER TABLE documents ALTER COLUMN content SET COMPRESSION default';
    EXECUTE 'ALTER TABLE document_revisions ALTER COLUMN content SET COMPRESSION default';
    EXECUTE 'ALTER TABLE preserved_content ALTER COLUMN content SET COMPRESSION default';
    EXECUTE 'ALTER TABLE yjs_updates ALTER COLUMN update SET COMPRESSION default';
    EXECUTE 'ALTER TABLE yjs_snapshots ALTER COLUMN state SET COMPRESSION default, ALTER COLUMN text SET COMPRESSION default';
EXCEPTION WHEN syntax_error THEN
    NULL; -- older than 14: nothing was changed
END;
$$;
-- +goose StatementEnd
