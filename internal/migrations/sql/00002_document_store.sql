-- +goose Up
-- The document store: our model of the existing write-through store
-- (documents and their save history), the Yjs representation (append-only
-- update log and a compacted snapshot), the save-evidence ledger and shard
-- ownership. The syncer of a document's shard is the only writer of all of
-- them (internal/store).

-- The legacy write-through store: one row per document. revision counts
-- saves; content is the legacy representation.
CREATE TABLE documents (
    doc_id      text        PRIMARY KEY CHECK (length(doc_id) BETWEEN 1 AND 128),
    tenant      text        NOT NULL CHECK (length(tenant) BETWEEN 1 AND 128),
    owner       text        NOT NULL,
    title       text        NOT NULL DEFAULT '',
    content     text        NOT NULL DEFAULT '',
    revision    bigint      NOT NULL CHECK (revision >= 1),
    shard       integer     NOT NULL CHECK (shard >= 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX documents_tenant ON documents (tenant, doc_id);
CREATE INDEX documents_shard_tenant ON documents (shard, tenant);

-- The legacy store's save history: every revision's content, kept.
CREATE TABLE document_revisions (
    doc_id      text        NOT NULL REFERENCES documents,
    revision    bigint      NOT NULL,
    title       text        NOT NULL,
    content     text        NOT NULL,
    saved_by    text        NOT NULL,
    saved_at    timestamptz NOT NULL,
    stage       text        NOT NULL,
    epoch       bigint      NOT NULL,
    shard_epoch bigint      NOT NULL,
    PRIMARY KEY (doc_id, revision)
);

-- Content a save supplied that did not become a revision (a conflicting
-- three-way merge keeps the client's text here), never deleted.
CREATE TABLE preserved_content (
    doc_id        text        NOT NULL,
    preserved_id  bigint      NOT NULL,
    base_revision bigint      NOT NULL,
    content       text        NOT NULL,
    reason        text        NOT NULL,
    saved_by      text        NOT NULL,
    saved_at      timestamptz NOT NULL,
    PRIMARY KEY (doc_id, preserved_id)
);

-- Idempotency keys of legacy requests and the response they got.
CREATE TABLE save_requests (
    doc_id    text        NOT NULL,
    idem_key  text        NOT NULL,
    result    jsonb       NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (doc_id, idem_key)
);

-- The Yjs representation: an append-only log of v1 updates per document.
CREATE TABLE yjs_updates (
    doc_id      text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    generation  bigint      NOT NULL,
    update      bytea       NOT NULL,
    origin      text        NOT NULL,
    shard_epoch bigint      NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

-- The compacted Yjs state of a document up to upto_seq of its log, its
-- materialised text and its generation (a document re-created from text
-- gets a new generation).
CREATE TABLE yjs_snapshots (
    doc_id       text        PRIMARY KEY,
    generation   bigint      NOT NULL,
    upto_seq     bigint      NOT NULL,
    state        bytea       NOT NULL,
    state_vector bytea       NOT NULL,
    text         text        NOT NULL,
    at           timestamptz NOT NULL
);

-- The save-evidence ledger: per document a hash chain, hash =
-- sha256(prev_hash || body) where body is the canonical JSON entry.
CREATE TABLE save_ledger (
    doc_id     text        NOT NULL,
    seq        bigint      NOT NULL CHECK (seq >= 1),
    kind       text        NOT NULL,
    tenant     text        NOT NULL,
    at         timestamptz NOT NULL,
    body       text        NOT NULL,
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

-- +goose StatementBegin
CREATE FUNCTION save_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'save_ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER save_ledger_no_update BEFORE UPDATE OR DELETE ON save_ledger
    FOR EACH ROW EXECUTE FUNCTION save_ledger_append_only();
CREATE TRIGGER save_ledger_no_truncate BEFORE TRUNCATE ON save_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION save_ledger_append_only();

-- Shard ownership: the syncer holding the shard's advisory lock bumps epoch
-- on takeover; every save transaction checks it FOR SHARE.
CREATE TABLE shard_leases (
    shard       integer     PRIMARY KEY CHECK (shard >= 0),
    epoch       bigint      NOT NULL,
    holder      text        NOT NULL,
    acquired_at timestamptz NOT NULL
);

-- The role services should run as: everything but changing the ledger.
-- Roles are cluster-wide, so concurrent migrations of other databases may
-- race to create it.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        BEGIN
            CREATE ROLE yawp_service NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot create role yawp_service; ledger protected by trigger only';
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        GRANT SELECT, INSERT, UPDATE ON documents, document_revisions, preserved_content,
            save_requests, yjs_updates, yjs_snapshots, shard_leases TO yawp_service;
        GRANT SELECT, INSERT ON save_ledger TO yawp_service;
        REVOKE UPDATE, DELETE, TRUNCATE ON save_ledger FROM yawp_service;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE shard_leases;
DROP TABLE save_ledger;
DROP FUNCTION save_ledger_append_only();
DROP TABLE yjs_snapshots;
DROP TABLE yjs_updates;
DROP TABLE save_requests;
DROP TABLE preserved_content;
DROP TABLE document_revisions;
DROP TABLE documents;
