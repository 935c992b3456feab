package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/placement"
)

// gatewayProc is a gateway process of shard 1 of 2 whose peer for shard 0
// is peer0: every sync connection for a document of shard 0 it forwards.
type gatewayProc struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startForwardingGateway(t *testing.T, peer0 string, args ...string) *gatewayProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "--listen="+addr, "--metrics-listen=", "--syncer=http://127.0.0.1:1",
		"--shards=2", "--shard=1", "--peers="+peer0+",http://"+addr, "--token-key=k")
	cmd.Args = append(cmd.Args, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "YAWP_") && !strings.HasPrefix(kv, "POD_NAME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "YAWP_GATEWAY_TEST_MAIN=1")
	g := &gatewayProc{addr: addr, cmd: cmd, exited: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(g.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-g.exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /healthz answer: %v\n%s", err, g.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func docOfShard0() string {
	for i := 0; ; i++ {
		if d := fmt.Sprintf("fwd-%d", i); placement.Shard(d, 2) == 0 {
			return d
		}
	}
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// rawPeerGateway stands for the document's gateway: it accepts the
// forwarded upgrade and hands the raw connection to serve.
func rawPeerGateway(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
			acceptKey(r.Header.Get("Sec-WebSocket-Key")), contract.SyncSubprotocol)
		serve(c, brw.Reader)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rawDial opens a sync WebSocket to addr by hand: the test reads and
// writes frames itself (or does not).
func rawDial(t *testing.T, addr, doc string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_, _ = fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		contract.PathSync, doc, addr, contract.SyncSubprotocol)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	return c, br
}

type frame struct {
	fin     bool
	op      byte
	payload []byte
}

func readFrame(br *bufio.Reader) (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return frame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var mask [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return frame{}, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return frame{}, err
	}
	if h[1]&0x80 != 0 {
		for i := range p {
			p[i] ^= mask[i%4]
		}
	}
	return frame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, payload: p}, nil
}

// serverFrame is an unmasked frame (the document's gateway's).
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch n := len(payload); {
	case n < 126:
		h = []byte{b0, byte(n)}
	case n < 1<<16:
		h = []byte{b0, 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{b0, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(h, payload...)
}

// clientFrame is a masked frame (the client's).
func clientFrame(op byte, payload []byte) []byte {
	mask := []byte{1, 2, 3, 4}
	h := []byte{0x80 | op, 0x80 | byte(len(payload))}
	h = append(h, mask...)
	for i, c := range payload {
		h = append(h, c^mask[i%4])
	}
	return h
}

func closeCode(f frame) int {
	if f.op != 0x8 || len(f.payload) < 2 {
		return -1
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

// TestForwardedClientNotAnsweringTheCloseDoesNotHoldShutdown: a student's
// tab is frozen (a laptop lid closed, a background tab): its TCP stays
// up, but it answers no close frame. The gateway forwarding its
// connection sends it 1001 at shutdown; it must not then wait for the
// rest of the grace period (20 s) for a reply that does not come, as the
// Hub does not (it gives a close handshake 5 s).
func TestForwardedClientNotAnsweringTheCloseDoesNotHoldShutdown(t *testing.T) {
	peerSaw := make(chan string, 1)
	peer := rawPeerGateway(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = c.Write(serverFrame(true, 0x2, []byte("hello")))
		f, err := readFrame(br)
		peerSaw <- fmt.Sprintf("frame %+v err %v", f, err)
	})
	a := startForwardingGateway(t, peer.URL)
	c, br := rawDial(t, a.addr, docOfShard0())
	if f, err := readFrame(br); err != nil || string(f.payload) != "hello" {
		t.Fatalf("first frame: %+v %v", f, err)
	}
	start := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	f, err := readFrame(br)
	if err != nil || closeCode(f) != contract.CloseGoingAway {
		t.Fatalf("after SIGTERM the client read %+v %v, want close 1001", f, err)
	}
	_ = c // the frozen client neither answers nor closes
	select {
	case <-a.exited:
	case <-time.After(25 * time.Second):
		t.Fatal("the gateway did not exit")
	}
	took := time.Since(start)
	t.Logf("the gateway exited %v after SIGTERM; the peer saw: %s", took.Round(time.Millisecond), <-peerSaw)
	if took > 8*time.Second {
		t.Errorf("the gateway took %v to exit: it waited for the frozen client's close reply until its deadline\n%s", took.Round(time.Millisecond), a.stderr.String())
	}
}

// TestForwardedCloseReplyReachesThePeer: a client answering the 1001
// (stock clients do) ends the forwarded connection at once; the
// document's gateway reads the client's own close frame (it sees the
// client go away cleanly) and nothing else after it.
func TestForwardedCloseReplyReachesThePeer(t *testing.T) {
	peerSaw := make(chan []frame, 1)
	peer := rawPeerGateway(t, func(c net.Conn, br *bufio.Reader) {
		// A fragmented message, its first fragment only before the
		// shutdown (the close may come between fragments), and a ping.
		_, _ = c.Write(serverFrame(false, 0x2, []byte("frag1")))
		_, _ = c.Write(serverFrame(true, 0x9, []byte("ping")))
		var got []frame
		for {
			f, err := readFrame(br)
			if err != nil {
				break
			}
			got = append(got, f)
			if f.op == 0x8 {
				_, _ = c.Write(serverFrame(true, 0x8, f.payload[:2]))
				break
			}
		}
		peerSaw <- got
	})
	a := startForwardingGateway(t, peer.URL)
	c, br := rawDial(t, a.addr, docOfShard0())
	for _, want := range []byte{0x2, 0x9} {
		f, err := readFrame(br)
		if err != nil || f.op != want {
			t.Fatalf("read %+v %v, want op %d", f, err, want)
		}
	}
	_, _ = c.Write(clientFrame(0xA, []byte("ping")))
	start := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	f, err := readFrame(br)
	if err != nil || closeCode(f) != contract.CloseGoingAway {
		t.Fatalf("after SIGTERM the client read %+v %v, want close 1001", f, err)
	}
	_, _ = c.Write(clientFrame(0x8, []byte{0x03, 0xe9}))
	if _, err := readFrame(br); err != io.EOF {
		t.Errorf("after the close the client read %v, want EOF", err)
	}
	c.Close()
	select {
	case <-a.exited:
	case <-time.After(25 * time.Second):
		t.Fatal("the gateway did not exit")
	}
	got := <-peerSaw
	t.Logf("exit %v after SIGTERM; the peer read %d frames: %+v", time.Since(start).Round(time.Millisecond), len(got), got)
	if len(got) == 0 || closeCode(got[len(got)-1]) != contract.CloseGoingAway {
		t.Errorf("the peer did not read the client's close: %+v", got)
	}
}
