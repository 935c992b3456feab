#!/usr/bin/env bash
# Benchmarks the syncer's store (internal/store) against PostgreSQL itself:
# starts a durable throwaway PostgreSQL (pgharness, fsync on), measures
# pgbench's single-row commit rate and the store's legacy saves and Yjs
# updates (each acknowledged only once committed) at 1, 16, 64 and 256
# concurrent writers in the same run, and prints a table with the ratio.
# Without arguments it runs twice: documents starting empty, then
# documents starting with 8 KiB of text (a student's essay), where every
# save rewrites the legacy row's whole text; there pgbench also rewrites a
# document-sized row per transaction, the write-through store's own write
# alone, as the second peer. Both runs end with the disk each kind of save
# took per table (docs/operations.md, "Sizing PostgreSQL's disk").
#
# Beside each kind of save, pgbench also writes that kind's own rows (the
# document row, the revision, the ledger entry; for Yjs the update too) in
# one statement and one commit per save: what a save costs PostgreSQL
# without the store and without grouping.
#
# Usage: hack/bench-store.sh [-duration 5s] [-writers 1,16,64,256] [-doc-bytes 0] [-pgbench /usr/bin/pgbench]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v psql >/dev/null || { echo "bench-store: psql not found (install postgresql-client)" >&2; exit 1; }
[[ -x /usr/bin/pgbench ]] || command -v pgbench >/dev/null || { echo "bench-store: pgbench not found" >&2; exit 1; }
cd "$root"
go build -o "$root/bin/benchstore" ./hack/benchstore
if [[ $# -gt 0 ]]; then
	exec "$root/bin/benchstore" "$@"
fi
"$root/bin/benchstore"
echo
"$root/bin/benchstore" -doc-bytes 8192 -writers 1,16,64
