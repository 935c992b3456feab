// Decodes y-websocket messages the way y-websocket and y-protocols do, for
// the differential test of internal/yprotocol. Reads JSON lines {"b":
// base64} on stdin, writes one JSON line per input.
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import * as authProtocol from 'y-protocols/auth'
import * as readline from 'node:readline'

const decodeMessage = (buf) => {
  const d = decoding.createDecoder(buf)
  const out = { ok: true, type: decoding.readVarUint(d) }
  switch (out.type) {
    case 0: { // messageSync: y-protocols/sync readSyncMessage
      out.sync = decoding.readVarUint(d)
      if (out.sync > 2) throw new Error('Unknown message type')
      out.payload = Buffer.from(decoding.readVarUint8Array(d)).toString('base64')
      break
    }
    case 1: { // messageAwareness: applyAwarenessUpdate
      const payload = decoding.readVarUint8Array(d)
      out.payload = Buffer.from(payload).toString('base64')
      const ad = decoding.createDecoder(payload)
      const n = decoding.readVarUint(ad)
      out.awareness = []
      for (let i = 0; i < n; i++) {
        const client = decoding.readVarUint(ad)
        const clock = decoding.readVarUint(ad)
        const text = decoding.readVarString(ad)
        JSON.parse(text)
        out.awareness.push({ client, clock, state: text })
      }
      out.awarenessTrailing = ad.arr.length - ad.pos
      break
    }
    case 2: { // messageAuth: readAuthMessage
      const t = decoding.readVarUint(d)
      if (t !== 0) throw new Error('unknown auth type')
      out.reason = decoding.readVarString(d)
      break
    }
    case 3: // messageQueryAwareness
      break
    default:
      throw new Error('Unable to compute message')
  }
  out.trailing = d.arr.length - d.pos
  out.reencoded = Buffer.from(reencode(out)).toString('base64')
  return out
}

// reencode writes the decoded message back with y-protocols' writers.
const reencode = (m) => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, m.type)
  switch (m.type) {
    case 0: {
      const payload = new Uint8Array(Buffer.from(m.payload, 'base64'))
      if (m.sync === 2) {
        syncProtocol.writeUpdate(e, payload)
      } else {
        encoding.writeVarUint(e, m.sync)
        encoding.writeVarUint8Array(e, payload)
      }
      break
    }
    case 1:
      encoding.writeVarUint8Array(e, new Uint8Array(Buffer.from(m.payload, 'base64')))
      break
    case 2:
      authProtocol.writePermissionDenied(e, m.reason)
      break
  }
  return encoding.toUint8Array(e)
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of rl) {
  if (!line) continue
  const { b } = JSON.parse(line)
  // a fresh buffer, so that reads past the end fail as they would on a
  // WebSocket message
  const buf = new Uint8Array(Buffer.from(b, 'base64'))
  let res
  try {
    res = decodeMessage(buf)
  } catch (e) {
    res = { ok: false, error: String(e && e.message) }
  }
  process.stdout.write(JSON.stringify(res) + '\n')
}
