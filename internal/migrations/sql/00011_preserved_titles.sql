-- +goose Up
-- A table lock waited for at most 2 s (internal/migrations retries the
-- migration): a lock request queued behind a long reader would hold every
-- save on the table behind it.
SET LOCAL lock_timeout = '2s';
-- A save kept aside whole (its three-way merge conflicted on the text or
-- on the title) keeps its title here too: the document keeps its own
-- title then, and the save's title must stay readable beside its text.
-- NULL: the save sent no title, or the row predates this column. Adding a
-- nullable column without a default rewrites nothing.
ALTER TABLE preserved_content ADD COLUMN title text;

-- +goose Down
-- A preserved title is a student's (the title of a save kept aside); a
-- schema without the column cannot hold it, so going down is refused
-- while any exist.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM preserved_content WHERE title IS NOT NULL) THEN
        RAISE EXCEPTION 'preserved_content holds titles of saves kept aside; they cannot be represented before migration 11';
    END IF;
END;
$$;
-- +goose StatementEnd
ALTER TABLE preserved_content DROP COLUMN title;
