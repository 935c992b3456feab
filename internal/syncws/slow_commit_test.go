package syncws

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// slowCommit holds the first ApplyUpdate after it is armed until
// released, as a commit waiting for a row lock or a syncer in doubt does;
// held (buffered) says it is held. (It held an update only if the test
// was already waiting on held when the update arrived: on a loaded
// machine the update could come first, go through, and leave the test
// waiting for good.)
type slowCommit struct {
	*MemoryBackend
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (b *slowCommit) ApplyUpdate(ctx context.Context, s Session, u []byte) ([]byte, error) {
	if b.armed.CompareAndSwap(true, false) {
		b.held <- struct{}{}
		<-b.release
	}
	return b.MemoryBackend.ApplyUpdate(ctx, s, u)
}

// TestALiveClientOutlastsASlowCommit: the connection's pings went on
// while its read loop waited for an update's commit, and no pong is read
// while nothing reads: a commit slower than the ping interval plus the
// write timeout dropped a live client without a close frame (1006), as
// if it had vanished. Pings now wait while a message is being handled.
func TestALiveClientOutlastsASlowCommit(t *testing.T) {
	be := &slowCommit{MemoryBackend: NewMemoryBackend(), held: make(chan struct{}, 1), release: make(chan struct{})}
	// Pings often, and a pong's wait long enough that a client that
	// reads is not taken for a vanished one on a loaded machine.
	lim := Limits{PingInterval: 50 * time.Millisecond, WriteTimeout: 250 * time.Millisecond}
	hub := NewHub(Config{Backend: be, Auth: TokenAuth{Key: testKey, Tenants: be}, Limits: lim})
	s := newTestServer(t, lim)
	s.Config.Handler = hub
	t.Cleanup(func() { _ = hub.Shutdown(context.Background()) })
	c := dial(t, s.wsURL("slow")+"?token="+token(t, "school-a", "ada"), nil)
	e := newEditor(5)
	handshake(t, c, e)
	// The client reads all along (so it answers every ping it gets).
	closed := make(chan error, 1)
	go func() {
		for {
			if _, err := c.next(); err != nil {
				closed <- err
				return
			}
		}
	}()
	be.armed.Store(true)
	if err := c.send(yprotocol.EncodeUpdate(e.insert(t, "a"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-be.held:
	case err := <-closed:
		t.Fatalf("the client was dropped before its update reached the backend: %v", err)
	}
	// The commit takes its time: several pings' worth, each of which
	// would have gone unanswered.
	time.Sleep(4 * (lim.PingInterval + lim.WriteTimeout))
	close(be.release)
	if err := c.send(yprotocol.EncodeUpdate(e.insert(t, "b"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both updates applied", func() bool { return be.Text("slow") == "ab" })
	select {
	case err := <-closed:
		t.Fatalf("the live client was dropped during the slow commit: %v", err)
	default:
	}
	if n := hub.Stats().Conns; n != 1 {
		t.Fatalf("%d connections, want the client's", n)
	}
}
