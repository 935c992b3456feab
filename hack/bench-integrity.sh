#!/usr/bin/env bash
# Benchmarks the syncer's shard integrity work against PostgreSQL itself: on
# a durable throwaway PostgreSQL (pgharness, fsync on) it creates N
# legacy-only documents, then measures a plain SELECT scan of them, the
# backfill (every document given its Yjs genesis, fenced and ledgered, in
# the syncer's batches) and a full verification pass (legacy text against
# the materialised Yjs text), in documents per second, with the ratios.
#
# Usage: hack/bench-integrity.sh [-docs 10000,100000] [-size 2000] [-backfill-batch 100]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
go run ./hack/benchintegrity "$@"
