-- +goose Up
-- Incremental verification lists only the documents of a shard changed
-- since its last pass, by change_seq.
CREATE INDEX documents_shard_change_seq ON documents (shard, change_seq);

-- +goose Down
DROP INDEX documents_shard_change_seq;
