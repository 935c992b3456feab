package dataplane

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// migratedDSN is the DSN of a new database whose schema is migrated
// already, so that opening it is quick.
func migratedDSN(t *testing.T) string {
	t.Helper()
	dsn := pgharness.ForTest(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Up(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// heldServer listens on a local address and holds every connection it
// accepts unanswered, as a hung server does, until release is called; from
// then on it forwards them to target. It returns dsn with its host moved
// to the listener, and the number of connections accepted so far.
func heldServer(t *testing.T, dsn string) (held string, accepted func() int64, release func()) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the test moves the database's host and port in a postgres:// URL; DATABASE_URL is not one")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	u.Host = l.Addr().String()
	var n atomic.Int64
	released := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, in)
			mu.Unlock()
			go func() {
				<-released
				out, err := net.Dial("tcp", target)
				if err != nil {
					_ = in.Close()
					return
				}
				go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
				_, _ = io.Copy(in, out)
				_ = in.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	var once sync.Once
	return u.String(), n.Load, func() { once.Do(func() { close(released) }) }
}

// TestCacheOpensADatabaseWhileAnotherStalls: Get held the Cache's lock for
// the whole of an open, so a database that took the connection and never
// answered held up the data plane of every other database, for good (no
// connect timeout, and a reconcile's context has no deadline).
func TestCacheOpensADatabaseWhileAnotherStalls(t *testing.T) {
	dsn := migratedDSN(t)
	stalled, accepted, _ := heldServer(t, dsn)
	c := &Cache{OpenWait: 2 * time.Second, ConnectTimeout: time.Minute}
	t.Cleanup(c.Close)

	ctx := context.Background()
	start := time.Now()
	stalledErr := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, stalled)
		stalledErr <- err
	}()
	for accepted() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Get(octx, dsn); err != nil {
		t.Fatalf("the database that answers: %v", err)
	}
	select {
	case err := <-stalledErr:
		t.Fatalf("the stalled database's Get returned before the other's (%v): they were not opened apart", err)
	default:
	}

	err := <-stalledErr
	if err == nil || !strings.Contains(err.Error(), "did not answer within 2s") {
		t.Fatalf("the stalled database: %v, want that it did not answer", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get waited %s for the stalled database, want about OpenWait (2s)", d)
	}
	// Its wait spent, the next Get says so at once, and opens nothing more.
	start = time.Now()
	if _, err := c.Get(ctx, stalled); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("the stalled database, again: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the second Get waited %s for an open whose wait was spent", d)
	}
	if n := accepted(); n != 1 {
		t.Errorf("%d connections to the stalled database, want 1 (one open at a time per DSN)", n)
	}
}

// TestCacheFinishesAnOpenItStoppedWaitingFor: the open goes on after Get
// stopped waiting, and a later Get has its data plane.
func TestCacheFinishesAnOpenItStoppedWaitingFor(t *testing.T) {
	slow, _, release := heldServer(t, migratedDSN(t))
	c := &Cache{OpenWait: 200 * time.Millisecond, ConnectTimeout: time.Minute}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if _, err := c.Get(ctx, slow); err == nil || !strings.Contains(err.Error(), "did not answer within 200ms; still trying") {
		t.Fatalf("Get before the database answers: %v", err)
	}
	release()
	getOnceAnswered(t, c, slow)
}

// TestCacheConnectTimesOut: a connect to a database that does not answer
// fails after ConnectTimeout, saying so, and the next Get connects again.
func TestCacheConnectTimesOut(t *testing.T) {
	stalled, accepted, _ := heldServer(t, "postgres://u@127.0.0.1:1/db?sslmode=disable")
	c := &Cache{OpenWait: 10 * time.Second, ConnectTimeout: 300 * time.Millisecond}
	t.Cleanup(c.Close)
	ctx := context.Background()
	start := time.Now()
	_, err := c.Get(ctx, stalled)
	if err == nil || !strings.Contains(err.Error(), "the database did not answer within 300ms") {
		t.Fatalf("Get: %v, want that the database did not answer within the connect timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get took %s, want about the connect timeout", d)
	}
	if _, err := c.Get(ctx, stalled); err == nil {
		t.Fatal("second Get succeeded")
	}
	// The second Get answers the first's error at once and connects
	// again in the background.
	deadline := time.Now().Add(5 * time.Second)
	for accepted() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := accepted(); n < 2 {
		t.Errorf("%d connections, want another for the second Get (a failed open is not kept)", n)
	}
}

// TestCacheADatabaseThatDoesNotAnswerCostsAGetOnce: an open that failed
// (its connect timed out) left the Cache, so every later Get started
// another and waited for it, up to the connect timeout: a database that
// does not answer cost every reconcile of its rollouts 10 s of a worker,
// at every poll, for as long as it was down, and a few such rollouts (one
// PostgreSQL server hung, holding their databases) kept all four workers
// waiting, holding up every other rollout again. Once an open of a DSN
// failed, Get answers its error at once while the Cache tries again in the
// background, and has the data plane once the database answers.
func TestCacheADatabaseThatDoesNotAnswerCostsAGetOnce(t *testing.T) {
	slow, accepted, release := heldServer(t, migratedDSN(t))
	c := &Cache{OpenWait: 10 * time.Second, ConnectTimeout: 300 * time.Millisecond}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if _, err := c.Get(ctx, slow); err == nil || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("first Get: %v", err)
	}
	for i := range 3 {
		start := time.Now()
		_, err := c.Get(ctx, slow)
		if err == nil || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("Get %d after the failed open: %v", i+2, err)
		}
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Errorf("Get %d after the failed open waited %s (%v), want an answer at once", i+2, d, err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if n := accepted(); n < 2 {
		t.Errorf("%d connections, want the Cache to have tried again", n)
	}
	release()
	getOnceAnswered(t, c, slow)
}

// getOnceAnswered waits until c has the data plane of dsn, whose database
// has just begun to answer.
func getOnceAnswered(t *testing.T, c *Cache, dsn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(context.Background(), dsn)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get after the database answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
