package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

// answerLoser is a TCP proxy to PostgreSQL that, once armed, loses the
// answer to the first client write holding a marker: it forwards the
// write, lets the server work, then closes both sides without relaying
// what the server said (a connection broken while a commit was under way).
type answerLoser struct {
	ln     net.Listener
	target string
	marker atomic.Pointer[[]byte]
	// swallow: the marked write does not reach the server either.
	swallow bool
	// killAll: every connection through the proxy breaks with it (a
	// network blip), the pool's idle ones included.
	killAll bool
	lost    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	conns   []net.Conn
	// down: until then, new connections are refused (the blip lasts).
	down atomic.Int64
}

func newAnswerLoser(t testing.TB, target string) *answerLoser {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &answerLoser{ln: ln, target: target, lost: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *answerLoser) serve(client net.Conn) {
	if time.Now().UnixNano() < p.down.Load() {
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	var losing atomic.Bool
	go func() { // server -> client
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !losing.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for { // client -> server
		n, err := client.Read(buf)
		if n > 0 {
			if m := p.marker.Load(); m != nil && bytes.Contains(buf[:n], *m) && p.marker.CompareAndSwap(m, nil) {
				losing.Store(true)
				if !p.swallow {
					_, _ = server.Write(buf[:n])
				}
				time.Sleep(300 * time.Millisecond) // the server commits and answers
				server.Close()
				client.Close()
				if p.killAll {
					p.down.Store(time.Now().Add(300 * time.Millisecond).UnixNano())
					p.mu.Lock()
					for _, c := range p.conns {
						c.Close()
					}
					p.mu.Unlock()
				}
				p.once.Do(func() { close(p.lost) })
				return
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				client.Close()
				return
			}
		}
		if err != nil {
			server.Close()
			return
		}
	}
}

// TestLostCommitAnswerIsResolved: the connection breaks after a group's
// writes were sent and before an answer came back. Where they reached
// PostgreSQL, the group committed: its requests are answered as committed
// and none is applied a second time (retried one by one, as a failed
// group is, they were). Where they did not, the retry applies each once.
// Where the fault broke every connection of the pool too, finding out
// retries on new ones instead of giving up (and fencing the syncer).
func TestLostCommitAnswerIsResolved(t *testing.T) {
	for _, c := range []struct{ swallow, killAll bool }{{false, false}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("swallowed=%v,all-connections-broken=%v", c.swallow, c.killAll), func(t *testing.T) {
			testLostCommitAnswer(t, c.swallow, c.killAll)
		})
	}
}

func testLostCommitAnswer(t *testing.T, swallow, killAll bool) {
	e := setup(t)
	proxy := e.proxied(Config{})
	proxy.swallow, proxy.killAll = swallow, killAll
	eng := e.eng
	// Two documents of one lane, so one group holds a save of each.
	docs := []string{"d0"}
	for i := 1; len(docs) < 2; i++ {
		if d := fmt.Sprint("d", i); eng.laneOf(d) == eng.laneOf("d0") {
			docs = append(docs, d)
		}
	}
	for _, d := range docs {
		e.submit(Request{Kind: KindCreate, Doc: d, Tenant: "t", User: "u", Content: "first"})
	}
	marker := []byte("lost-answer")
	proxy.marker.Store(&marker)
	var ops []*op
	for _, d := range docs {
		ops = append(ops, &op{req: Request{Kind: KindSave, Doc: d, Tenant: "t", User: "u", Content: "second, lost-answer"}, done: make(chan struct{})})
	}
	eng.runBatch(eng.laneOf("d0"), ops)
	select {
	case <-proxy.lost:
	default:
		t.Fatal("the proxy lost no answer")
	}
	for i, o := range ops {
		if o.err != nil || o.res.Revision != 2 {
			t.Errorf("%s: %+v, %v", docs[i], o.res, o.err)
		}
	}
	for _, d := range docs {
		if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = $1`, d); n != 2 {
			t.Errorf("%s has %d revisions, want 2 (created, saved once)", d, n)
		}
		if n := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = $1`, d); n != 2 {
			t.Errorf("%s has %d ledger entries, want 2", d, n)
		}
	}
	// The engine goes on.
	if r := e.submit(Request{Kind: KindSave, Doc: docs[0], Tenant: "t", User: "u", Content: "third", BaseRevision: 2}); r.Revision != 3 {
		t.Errorf("next save: %+v", r)
	}
}

// proxied replaces e's engine by one whose connections go through an
// answerLoser, with cfg's GroupTimeout.
func (e *env) proxied(cfg Config) *answerLoser {
	t := e.t
	ctx := t.Context()
	pc, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newAnswerLoser(t, fmt.Sprintf("%s:%d", pc.ConnConfig.Host, pc.ConnConfig.Port))
	pc.ConnConfig.Host, pc.ConnConfig.Port = "127.0.0.1", uint16(proxy.ln.Addr().(*net.TCPAddr).Port)
	proxied, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)
	e.eng.Close()
	eng, err := Open(ctx, Config{Pool: proxied, DSN: e.dsn, Shard: 0, Shards: 1, Rollout: rollout, Holder: "proxied",
		GroupTimeout: cfg.GroupTimeout, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	e.eng = eng
	return proxy
}

// TestLostCommitAnswerWaitsForTheStandby: with a synchronous standby, a
// commit waits for the standby before it answers; ending its backend to
// find out whether it committed cuts that wait short, and the commit is
// visible before any standby holds it. The group is acknowledged only
// once the standbys have it (here: once no standby is required any more),
// never on the local commit alone, which a failover could lose.
func TestLostCommitAnswerWaitsForTheStandby(t *testing.T) {
	e, proxy := standbyEnv(t, Config{})
	standby := e.requireStandby()
	marker := []byte("waits-for-standby")
	proxy.marker.Store(&marker)
	save := e.startSave("second, waits-for-standby")
	select {
	case <-proxy.lost:
	case <-time.After(20 * time.Second):
		t.Fatal("the proxy lost no answer")
	}
	save.ackedOnlyOnceReplicated(standby)
}

// standbyEnv is an env on a PostgreSQL server of its own (requiring a
// standby stalls every commit on it), its engine's connections through a
// proxy (cfg's GroupTimeout), holding document "d" at revision 1.
func standbyEnv(t *testing.T, cfg Config) (*env, *answerLoser) {
	srv, err := pgharness.Start(t.Context(), pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	e := setupOn(t, srv.DSN("postgres"))
	proxy := e.proxied(cfg)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "first"})
	return e, proxy
}

// pendingSave is a save of "d" running in its own group commit.
type pendingSave struct {
	e     *env
	o     *op
	acked chan struct{}
}

func (e *env) startSave(content string) pendingSave {
	s := pendingSave{e: e, o: &op{req: Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: content}, done: make(chan struct{})},
		acked: make(chan struct{})}
	go func() {
		e.eng.runBatch(e.eng.laneOf("d"), []*op{s.o})
		close(s.acked)
	}()
	return s
}

// ackedOnlyOnceReplicated checks that the save committed locally and was
// not acknowledged while the standby requirement held, then lifts it and
// checks that the save is acknowledged, applied once.
func (s pendingSave) ackedOnlyOnceReplicated(standby func(string)) {
	t, e, o := s.e.t, s.e, s.o
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd'`) != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the group never committed locally")
		}
	}
	select {
	case <-s.acked:
		t.Fatalf("answered while no standby holds the commit: %+v, %v", o.res, o.err)
	case <-time.After(2 * time.Second):
	}
	standby("")
	select {
	case <-s.acked:
	case <-time.After(30 * time.Second):
		t.Fatal("not acknowledged once the standby requirement was lifted")
	}
	if o.err != nil || o.res.Revision != 2 {
		t.Errorf("the save: %+v, %v", o.res, o.err)
	}
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'd'`); n != 2 {
		t.Errorf("%d revisions, want 2 (created, saved once)", n)
	}
}

// requireStandby makes e's server require a synchronous standby that
// never attaches: every commit waiting for it stalls. It returns the
// function that sets the standby names ("" lifts the requirement).
func (e *env) requireStandby() func(names string) {
	t := e.t
	standby := func(names string) {
		t.Helper()
		if _, err := e.pool.Exec(t.Context(), "ALTER SYSTEM SET synchronous_standby_names TO '"+names+"'"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pool.Exec(t.Context(), "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		// Each new backend reads the reloaded configuration.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			conn, err := pgx.Connect(t.Context(), e.dsn)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			err = conn.QueryRow(t.Context(), "SHOW synchronous_standby_names").Scan(&got)
			conn.Close(context.Background())
			if err == nil && got == names {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("synchronous_standby_names is %q, want %q (%v)", got, names, err)
			}
		}
	}
	standby("standby_not_attached")
	t.Cleanup(func() {
		_, _ = e.pool.Exec(context.Background(), "ALTER SYSTEM RESET synchronous_standby_names")
		_, _ = e.pool.Exec(context.Background(), "SELECT pg_reload_conf()")
	})
	return standby
}

// TestTimedOutCommitWaitsForTheStandby: a group commit still waiting for
// a synchronous standby when its time is up loses its answer (pgx closes
// the connection at the deadline), and finding out whether it committed
// ends its backend, which commits it locally, before any standby has it.
// It is acknowledged only once the standbys hold it.
func TestTimedOutCommitWaitsForTheStandby(t *testing.T) {
	e, _ := standbyEnv(t, Config{GroupTimeout: time.Second}) // a proxy that loses nothing: only the short timeout
	standby := e.requireStandby()
	e.startSave("second").ackedOnlyOnceReplicated(standby)
}

// TestCancelledCommitWaitsForTheStandby: a commit waiting for a
// synchronous standby that someone cancels (pg_cancel_backend, as a
// monitoring job or an operator might) stops waiting and reports success,
// with only a WARNING: committed locally, on no standby. It is
// acknowledged only once the standbys hold it.
func TestCancelledCommitWaitsForTheStandby(t *testing.T) {
	e, _ := standbyEnv(t, Config{})
	standby := e.requireStandby()
	save := e.startSave("second")
	var pid int32
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := e.pool.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'`).Scan(&pid)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no commit waits for the standby: %v", err)
		}
	}
	if _, err := e.pool.Exec(t.Context(), `SELECT pg_cancel_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	save.ackedOnlyOnceReplicated(standby)
}
