-- +goose Up
-- The syncers should connect as a login role in yawp_service that owns
-- nothing (spec.database.serviceSecretRef): a table's owner may disable its
-- triggers, so a syncer whose role ran the migrations could switch off the
-- ledger's append-only trigger and cut or rewrite the ledger. yawp_service
-- may read and write every table of the schema but the ledger, which it may
-- only read and append to; no TRUNCATE anywhere, no DDL. Tables later
-- migrations create get the same (default privileges of the role that
-- migrates), the ledger's rule is kept below.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO yawp_service', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO yawp_service', current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO yawp_service', current_schema());
        REVOKE UPDATE, DELETE, TRUNCATE ON save_ledger FROM yawp_service;
        -- The migrations' own bookkeeping: readable, so a syncer can tell
        -- whether the schema is at its version and wait if not.
        REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM yawp_service;
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO yawp_service', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO yawp_service', current_schema());
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to yawp_service';
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yawp_service') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM yawp_service', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE USAGE, SELECT ON SEQUENCES FROM yawp_service', current_schema());
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot revoke from yawp_service';
END;
$$;
-- +goose StatementEnd
