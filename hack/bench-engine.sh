#!/usr/bin/env bash
# Runs the Yjs engine benchmarks (internal/yjs, Go) and the same workloads on
# real yjs in Node, on this machine in one run, and prints a comparison
# table: time per operation, ratio, update size and memory.
#
# Usage: hack/bench-engine.sh [TRACE]   (default: ../shared/traces/automerge-paper.json.gz)
# Env:   BENCH_RUNS (default 5) runs per workload on each side.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
trace="${1:-$root/../shared/traces/automerge-paper.json.gz}"
runs="${BENCH_RUNS:-5}"
oracle="$root/test/yjs"

if [[ ! -f "$trace" ]]; then
  echo "bench-engine: trace not found: $trace" >&2
  exit 1
fi
if [[ ! -d "$oracle/node_modules/yjs" ]]; then
  echo "bench-engine: yjs not installed; run: npm ci --prefix test/yjs" >&2
  exit 1
fi
trace="$(cd "$(dirname "$trace")" && pwd)/$(basename "$trace")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

timecmd=()
if [[ -x /usr/bin/time ]]; then
  timecmd=(/usr/bin/time -f '%M' -o)
fi

echo "== Go engine (internal/yjs), $runs runs per benchmark" >&2
(cd "$root" && go test -c -o "$tmp/yjs.test" ./internal/yjs/)
if ((${#timecmd[@]})); then
  (cd "$root/internal/yjs" && YAWP_TRACES="$(dirname "$trace")" "${timecmd[@]}" "$tmp/go.rss" \
    "$tmp/yjs.test" -test.run '^$' -test.bench 'B4' -test.benchtime "${runs}x" -test.benchmem) | tee "$tmp/go.txt" >&2
else
  (cd "$root/internal/yjs" && YAWP_TRACES="$(dirname "$trace")" \
    "$tmp/yjs.test" -test.run '^$' -test.bench 'B4' -test.benchtime "${runs}x" -test.benchmem) | tee "$tmp/go.txt" >&2
  echo 0 >"$tmp/go.rss"
fi

echo "== yjs in Node $(node --version), $runs runs per workload" >&2
node --expose-gc "$oracle/bench.mjs" "$trace" "$runs" | tee "$tmp/node.json" >&2

node - "$tmp/go.txt" "$tmp/node.json" "$tmp/go.rss" <<'JS'
const fs = require('fs')
const [goTxt, nodeJson, goRss] = process.argv.slice(2)
const go = {}
for (const line of fs.readFileSync(goTxt, 'utf8').split('\n')) {
  const m = line.match(/^Benchmark(B4\w+)-\d+\s+\d+\s+(.*)$/)
  if (!m) continue
  const f = m[2].trim().split(/\s+/)
  const r = {}
  for (let i = 0; i + 1 < f.length; i += 2) r[f[i + 1]] = Number(f[i])
  go[m[1]] = r
}
const js = JSON.parse(fs.readFileSync(nodeJson, 'utf8'))
const ms = (ns) => ns / 1e6
const rows = [
  ['replay (local edits)', ms(go.B4Replay['ns/op']), js.replayMs],
  ['encodeStateAsUpdate', ms(go.B4Encode['ns/op']), js.encodeMs],
  ['decode into empty doc', ms(go.B4DecodeIntoEmpty['ns/op']), js.decodeMs],
  ['mergeUpdates (20 parts)', ms(go.B4Merge['ns/op']), js.mergeMs]
]
const pad = (s, n) => String(s).padEnd(n)
const lpad = (s, n) => String(s).padStart(n)
console.log(`B4 trace: Go engine vs ${js.engine} (Node ${js.node}), same machine, same run`)
console.log(pad('workload', 26) + lpad('ours ms', 10) + lpad('yjs ms', 10) + lpad('speed-up', 10))
for (const [name, ours, theirs] of rows) {
  console.log(pad(name, 26) + lpad(ours.toFixed(1), 10) + lpad(theirs.toFixed(1), 10) + lpad((theirs / ours).toFixed(1) + 'x', 10))
}
console.log(pad('full-state update bytes', 26) + lpad(go.B4Encode.bytes, 10) + lpad(js.updateBytes, 10) + lpad((go.B4Encode.bytes / js.updateBytes).toFixed(3), 10))
console.log(pad('replayed doc heap MB', 26) + lpad(go.B4Replay.docMB.toFixed(1), 10) + lpad(js.docHeapMB.toFixed(1), 10))
console.log(pad('decoded doc heap MB', 26) + lpad(go.B4DecodeIntoEmpty.docMB.toFixed(1), 10) + lpad(js.decodedHeapMB.toFixed(1), 10))
const rss = Number(fs.readFileSync(goRss, 'utf8').trim() || 0) / 1024
console.log(pad('process peak RSS MB', 26) + lpad(rss ? rss.toFixed(0) : 'n/a', 10) + lpad(js.peakRssMB.toFixed(0), 10))
console.log('(peak RSS includes the decoded trace held by each benchmark process)')
JS
