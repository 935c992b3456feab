// Oracle for the differential tests of internal/yjs: drives real yjs over
// newline-delimited JSON on stdin/stdout. Binary values travel as base64.
import * as Y from 'yjs'
import * as readline from 'node:readline'

const docs = new Map()
const b64 = (u8) => Buffer.from(u8).toString('base64')
const unb64 = (s) => new Uint8Array(Buffer.from(s, 'base64'))

const attrsObject = (list) => {
  if (list == null) return undefined
  const o = {}
  for (const [k, v] of list) o[k] = v
  return o
}

const entry = (id) => {
  const e = docs.get(id)
  if (!e) throw new Error('unknown doc ' + id)
  return e
}

const drain = (e) => {
  const out = e.updates.map(b64)
  e.updates = []
  return out
}

const handlers = {
  new ({ doc, client, gc }) {
    const ydoc = new Y.Doc({ gc: !!gc })
    ydoc.clientID = client
    const e = { ydoc, text: ydoc.getText('t'), updates: [] }
    ydoc.on('update', (u) => e.updates.push(u))
    docs.set(doc, e)
    return {}
  },
  insert ({ doc, index, text, attrs }) {
    const e = entry(doc)
    e.text.insert(index, text, attrsObject(attrs))
    return { updates: drain(e) }
  },
  insertEmbed ({ doc, index, embed, attrs }) {
    const e = entry(doc)
    e.text.insertEmbed(index, embed, attrsObject(attrs))
    return { updates: drain(e) }
  },
  delete ({ doc, index, len }) {
    const e = entry(doc)
    e.text.delete(index, len)
    return { updates: drain(e) }
  },
  format ({ doc, index, len, attrs }) {
    const e = entry(doc)
    e.text.format(index, len, attrsObject(attrs))
    return { updates: drain(e) }
  },
  apply ({ doc, update }) {
    const e = entry(doc)
    Y.applyUpdate(e.ydoc, unb64(update))
    return { updates: drain(e) }
  },
  state ({ doc, sv }) {
    const e = entry(doc)
    return {
      text: e.text.toString(),
      len: e.text.length,
      delta: e.text.toDelta(),
      state: b64(Y.encodeStateAsUpdate(e.ydoc, sv ? unb64(sv) : undefined)),
      sv: b64(Y.encodeStateVector(e.ydoc)),
      pending: e.ydoc.store.pendingStructs !== null || e.ydoc.store.pendingDs !== null
    }
  },
  fresh ({ update, name }) {
    const ydoc = new Y.Doc({ gc: false })
    Y.applyUpdate(ydoc, unb64(update))
    return { text: ydoc.getText(name || 't').toString() }
  },
  merge ({ updates }) {
    return { update: b64(Y.mergeUpdates(updates.map(unb64))) }
  },
  diff ({ update, sv }) {
    return { update: b64(Y.diffUpdate(unb64(update), unb64(sv))) }
  },
  svFromUpdate ({ update }) {
    return { sv: b64(Y.encodeStateVectorFromUpdate(unb64(update))) }
  },
  // A document using every content type, built in several transactions;
  // returns every update and the final state (gc off and on).
  richDoc ({ gc }) {
    const ydoc = new Y.Doc({ gc: !!gc })
    ydoc.clientID = 4242
    const updates = []
    ydoc.on('update', (u) => updates.push(b64(u)))
    const text = ydoc.getText('t')
    text.insert(0, 'Rich text 😀 here', { bold: true })
    text.insertEmbed(3, { image: 'cat.png' }, { width: 30 })
    text.format(1, 4, { italic: true, color: '#f00' })
    const map = ydoc.getMap('meta')
    map.set('title', 'Essay')
    map.set('n', 42)
    map.set('f', 1.5)
    map.set('big', 2n ** 60n)
    map.set('nested', { a: [1, 'x', null, true, undefined], b: { c: -7 } })
    map.set('bin', new Uint8Array([1, 2, 3]))
    map.set('title', 'Essay v2')
    const arr = ydoc.getArray('list')
    arr.insert(0, [1, 2, 3, 'four', { five: 5 }])
    arr.delete(1, 2)
    const inner = new Y.Map()
    arr.push([inner])
    inner.set('k', 'v')
    const innerText = new Y.Text('nested text')
    inner.set('txt', innerText)
    innerText.delete(0, 7)
    const frag = ydoc.getXmlFragment('xml')
    const el = new Y.XmlElement('p')
    frag.insert(0, [el])
    el.setAttribute('class', 'lead')
    const xt = new Y.XmlText('hello xml')
    el.insert(0, [xt])
    xt.format(0, 5, { strong: true })
    el.insert(1, [new Y.XmlHook('hook1')])
    const sub = new Y.Doc({ guid: 'sub-guid', meta: { m: 1 } })
    map.set('subdoc', sub)
    arr.insert(0, [new Uint8Array([9, 9])])
    map.delete('n')
    return { updates, state: b64(Y.encodeStateAsUpdate(ydoc)), text: text.toString(), sv: b64(Y.encodeStateVector(ydoc)) }
  },
  drop ({ doc }) {
    docs.delete(doc)
    return {}
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  if (!line.trim()) return
  let req
  let res
  try {
    req = JSON.parse(line)
    const h = handlers[req.op]
    if (!h) throw new Error('unknown op ' + req.op)
    res = { id: req.id, ok: true, ...h(req) }
  } catch (err) {
    res = { id: req && req.id, ok: false, error: String(err && err.stack || err) }
  }
  process.stdout.write(JSON.stringify(res) + '\n')
})
