#!/usr/bin/env bash
# Benchmarks the syncer's store (internal/store) against PostgreSQL itself:
# starts a durable throwaway PostgreSQL (pgharness, fsync on), measures
# pgbench's single-row commit rate and the store's legacy saves and Yjs
# updates (each acknowledged only once committed) at 1, 16 and 64
# concurrent writers in the same run, and prints a table with the ratio.
#
# Usage: hack/bench-store.sh [-duration 5s] [-writers 1,16,64] [-pgbench /usr/bin/pgbench]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v psql >/dev/null || { echo "bench-store: psql not found (install postgresql-client)" >&2; exit 1; }
[[ -x /usr/bin/pgbench ]] || command -v pgbench >/dev/null || { echo "bench-store: pgbench not found" >&2; exit 1; }
cd "$root"
go run ./hack/benchstore "$@"
