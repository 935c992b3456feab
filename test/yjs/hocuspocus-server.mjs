// Hocuspocus (@hocuspocus/server) with its default settings, the
// comparison server of `make bench-gateway` (hack/benchgateway). No
// extension is configured, so documents live only in this process's
// memory: an update is relayed without being stored anywhere.
//
// Usage: node hocuspocus-server.mjs PORT   (0: any free port, named in the ready line)
//
// Prints one line {"ready":true,"port":N,"pid":N,"version":"..."} on stdout
// once it listens. GET /bench/memory answers
// {"rss":bytes,"heapUsed":bytes,"documents":n,"connections":n}: the
// process memory the benchmark divides by the open documents (the driver
// also reads VmRSS from /proc itself). Every other request gets the
// server's default answer. SIGTERM or SIGINT stops it (Hocuspocus's default
// stopOnSignals).
import { readFileSync } from 'node:fs'
import { Server } from '@hocuspocus/server'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`hocuspocus-server: usage: node hocuspocus-server.mjs PORT (got ${JSON.stringify(process.argv[2])})\n`)
  process.exit(2)
}
const version = JSON.parse(readFileSync(new URL('./node_modules/@hocuspocus/server/package.json', import.meta.url), 'utf8')).version

// Settings: the port, no start banner (the ready line below is what the
// driver reads) and the memory report; everything else is Hocuspocus's
// default. (Server 3.4.4 listens on every interface whatever `address`
// says: it hands Node `address`, not `host`.)
const server = new Server({
  port,
  quiet: true,
  // The one hook: a read-only memory report for the benchmark driver. It
  // does not touch documents or connections.
  async onRequest ({ request, response, instance }) {
    if (request.method !== 'GET' || request.url !== '/bench/memory') return
    const m = process.memoryUsage()
    response.writeHead(200, { 'Content-Type': 'application/json' })
    response.end(JSON.stringify({
      rss: m.rss,
      heapUsed: m.heapUsed,
      documents: instance.getDocumentsCount(),
      connections: instance.getConnectionsCount()
    }))
    // A rejection without an error tells Hocuspocus the request is answered.
    throw null // eslint-disable-line no-throw-literal
  }
})

await server.listen()
process.stdout.write(JSON.stringify({ ready: true, port: server.address.port, pid: process.pid, version }) + '\n')
