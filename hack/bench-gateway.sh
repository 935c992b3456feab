#!/usr/bin/env bash
# Benchmarks the sync gateway (gateway + syncer processes, every update
# committed to a durable PostgreSQL before it is relayed) against Hocuspocus
# (@hocuspocus/server, default settings: documents only in memory) under the
# same real yjs client load, on this machine in one run: updates/s, p50/p99
# update-to-relay latency and memory per open document, with the ratio.
#
# Usage: hack/bench-gateway.sh [-docs 20] [-writers 3] [-procs 1] [-rate 5] [-max=true] [-duration 15s] [-warmup 2s] [-bin DIR] [-keep] [-pprof 127.0.0.1:6070] [-lanes N] [-stage LocalFirst|Complete|LegacyRetired] [-pgstats]
#   Two load phases per server on the same clients: -rate edits/s per writer
#   (p50/p99 latency), then a closed loop (updates/s: each writer edits again
#   as soon as the observer saw its previous edit).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v node >/dev/null || { echo "bench-gateway: node not found" >&2; exit 1; }
if [[ ! -d "$root/test/yjs/node_modules/@hocuspocus/server" ]]; then
  echo "bench-gateway: npm packages not installed; run: make deps (npm ci --prefix test/yjs)" >&2
  exit 1
fi
cd "$root"
go run ./hack/benchgateway "$@"
