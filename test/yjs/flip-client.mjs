// A stock y-websocket client driven line by line from stdin (JSON
// commands), answering each with one JSON line on stdout, so a Go test can
// change a cohort's stage between its steps. argv[2]: {url, doc, token}.
//   {"op":"connect"}        connect and wait until synced
//   {"op":"disconnect"}     go offline
//   {"op":"replace","find":F,"with":W}  replace the first F in the text by W (delete, then insert)
//   {"op":"insert","at":N,"text":T}
//   {"op":"text"}           the client's text
//   {"op":"waitText","want":T,"timeoutMs":N}  wait until the text is T (answers with the text either way)
//   {"op":"quit"}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n') }
const doc = new Y.Doc()
const text = doc.getText('content')
const provider = new WebsocketProvider(cfg.url, cfg.doc, doc, {
  WebSocketPolyfill: WebSocket, params: { token: cfg.token }, disableBc: true, maxBackoffTime: 200, connect: false
})
const until = async (pred, ms) => {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > ms) return false
    await sleep(10)
  }
  return true
}
const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  const c = JSON.parse(line)
  try {
    switch (c.op) {
      case 'connect': {
        provider.connect()
        const ok = await until(() => provider.wsconnected && provider.synced, 20000)
        // let the client's answer to the server's step 1 be committed
        await sleep(300)
        out({ ok, text: text.toString() })
        break
      }
      case 'disconnect':
        provider.disconnect()
        await until(() => !provider.wsconnected, 5000)
        out({ ok: true, text: text.toString() })
        break
      case 'replace': {
        const i = text.toString().indexOf(c.find)
        if (i < 0) { out({ ok: false, error: 'not found' }); break }
        doc.transact(() => { text.delete(i, c.find.length); text.insert(i, c.with) })
        out({ ok: true, text: text.toString() })
        break
      }
      case 'insert':
        text.insert(c.at, c.text)
        out({ ok: true, text: text.toString() })
        break
      case 'text':
        out({ ok: true, text: text.toString() })
        break
      case 'waitText': {
        const ok = await until(() => text.toString() === c.want, c.timeoutMs || 5000)
        out({ ok, text: text.toString() })
        break
      }
      case 'quit':
        provider.destroy()
        out({ ok: true })
        process.exit(0)
    }
  } catch (e) {
    out({ ok: false, error: String(e && e.stack) })
  }
}
