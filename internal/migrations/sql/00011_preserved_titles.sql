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
ALTER TABLE preserved_content DROP COLUMN title;
