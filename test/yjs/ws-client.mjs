// Real y-websocket clients against the sync gateway, driven by Go tests
// (internal/syncws). Reads one JSON object from argv[2]:
//   { url, urls?, doc, tokens: [..one per client..], edits, offlineEdits, timeoutMs }
// (with urls, client i connects to urls[i % urls.length]: several gateways)
// Scenario: every client connects and syncs; all edit concurrently; client
// 0 goes offline (disconnect), edits while the others keep editing, then
// reconnects; the script waits until every client has the same text and
// prints {"ok":true,"text":...,"texts":[...]} (or {"ok":false,"error":...}).
// Mode "refused": one client with tokens[0] connects and the script prints
// the close code and reason the server sent, and whether y-websocket gave
// up reconnecting ("closed" event).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const cfg = JSON.parse(process.argv[2])
const timeout = cfg.timeoutMs || 20000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n') }

const until = async (what, pred) => {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > timeout) throw new Error('timeout waiting for ' + what)
    await sleep(10)
  }
}

const connect = (token, i) => {
  const doc = new Y.Doc()
  const url = cfg.urls ? cfg.urls[i % cfg.urls.length] : cfg.url
  const provider = new WebsocketProvider(url, cfg.doc, doc, {
    WebSocketPolyfill: WebSocket,
    params: { token },
    disableBc: true,
    maxBackoffTime: 200
  })
  provider.awareness.setLocalStateField('user', { name: 'client' + i })
  const c = { doc, provider, text: doc.getText('content'), i, closes: [] }
  provider.on('connection-close', (ev) => { if (ev) c.closes.push({ code: ev.code, reason: ev.reason }) })
  provider.on('closed', (ev) => { c.terminal = ev })
  return c
}

// randomEdit inserts tag at a random place or, now and then, deletes a
// few characters; insertOnly keeps every tag whole (the offline client's,
// so the test can look for each of them after it reconnects).
const randomEdit = (c, tag, insertOnly = false) => {
  const t = c.text
  if (!insertOnly && t.length > 20 && Math.random() < 0.25) {
    const at = Math.floor(Math.random() * (t.length - 3))
    t.delete(at, 1 + Math.floor(Math.random() * 3))
  } else {
    t.insert(Math.floor(Math.random() * (t.length + 1)), tag)
  }
}

const main = async () => {
  if (cfg.mode === 'refused') {
    const c = connect(cfg.tokens[0], 0)
    await until('a close', () => c.closes.length > 0)
    await sleep(300)
    out({ ok: true, closes: c.closes, terminal: c.terminal || null, connected: c.provider.wsconnected })
    c.provider.destroy()
    return
  }
  const clients = cfg.tokens.map((t, i) => connect(t, i))
  await until('initial sync', () => clients.every((c) => c.provider.synced))
  const edits = cfg.edits || 20
  // concurrent edits
  await Promise.all(clients.map(async (c) => {
    for (let k = 0; k < edits; k++) {
      randomEdit(c, `[${c.i}.${k}]`)
      await sleep(Math.random() * 5)
    }
  }))
  // client 0 goes offline and edits while the others keep editing
  const off = clients[0]
  off.provider.disconnect()
  await until('offline', () => !off.provider.wsconnected)
  const offEdits = cfg.offlineEdits || 10
  await Promise.all(clients.map(async (c) => {
    for (let k = 0; k < (c === off ? offEdits : edits); k++) {
      randomEdit(c, c === off ? `{off.${k}}` : `(${c.i}.${k})`, c === off)
      await sleep(Math.random() * 5)
    }
  }))
  const offlineText = off.text.toString()
  off.provider.connect()
  await until('reconnect', () => off.provider.synced)
  const same = () => clients.every((c) => c.text.toString() === clients[0].text.toString())
  await until('convergence', same)
  const text = clients[0].text.toString()
  out({ ok: true, text, texts: clients.map((c) => c.text.toString()), offlineText, clientCloses: clients.map((c) => c.closes) })
  for (const c of clients) c.provider.destroy()
}

main().then(() => process.exit(0), (e) => { out({ ok: false, error: String(e && e.stack) }); process.exit(1) })
