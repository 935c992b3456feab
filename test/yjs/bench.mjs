// Node side of `make bench-engine`: runs the same B4 workloads as the Go
// benchmarks of internal/yjs on real yjs and prints one JSON object.
// Usage: node --expose-gc bench.mjs TRACE.json.gz [runs]
import * as Y from 'yjs'
import fs from 'node:fs'
import zlib from 'node:zlib'

const file = process.argv[2]
const runs = Number(process.argv[3] || 5)
const trace = JSON.parse(zlib.gunzipSync(fs.readFileSync(file)).toString('utf8'))
const gc = () => { if (global.gc) { global.gc(); global.gc() } }
let peakRss = 0
const sample = () => { peakRss = Math.max(peakRss, process.memoryUsage().rss) }

const replay = () => {
  // gc off, as the server runs (and as the Go benchmark does)
  const doc = new Y.Doc({ gc: false })
  doc.clientID = 1
  const text = doc.getText('text')
  for (const txn of trace.txns) {
    doc.transact(() => {
      for (const [pos, del, ins] of txn.patches) {
        if (del > 0) text.delete(pos, del)
        if (ins) text.insert(pos, ins)
      }
    })
  }
  return doc
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const time = (f, n) => {
  const ts = []
  let r
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    r = f()
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6)
    sample()
  }
  return { ms: median(ts), result: r }
}

const rep = time(replay, runs)
if (rep.result.getText('text').toString() !== trace.endContent) throw new Error('yjs replay does not reach endContent')
rep.result = null
// steady memory of one replayed document, measured outside the timing
gc()
const base = process.memoryUsage().heapUsed
const doc = replay()
gc()
const docHeap = process.memoryUsage().heapUsed - base
sample()

const enc = time(() => Y.encodeStateAsUpdate(doc), runs)
const state = enc.result

const dec = time(() => {
  const d = new Y.Doc({ gc: false })
  Y.applyUpdate(d, state)
  return d
}, runs)
if (dec.result.getText('text').toString() !== trace.endContent) throw new Error('decoded text differs')
dec.result = null
gc()
const base2 = process.memoryUsage().heapUsed
const decoded = new Y.Doc({ gc: false })
Y.applyUpdate(decoded, state)
gc()
const decodedHeap = process.memoryUsage().heapUsed - base2

// merge: updates of the first 20000 transactions, merged per 1000
const parts = []
{
  const d = new Y.Doc({ gc: false })
  d.clientID = 1
  const text = d.getText('text')
  let cur = null
  let n = 0
  d.on('update', (u) => {
    cur = cur === null ? u : Y.mergeUpdates([cur, u])
    if (++n % 1000 === 0) { parts.push(cur); cur = null }
  })
  for (const txn of trace.txns.slice(0, 20000)) {
    for (const [pos, del, ins] of txn.patches) {
      if (del > 0) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    }
  }
  if (cur !== null) parts.push(cur)
}
const merge = time(() => Y.mergeUpdates(parts), runs)

console.log(JSON.stringify({
  engine: 'yjs ' + JSON.parse(fs.readFileSync(new URL('./node_modules/yjs/package.json', import.meta.url))).version,
  node: process.version,
  replayMs: rep.ms,
  encodeMs: enc.ms,
  updateBytes: state.length,
  decodeMs: dec.ms,
  mergeMs: merge.ms,
  docHeapMB: docHeap / 1048576,
  decodedHeapMB: decodedHeap / 1048576,
  peakRssMB: peakRss / 1048576
}))
