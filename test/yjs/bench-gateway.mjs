// The load generator of `make bench-gateway` (hack/benchgateway): real yjs
// clients against one sync server, with the same load whichever server it
// is. Reads one JSON object from argv[2]:
//
//   { server: "ours" | "hocuspocus",
//     url,            ours: ws://host:port/v1/sync (y-websocket appends /<doc>)
//                     hocuspocus: ws://host:port
//     docs: [id..],   the documents, each opened by writers+1 clients
//     tokens: [[..]], per document writers+1 bearer tokens (ours; ignored by
//                     Hocuspocus, whose default settings authenticate nobody)
//     writers,        writer clients per document
//     phases: [rate..], the load phases run one after the other on the same
//                     clients, each a warm-up, a measured window and a drain;
//                     rate is edits per second per writer (open loop), 0 a
//                     closed loop (each writer edits again as soon as the
//                     observer saw its previous edit: the most the relay
//                     carries)
//     warmupMs, durationMs, drainMs, connectTimeoutMs }
//
// Clients: ours are stock y-websocket WebsocketProviders (the protocol our
// gateway serves). Hocuspocus frames every message with the document name
// and waits for an authentication message before it syncs, which a stock
// y-websocket client never sends, so its clients are Hocuspocus's own
// HocuspocusProvider (pinned beside the server). Both wrap the same yjs
// Y.Doc; each client has its own WebSocket.
//
// Every document has `writers` writer clients and one observer client. A
// writer appends a small tag "<w.seq>" to the shared Y.Text "content"; the
// observer parses the tags out of the remote inserts it receives. Latency is
// from the writer's local edit to the observer's Y.Text event (same process,
// one clock), for the edits made in the measured window; throughput counts
// the edits the observers received within the window (after the warm-up).
//
// Talks to the driver in lines: prints {"event":"open",...} when every
// client is connected and synced, and waits for a line on stdin (the driver
// samples server memory); runs each phase, drained until every edit
// reached the observer and every client holds the observer's text, then
// prints {"event":"phase",...} and waits for a line (the driver runs the
// other server's phase meanwhile); after the last, prints
// {"event":"loaded",...} and waits for a line again; then disconnects and
// prints {"event":"result",...} with one entry per phase. Errors print
// {"event":"error","error":...} and exit 1.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'

// Every y-websocket provider adds a process 'exit' listener: many clients
// in one process are expected here, not a leak.
process.setMaxListeners(0)

const cfg = JSON.parse(process.argv[2] || '{}')
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n') }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const now = () => performance.now()

const check = () => {
  const bad = []
  if (cfg.server !== 'ours' && cfg.server !== 'hocuspocus') bad.push(`server must be "ours" or "hocuspocus", got ${JSON.stringify(cfg.server)}`)
  if (typeof cfg.url !== 'string' || !/^wss?:\/\//.test(cfg.url)) bad.push('url must be a ws:// URL')
  if (!Array.isArray(cfg.docs) || cfg.docs.length === 0) bad.push('docs must name at least one document')
  if (!Number.isInteger(cfg.writers) || cfg.writers < 1) bad.push('writers must be a positive integer')
  if (!Array.isArray(cfg.phases) || cfg.phases.length === 0 || cfg.phases.some((r) => typeof r !== 'number' || !(r >= 0))) {
    bad.push('phases must list at least one rate >= 0 (0: closed loop)')
  }
  if (!(cfg.durationMs > 0)) bad.push('durationMs must be positive')
  if (cfg.server === 'ours' && (!Array.isArray(cfg.tokens) || cfg.tokens.length !== (cfg.docs || []).length ||
      cfg.tokens.some((t) => !Array.isArray(t) || t.length !== cfg.writers + 1))) {
    bad.push('tokens must hold writers+1 tokens per document')
  }
  if (bad.length) throw new Error('bad config: ' + bad.join('; '))
}

// stdin lines from the driver, one per wait.
const lines = []
const waiters = []
const rl = createInterface({ input: process.stdin })
rl.on('line', (l) => { const w = waiters.shift(); if (w) w(l); else lines.push(l) })
rl.on('close', () => { for (const w of waiters.splice(0)) w(null) })
const nextLine = () => lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve) => waiters.push(resolve))
const waitDriver = async () => {
  if ((await nextLine()) === null) throw new Error('the driver closed stdin')
}

const tagRe = /<(\d+)\.(\d+)>/g

// A client: one Y.Doc, one provider, one WebSocket.
const connect = (docID, token, name) => {
  const doc = new Y.Doc()
  let provider
  if (cfg.server === 'ours') {
    provider = new WebsocketProvider(cfg.url, docID, doc, {
      WebSocketPolyfill: WebSocket,
      params: { token },
      disableBc: true
    })
  } else {
    provider = new HocuspocusProvider({ url: cfg.url, name: docID, document: doc, token: token || '', WebSocketPolyfill: WebSocket })
  }
  provider.awareness.setLocalStateField('user', { name })
  const c = { doc, provider, text: doc.getText('content'), closes: 0 }
  provider.on(cfg.server === 'ours' ? 'connection-close' : 'close', () => { c.closes++ })
  c.synced = () => cfg.server === 'ours' ? provider.synced : provider.isSynced
  return c
}

const until = async (what, timeoutMs, pred) => {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > timeoutMs) throw new Error('timeout waiting for ' + what)
    await sleep(20)
  }
}

const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1) + 0.5))] : NaN

const main = async () => {
  check()
  const W = cfg.writers
  const warmupMs = cfg.warmupMs ?? 2000
  const drainMs = cfg.drainMs ?? 10000
  const connectTimeout = cfg.connectTimeoutMs ?? 60000
  const docs = cfg.docs.map((id, d) => {
    const toks = cfg.tokens ? cfg.tokens[d] : []
    const writers = []
    for (let w = 0; w < W; w++) writers.push(connect(id, toks[w], `writer-${d}-${w}`))
    const observer = connect(id, toks[W], `observer-${d}`)
    // sentAt[w][seq]: when writer w made edit seq (ms, performance.now()).
    return { id, writers, observer, sentAt: writers.map(() => []), seq: writers.map(() => 0), next: writers.map(() => 0) }
  })
  const clients = docs.flatMap((x) => [...x.writers, x.observer])
  const t0 = Date.now()
  await until('every client to connect and sync', connectTimeout, () => clients.every((c) => c.synced()))
  const connectMs = Date.now() - t0
  out({ event: 'open', clients: clients.length, connectMs })
  await waitDriver()

  let sent = 0
  let observed = 0
  // ph is the phase running (or draining) now.
  let ph = null

  const edit = (x, w) => {
    const seq = x.seq[w]++
    const t = now()
    x.sentAt[w][seq] = t
    sent++
    ph.sent++
    if (t >= ph.windowStart && t < ph.windowEnd) ph.sentInWindow++
    const text = x.writers[w].text
    text.insert(text.length, `<${w}.${seq}>`)
  }

  for (const x of docs) {
    x.observer.text.observe((ev) => {
      if (ev.transaction.local) return
      const t = now()
      for (const op of ev.delta) {
        if (typeof op.insert !== 'string') continue
        for (const m of op.insert.matchAll(tagRe)) {
          const w = Number(m[1])
          const seq = Number(m[2])
          const at = x.sentAt[w] && x.sentAt[w][seq]
          if (at === undefined) continue
          observed++
          if (t >= ph.windowStart && t < ph.windowEnd) ph.observedInWindow++
          if (at >= ph.windowStart && at < ph.windowEnd) ph.lat.push(t - at)
          if (ph.rate === 0 && ph.running && seq === x.seq[w] - 1) {
            const p = ph
            setImmediate(() => { if (p.running) edit(x, w) })
          }
        }
      }
    })
  }

  const texts = () => docs.every((x) => x.writers.every((c) => c.text.toString() === x.observer.text.toString()))
  const runPhase = async (rate) => {
    const loadStart = now()
    const cpu0 = process.cpuUsage()
    ph = { rate, running: true, windowStart: loadStart + warmupMs, windowEnd: loadStart + warmupMs + cfg.durationMs, lat: [], sent: 0, sentInWindow: 0, observedInWindow: 0 }
    let ticker
    if (rate === 0) {
      for (const x of docs) for (let w = 0; w < W; w++) edit(x, w)
    } else {
      // Open loop: writer w's k-th edit is due at its offset + k/rate,
      // offsets spread over one period so the writers do not edit in step.
      const period = 1000 / rate
      const all = docs.flatMap((x) => x.writers.map((_, w) => [x, w]))
      all.forEach(([x, w], i) => { x.next[w] = loadStart + period * i / all.length })
      ticker = setInterval(() => {
        const t = now()
        for (const [x, w] of all) {
          while (ph.running && x.next[w] <= t) {
            edit(x, w)
            x.next[w] += period
          }
        }
      }, 1)
    }
    await sleep(ph.windowEnd - now())
    // This process's CPU time over the warm-up and window: near 100% of
    // one core means the load generator, not the server, set the pace.
    const cpu = process.cpuUsage(cpu0)
    const cpuPercent = 100 * (cpu.user + cpu.system) / 1000 / (now() - loadStart)
    ph.running = false
    if (ticker) clearInterval(ticker)
    // Drain: every edit reaches the observer, and every client converges
    // on the observer's text.
    const drainStart = now()
    while (!(observed >= sent && texts()) && now() - drainStart < drainMs) await sleep(20)
    ph.lat.sort((a, b) => a - b)
    const secs = cfg.durationMs / 1000
    return {
      rate,
      sent: ph.sent,
      sentPerSec: ph.sentInWindow / secs,
      updatesPerSec: ph.observedInWindow / secs,
      samples: ph.lat.length,
      p50Ms: pct(ph.lat, 0.5),
      p99Ms: pct(ph.lat, 0.99),
      maxMs: ph.lat.length ? ph.lat[ph.lat.length - 1] : NaN,
      drainMs: now() - drainStart,
      loadgenCpuPercent: cpuPercent,
      // every sample (ms, sorted), for the driver to merge the processes'
      lat: ph.lat.map((v) => Math.round(v * 100) / 100)
    }
  }

  const phases = []
  for (const rate of cfg.phases) {
    const r = await runPhase(rate)
    phases.push(r)
    out({ event: 'phase', rate, updatesPerSec: r.updatesPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms })
    await waitDriver()
  }
  const lost = sent - observed
  const diverged = docs.filter((x) => !x.writers.every((c) => c.text.toString() === x.observer.text.toString())).length
  out({ event: 'loaded', sent, observed, lost, diverged })
  await waitDriver()

  const closes = clients.reduce((n, c) => n + c.closes, 0)
  for (const c of clients) c.provider.destroy()
  out({
    event: 'result',
    server: cfg.server,
    client: cfg.server === 'ours' ? 'y-websocket WebsocketProvider' : '@hocuspocus/provider HocuspocusProvider',
    docs: docs.length,
    writers: W,
    windowMs: cfg.durationMs,
    connectMs,
    sent,
    observed,
    lost,
    diverged,
    reconnects: closes,
    phases,
    textBytes: docs.reduce((n, x) => n + x.observer.text.length, 0)
  })
}

// Exit only once stdout is flushed: a pipe is written asynchronously, and
// the result line (every latency sample) is long.
const exit = (code) => process.stdout.write('', () => process.exit(code))
main().then(() => exit(0), (e) => { out({ event: 'error', error: String((e && e.stack) || e) }); exit(1) })
