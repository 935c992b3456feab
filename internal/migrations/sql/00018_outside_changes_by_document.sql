-- +goose NO TRANSACTION
-- +goose Up
-- outside_changes gets a row at every write the legacy application makes
-- behind the gateway, for as long as it runs: millions, in a school year.
-- It was indexed by shard only (incremental verification reads it so), and
-- every lookup by document read all of it: evidence of a document whose
-- row was deleted or replaced outside (evidence.go), whose school a
-- revision saved before the ledger is (read.go), and every divergence
-- recorded (repair.go, which also looks for a divergence naming the row).
-- At 3 million rows each such lookup took 0.1-0.3 s of a core and read
-- the whole table; by document it reads a few pages.
-- Built CONCURRENTLY, as 00010's: saves and the legacy application's
-- writes are not locked out while the log is read; a build cut short
-- leaves an invalid index, dropped and built again at the next start.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'outside_changes_doc' AND NOT i.indisvalid) THEN
        DROP INDEX outside_changes_doc;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'divergences_outside_change' AND NOT i.indisvalid) THEN
        DROP INDEX divergences_outside_change;
    END IF;
END;
$$;
-- +goose StatementEnd
-- No statement timeout of the role may cut the builds short (and leave
-- them to start over at every start).
SET statement_timeout = 0;
CREATE INDEX CONCURRENTLY IF NOT EXISTS outside_changes_doc ON outside_changes (doc_id, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS divergences_outside_change ON divergences (outside_change)
    WHERE outside_change IS NOT NULL;
RESET statement_timeout;

-- +goose Down
DROP INDEX IF EXISTS divergences_outside_change;
DROP INDEX IF EXISTS outside_changes_doc;
