package gateway

// Ending forwarded sync connections with a close frame. A connection for
// a document of another shard is forwarded byte for byte to that shard's
// gateway (SyncHandler); when this gateway exited, the client saw its
// connection cut without a close frame (1006, "abnormal closure"), like a
// crash, though nothing was wrong. ShutdownForwarded now ends each one
// with 1001 (going away: reconnect) at the end of the frame the document's
// gateway is sending, so the client gets every message it was sent up to
// there, whole, and then a clean close.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
)

// forwarded counts the forwarded sync connections and tells them when
// this gateway shuts down.
type forwarded struct {
	mu   sync.Mutex
	stop chan struct{} // closed by ShutdownForwarded
	open int
	idle chan struct{} // closed when open drops to 0 while stopping
}

func (f *forwarded) stopping() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	return f.stop
}

func (f *forwarded) begin() {
	f.mu.Lock()
	f.open++
	f.mu.Unlock()
}

func (f *forwarded) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open--; f.open == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// ShutdownForwarded ends the sync connections this gateway forwards to
// other shards' gateways with 1001, each after the frame it is passing,
// and returns when they are gone or ctx ends (then those left end
// without a close frame when the process exits). Call it after
// Hub.Shutdown, which stops new ones.
func (g *Gateway) ShutdownForwarded(ctx context.Context) error {
	stop := g.fwd.stopping()
	g.fwd.mu.Lock()
	select {
	case <-stop:
	default:
		close(stop)
	}
	if g.fwd.open == 0 {
		g.fwd.mu.Unlock()
		return nil
	}
	if g.fwd.idle == nil {
		g.fwd.idle = make(chan struct{})
	}
	idle := g.fwd.idle
	g.fwd.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// forwardTransport is the forwarding proxies' transport: the upgraded
// connection's stream from the peer gateway goes through a frameTap.
type forwardTransport struct {
	base http.RoundTripper
	stop <-chan struct{}
}

func (t forwardTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		tap := newFrameTap(rwc, t.stop)
		tap.client, _ = r.Context().Value(clientSideKey{}).(*clientSide)
		resp.Body = tap
	}
	return resp, nil
}

// closeReplyTimeout is how long a forwarded client has to answer the
// shutdown's close frame and hang up, as long as the Hub gives its own
// connections (coder/websocket's close handshake). After it the
// connection is cut: a frozen tab that answers nothing (its TCP still
// up) would otherwise hold the gateway's shutdown until its deadline.
const closeReplyTimeout = 5 * time.Second

type clientSideKey struct{}

// clientSide is the forwarded connection's ResponseWriter, which keeps
// the client's connection when the proxy takes it over, so that the
// frame tap can bound the wait for the client's close reply.
type clientSide struct {
	http.ResponseWriter
	mu   sync.Mutex
	conn net.Conn
}

func (c *clientSide) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(c.ResponseWriter).Hijack()
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return conn, brw, err
}

func (c *clientSide) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// streamEnded: the client was sent all it will be (the shutdown's close
// frame, or the peer's stream to its end). The proxy keeps passing the
// client's bytes on (its close reply reaches the document's gateway,
// which sees the client leave cleanly) until the client hangs up, or
// closeReplyTimeout.
func (c *clientSide) streamEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.SetReadDeadline(time.Now().Add(closeReplyTimeout))
	}
}

// frameTap passes the peer gateway's WebSocket frames to the client and
// knows where each ends. Once stop is closed it ends the stream at the
// next frame boundary with a close frame (1001) of its own.
type frameTap struct {
	rwc    io.ReadWriteCloser
	stop   <-chan struct{}
	client *clientSide // nil: no bound on the wait for the close reply
	chunks chan []byte
	done   chan struct{} // closed by Close: the pump stops
	once   sync.Once
	err    error // the peer's stream ended (set by Read)
	pumpEr error // set by the pump before it closes chunks

	buf  []byte // read from the peer, not yet passed on
	tail []byte // the close frame being passed on; then io.EOF
	hdr  []byte // the current frame's header, while incomplete
	left uint64 // payload bytes of the current frame still to pass
	over bool   // the close frame was passed on
	// peerClosed: the peer's own close frame was passed on; none is
	// added after it.
	peerClosed bool
}

func newFrameTap(rwc io.ReadWriteCloser, stop <-chan struct{}) *frameTap {
	t := &frameTap{rwc: rwc, stop: stop, chunks: make(chan []byte), done: make(chan struct{})}
	go t.pump()
	return t
}

func (t *frameTap) pump() {
	defer close(t.chunks)
	// Read into one buffer and pass on copies of what was read: a sync
	// message is tens of bytes, and a buffer of its own per read made
	// 32 KiB of garbage per message forwarded.
	b := make([]byte, 32<<10)
	for {
		n, err := t.rwc.Read(b)
		if n > 0 {
			select {
			case t.chunks <- bytes.Clone(b[:n]):
			case <-t.done:
				return
			}
		}
		if err != nil {
			t.pumpEr = err
			return
		}
	}
}

// boundary reports whether the bytes passed on so far end with a whole
// frame.
func (t *frameTap) boundary() bool { return len(t.hdr) == 0 && t.left == 0 }

func (t *frameTap) Read(p []byte) (int, error) {
	for {
		if t.over {
			return 0, io.EOF
		}
		if t.tail == nil && !t.peerClosed && t.boundary() {
			select {
			case <-t.stop:
				t.tail = goingAwayFrame(shutdownReason)
			default:
			}
		}
		if t.tail != nil {
			n := copy(p, t.tail)
			if t.tail = t.tail[n:]; len(t.tail) == 0 {
				t.tail, t.over = nil, true
				t.ended()
			}
			return n, nil
		}
		if len(t.buf) > 0 {
			return t.pass(p), nil
		}
		if t.err != nil {
			t.ended()
			return 0, t.err
		}
		stop := t.stop
		if !t.boundary() || t.peerClosed {
			stop = nil // a frame is half passed (wait for its end), or the peer closed
		}
		select {
		case <-stop:
		case c, ok := <-t.chunks:
			if !ok {
				t.err = t.pumpEr
				if t.err == nil {
					t.err = io.EOF
				}
				continue
			}
			t.buf = c
		}
	}
}

// ended: the client has been sent all it will be (see streamEnded).
func (t *frameTap) ended() {
	if t.client != nil {
		t.client.streamEnded()
	}
}

// pass copies into p what buf holds, up to the end of the current frame
// (so that a close frame can follow it), and advances over the frames.
func (t *frameTap) pass(p []byte) int {
	n := 0
	for n < len(p) && len(t.buf) > 0 {
		if t.left > 0 {
			k := min(uint64(len(p)-n), uint64(len(t.buf)), t.left)
			copy(p[n:], t.buf[:k])
			n += int(k)
			t.buf, t.left = t.buf[k:], t.left-k
			if t.left == 0 {
				return n // a frame ends here
			}
			continue
		}
		// A header byte.
		t.hdr = append(t.hdr, t.buf[0])
		p[n] = t.buf[0]
		n++
		t.buf = t.buf[1:]
		if size, ok := headerSize(t.hdr); ok && len(t.hdr) == size {
			t.left = payloadLen(t.hdr)
			if t.hdr[0]&0x0f == 0x8 {
				t.peerClosed = true
			}
			t.hdr = t.hdr[:0]
			if t.left == 0 {
				return n // an empty frame ends here
			}
		}
	}
	return n
}

// headerSize is a WebSocket frame header's length, known from its first
// two bytes.
func headerSize(h []byte) (int, bool) {
	if len(h) < 2 {
		return 0, false
	}
	size := 2
	switch h[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h[1]&0x80 != 0 {
		size += 4 // masking key
	}
	return size, true
}

func payloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return binary.BigEndian.Uint64(h[2:10])
	default:
		return uint64(l)
	}
}

// shutdownReason is the reason of the close frame ending a forwarded
// connection at shutdown.
const shutdownReason = "server shutting down; reconnect"

// goingAwayFrame is an unmasked close frame (the server's) with code 1001
// and reason (under 124 bytes).
func goingAwayFrame(reason string) []byte {
	const code = contract.CloseGoingAway
	b := []byte{0x88, byte(2 + len(reason)), byte(code >> 8), byte(code & 0xff)}
	return append(b, reason...)
}

func (t *frameTap) Write(p []byte) (int, error) { return t.rwc.Write(p) }

func (t *frameTap) Close() error {
	t.once.Do(func() { close(t.done) })
	return t.rwc.Close()
}
