package gateway

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// fuzzFrames builds a stream of whole, unmasked WebSocket frames from
// data (two bytes a frame: its opcode, and its payload length, some in
// the 16- and 64-bit length encodings) and returns it with the offset
// where each frame ends and where the first close frame ends (-1: none).
func fuzzFrames(data []byte) (stream []byte, ends []int, closeEnd int) {
	closeEnd = -1
	ops := []byte{0x1, 0x2, 0x0, 0x9, 0xA, 0x8}
	for i := 0; i+1 < len(data) && len(ends) < 64 && len(stream) < 100<<10; i += 2 {
		op := ops[int(data[i])%len(ops)]
		n := int(data[i+1])
		switch {
		case n == 255:
			n = 70000
		case n%7 == 0:
			n = 300 + 4*n
		}
		if op >= 0x8 {
			n = min(n, 125) // control frames carry at most 125 bytes
		}
		var h []byte
		switch {
		case n < 126:
			h = []byte{0x80 | op, byte(n)}
		case n < 1<<16:
			h = []byte{0x80 | op, 126, byte(n >> 8), byte(n)}
		default:
			h = []byte{0x80 | op, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		}
		stream = append(stream, h...)
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, n)...)
		ends = append(ends, len(stream))
		if op == 0x8 && closeEnd < 0 {
			closeEnd = len(stream)
		}
	}
	return stream, ends, closeEnd
}

// FuzzFrameTap: whatever frames the peer gateway sends, in whatever
// chunks, and whenever the shutdown comes, the client is passed a prefix
// of the peer's stream that ends where a frame ends, then this gateway's
// close frame (1001), unless the peer's own close frame was in it; or the
// whole stream. The tap never hangs and never cuts a frame.
func FuzzFrameTap(f *testing.F) {
	f.Add([]byte{1, 5, 1, 10, 2, 255}, []byte{3, 40, 200}, uint8(1))
	f.Add([]byte{5, 2, 1, 1}, []byte{1}, uint8(0))
	f.Add([]byte{1, 7, 1, 14}, []byte{9, 9, 9}, uint8(9))
	f.Fuzz(func(t *testing.T, frames, chunking []byte, stopAt uint8) {
		whole, ends, closeEnd := fuzzFrames(frames)
		var chunks [][]byte
		for i, rest := 0, whole; len(rest) > 0; i++ {
			n := 1 + 37*i
			if len(chunking) > 0 {
				n = 1 + int(chunking[i%len(chunking)])*int(chunking[i%len(chunking)])
			}
			n = min(n, len(rest))
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		pr, pw := io.Pipe()
		stop := make(chan struct{})
		tap := newFrameTap(peerPipe{pr}, stop)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			for i, c := range chunks {
				if i == int(stopAt) {
					close(stop)
				}
				if _, err := pw.Write(c); err != nil {
					return
				}
			}
			if int(stopAt) >= len(chunks) && int(stopAt) < 2*len(chunks)+1 {
				close(stop)
			}
			_ = pw.Close()
		}()
		type read struct {
			b   []byte
			err error
		}
		done := make(chan read, 1)
		go func() {
			b, err := io.ReadAll(tap)
			done <- read{b, err}
		}()
		var got read
		select {
		case got = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the tap passed nothing more for 10 s (%d frames, %d chunks, stop after %d)", len(ends), len(chunks), stopAt)
		}
		_ = tap.Close()
		<-wrote
		if got.err != nil {
			t.Fatalf("read: %v", got.err)
		}
		if bytes.Equal(got.b, whole) {
			return
		}
		cf := goingAwayFrame(shutdownReason)
		prefix, ok := bytes.CutSuffix(got.b, cf)
		if !ok || !bytes.HasPrefix(whole, prefix) {
			t.Fatalf("passed on %d bytes that are neither the peer's %d nor a prefix of them and the close frame", len(got.b), len(whole))
		}
		if len(prefix) > 0 && !containsInt(ends, len(prefix)) {
			t.Fatalf("the close frame follows byte %d, inside a frame (frames end at %v)", len(prefix), ends)
		}
		if closeEnd >= 0 && len(prefix) >= closeEnd {
			t.Fatalf("a close frame was added after the peer's own (at %d)", closeEnd)
		}
	})
}

// peerPipe is the peer gateway's side of a forwarded connection in a
// test: what the test writes into the pipe, nothing read back.
type peerPipe struct{ *io.PipeReader }

func (peerPipe) Write(p []byte) (int, error) { return len(p), nil }

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
