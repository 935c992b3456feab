package localfirst

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/syncws"
	"github.com/yawp/persistence-operator/internal/yjs"
)

var key = []byte("localfirst-test-key")

func tok(t *testing.T, tenant, user string) string {
	t.Helper()
	s, err := auth.Mint(key, auth.Claims{Tenant: tenant, User: user, Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func server(t *testing.T) (*syncws.MemoryBackend, string) {
	t.Helper()
	be := syncws.NewMemoryBackend()
	hub := syncws.NewHub(syncws.Config{Backend: be, Auth: syncws.TokenAuth{Key: key, Tenants: be}})
	mux := http.NewServeMux()
	mux.Handle(contract.PathSync, hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		srv.Close()
	})
	return be, "ws" + strings.TrimPrefix(srv.URL, "http") + contract.PathSync
}

func appendText(s string) func(*yjs.Text) error {
	return func(t *yjs.Text) error { return t.Insert(t.Len(), s, nil) }
}

func open(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStoreSurvivesRestartAndTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.ylf")
	c := open(t, path)
	for _, s := range []string{"one ", "two ", "three"} {
		if err := c.Edit(appendText(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Edit(func(x *yjs.Text) error { return x.Delete(0, 4) }); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// a torn last record: a header promising more bytes than were written
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(appendRecord(nil, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})[:12]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	c = open(t, path)
	if c.Text() != "two three" || c.Loaded.Torn != 12 {
		t.Fatalf("after torn tail: %q, torn %d", c.Text(), c.Loaded.Torn)
	}
	if err := c.Edit(appendText("!")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// a record with a bad checksum at the end is dropped too
	b, _ := os.ReadFile(path)
	rec := appendRecord(nil, []byte{0, 0})
	rec[5] ^= 0xff
	if err := os.WriteFile(path, append(b, rec...), 0o600); err != nil {
		t.Fatal(err)
	}
	c = open(t, path)
	defer c.Close()
	if c.Text() != "two three!" || c.Loaded.Torn != int64(len(rec)) || c.Loaded.Records != 2 {
		t.Fatalf("after bad checksum: %q %+v", c.Text(), c.Loaded)
	}
	// compacted: one record
	c.Close()
	c = open(t, path)
	if c.Loaded.Records != 1 || c.Text() != "two three!" {
		t.Fatalf("not compacted: %+v", c.Loaded)
	}

	// not a store at all
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("hello world, not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad); err == nil {
		t.Fatal("opened a non-store")
	}
}

func run(t *testing.T, c *Client, r Remote) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	return func() {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("run: %v", err)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOfflineRestartConverge: B edits offline, the process "dies", it
// reopens from disk, connects (announcing its state vector) while A keeps
// editing, and everything converges with the server.
func TestOfflineRestartConverge(t *testing.T) {
	be, base := server(t)
	dir := t.TempDir()
	a := open(t, filepath.Join(dir, "a"))
	defer a.Close()
	stopA := run(t, a, Remote{URL: base, DocID: "essay", Token: tok(t, "school-a", "ada")})
	defer stopA()
	if err := a.Edit(appendText("Intro. ")); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if a.Protocol() != contract.ProtocolLocalFirst {
		t.Fatalf("protocol %q", a.Protocol())
	}

	// B syncs once, then works offline and is killed.
	bPath := filepath.Join(dir, "b")
	b := open(t, bPath)
	stopB := run(t, b, Remote{URL: base, DocID: "essay", Token: tok(t, "school-a", "bob")})
	if err := b.WaitFor(ctxT(t), func(s string) bool { return s == "Intro. " }); err != nil {
		t.Fatal(err)
	}
	stopB()
	for _, s := range []string{"Draft one. ", "Draft two. "} {
		if err := b.Edit(appendText(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Edit(func(x *yjs.Text) error { return x.Delete(0, 7) }); err != nil { // deletes "Intro. " offline
		t.Fatal(err)
	}
	bClient := b.ClientID()
	bClock := b.StateVector()[bClient]
	b.Close()
	if err := a.Edit(appendText("Meanwhile. ")); err != nil {
		t.Fatal(err)
	}

	// Restart: reopen from disk, announce only (the connection is "cut
	// before the updates arrive"): the server saw the state vector.
	b = open(t, bPath)
	defer b.Close()
	if b.Text() != "Draft one. Draft two. " {
		t.Fatalf("reopened %q", b.Text())
	}
	stopB = run(t, b, Remote{URL: base, DocID: "essay", Token: tok(t, "school-a", "bob"), AnnounceOnly: true})
	waitUntil(t, func() bool {
		for _, an := range be.Announcements() {
			if an.Session.User == "bob" && an.SV[bClient] == bClock {
				return true
			}
		}
		return false
	})
	if be.StateVector("essay")[bClient] != 0 {
		t.Fatal("announce-only pushed operations")
	}
	stopB()

	// Full reconnect: everything converges, nothing lost.
	stopB = run(t, b, Remote{URL: base, DocID: "essay", Token: tok(t, "school-a", "bob")})
	defer stopB()
	if err := b.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	want := "Draft one. Draft two. Meanwhile. "
	for _, c := range []*Client{a, b} {
		if err := c.WaitFor(ctxT(t), func(s string) bool { return s == be.Text("essay") }); err != nil {
			t.Fatalf("client text %q server %q", c.Text(), be.Text("essay"))
		}
	}
	if got := be.Text("essay"); len(got) != len(want) || !strings.Contains(got, "Draft one. Draft two. ") || !strings.Contains(got, "Meanwhile. ") || strings.Contains(got, "Intro") {
		t.Fatalf("server text %q", got)
	}
}

func TestRefusedIsPermanent(t *testing.T) {
	be, base := server(t)
	be.CreateDocument("theirs", "school-b")
	c := open(t, filepath.Join(t.TempDir(), "x"))
	defer c.Close()
	err := c.Run(ctxT(t), Remote{URL: base, DocID: "theirs", Token: tok(t, "school-a", "ada")})
	re, ok := err.(*RefusedError)
	if !ok || re.Code != contract.CloseForbidden {
		t.Fatalf("%v", err)
	}
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
