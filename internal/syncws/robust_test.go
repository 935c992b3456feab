package syncws

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestGarbageStorm: random and mutated frames get a 4400/4413 close with a
// reason, never crash the hub, and change nothing.
func TestGarbageStorm(t *testing.T) {
	s := newTestServer(t, Limits{MaxMessageBytes: 4096, UpdatesPerSecond: 1e6, UpdateBurst: 1e6})
	tok := token(t, "school-a", "ada")
	e := newEditor(9)
	valid := [][]byte{
		yprotocol.EncodeUpdate(e.insert(t, "hello")),
		yprotocol.EncodeSyncStep1(e.doc.EncodeStateVector()),
		yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: 9, Clock: 1, State: []byte(`{"a":1}`)}})),
	}
	rng := rand.New(rand.NewPCG(7, 7))
	codes := map[websocket.StatusCode]int{}
	for i := 0; i < 150; i++ {
		m := append([]byte(nil), valid[rng.IntN(len(valid))]...)
		switch rng.IntN(4) {
		case 0:
			m[rng.IntN(len(m))] ^= byte(1 + rng.IntN(255))
		case 1:
			m = m[:rng.IntN(len(m))]
		case 2:
			m = append(m, byte(rng.IntN(256)))
		case 3:
			m = make([]byte, rng.IntN(64))
			for j := range m {
				m[j] = byte(rng.IntN(256))
			}
		}
		c := dial(t, s.wsURL("storm")+"?token="+tok, nil)
		if err := c.send(m); err != nil {
			t.Fatal(err)
		}
		// A message that happens to be valid gets answered; send a
		// certainly malformed one after it so every connection closes.
		if err := c.send([]byte{0, 7}); err != nil {
			t.Fatal(err)
		}
		code, reason := c.closeStatus()
		if (code != contract.CloseMalformed && code != contract.CloseTooLarge) || reason == "" {
			t.Fatalf("frame %x: close %d %q", m, code, reason)
		}
		codes[code]++
		_ = c.ws.CloseNow()
	}
	t.Logf("closes: %v", codes)
	// Only a frame that was a valid update can have changed the text, and
	// then only to the editor's own text.
	if txt := s.be.Text("storm"); txt != "" && txt != "hello" {
		t.Fatalf("garbage changed the document: %q", txt)
	}
	// still serving
	c := dial(t, s.wsURL("storm")+"?token="+tok, nil)
	handshake(t, c, newEditor(10))
}

func TestDocumentTooLarge(t *testing.T) {
	s := newTestServer(t, Limits{})
	s.be.MaxDocBytes = 100
	c := dial(t, s.wsURL("big")+"?token="+token(t, "school-a", "ada"), nil)
	e := newEditor(4)
	if err := c.send(yprotocol.EncodeUpdate(e.insert(t, string(make([]byte, 200))))); err != nil {
		t.Fatal(err)
	}
	if code, reason := c.closeStatus(); code != contract.CloseTooLarge {
		t.Fatalf("%d %q", code, reason)
	}
	if s.be.Text("big") != "" {
		t.Fatal("oversize document stored")
	}
}

// TestRateBackpressure: a burst over the bucket is slowed down, not
// refused, while the wait stays under RateWait.
func TestRateBackpressure(t *testing.T) {
	s := newTestServer(t, Limits{UpdatesPerSecond: 200, UpdateBurst: 5, RateWait: time.Second})
	c := dial(t, s.wsURL("rate")+"?token="+token(t, "school-a", "ada"), nil)
	e := newEditor(4)
	start := time.Now()
	for i := 0; i < 25; i++ {
		if err := c.send(yprotocol.EncodeUpdate(e.insert(t, "x"))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all applied", func() bool { return len(s.be.Text("rate")) == 25 })
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("20 updates over the burst took only %v at 200/s", d)
	}
	if n := len(s.be.Rejections()); n != 0 {
		t.Fatalf("%d rejections", n)
	}
}

// failing makes ApplyUpdate fail transiently.
type failing struct {
	*MemoryBackend
	fail atomic.Bool
}

func (f *failing) ApplyUpdate(ctx context.Context, s Session, u []byte) ([]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("syncer unavailable")
	}
	return f.MemoryBackend.ApplyUpdate(ctx, s, u)
}

func TestBackendFailureCloses4500(t *testing.T) {
	be := &failing{MemoryBackend: NewMemoryBackend()}
	be.fail.Store(true)
	hub := NewHub(Config{Backend: be, Auth: TokenAuth{Key: testKey, Tenants: be}})
	s := newTestServer(t, Limits{})
	s.Config.Handler = hub
	t.Cleanup(func() { _ = hub.Shutdown(context.Background()) }) // after the clients' cleanups
	c := dial(t, s.wsURL("d")+"?token="+token(t, "school-a", "ada"), nil)
	e := newEditor(4)
	if err := c.send(yprotocol.EncodeUpdate(e.insert(t, "x"))); err != nil {
		t.Fatal(err)
	}
	if code, reason := c.closeStatus(); code != contract.CloseInternalError {
		t.Fatalf("%d %q", code, reason)
	}
	// Reconnect after recovery: the client's handshake pushes the update.
	be.fail.Store(false)
	c = dial(t, s.wsURL("d")+"?token="+token(t, "school-a", "ada"), nil)
	handshake(t, c, e)
	waitFor(t, "recovered", func() bool { return be.Text("d") == "x" })
}

type observed struct {
	*MemoryBackend
	mu     sync.Mutex
	events []string
}

func (o *observed) Opened(_ context.Context, s Session) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "open "+s.User)
}

func (o *observed) Closed(_ context.Context, s Session, code int, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, fmt.Sprintf("close %s %d %s", s.User, code, reason))
}

func (o *observed) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.events...)
}

func TestSessionObserver(t *testing.T) {
	be := &observed{MemoryBackend: NewMemoryBackend()}
	hub := NewHub(Config{Backend: be, Auth: TokenAuth{Key: testKey, Tenants: be}})
	s := newTestServer(t, Limits{})
	s.Config.Handler = hub
	t.Cleanup(func() { _ = hub.Shutdown(context.Background()) })
	a := dial(t, s.wsURL("d")+"?token="+token(t, "school-a", "ada"), nil)
	_ = a.ws.Close(websocket.StatusNormalClosure, "bye")
	b := dial(t, s.wsURL("d")+"?token="+token(t, "school-a", "bob"), nil)
	_ = b.send([]byte{0, 9})
	b.closeStatus()
	want := []string{"open ada", "close ada 1000 client: bye", "open bob", "close bob 4400 "}
	waitFor(t, "events", func() bool { return len(be.list()) == 4 })
	got := be.list()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
}
