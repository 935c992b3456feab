package localfirst

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The durability tests below come from a review of this package; each
// failed on the code before its fix.

// TestEditAfterAFailedWriteSurvivesRestart: one local write fails
// (disk full / file too large: here RLIMIT_FSIZE), Edit reports it; the
// student goes on typing and the next edits are acknowledged (Edit returns
// nil). After a restart every acknowledged edit must be in the text.
func TestEditAfterAFailedWriteSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.ylf")
	c := open(t, path)
	if err := c.Edit(appendText("one ")); err != nil {
		t.Fatal(err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(c.st.size) + 20 // room for a small record, not a big one
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	err := c.Edit(appendText(strings.Repeat("x", 200)))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("the write did not fail; the test does not exercise the bug")
	}
	t.Logf("failed edit reported: %v", err)
	// Disk has room again; the student keeps typing.
	if err := c.Edit(appendText("three")); err != nil {
		t.Fatal(err)
	}
	t.Logf("in memory before restart: %q", c.Text())
	c.Close()
	c = open(t, path)
	defer c.Close()
	// The failed edit was written with the next one: nothing is pending,
	// and all of it is there.
	if want := "one " + strings.Repeat("x", 200) + "three"; c.Text() != want || c.doc.HasPending() {
		t.Fatalf("after restart: text %q (pending %v), want %q", c.Text(), c.doc.HasPending(), want)
	}
}

// TestZeroFilledTailIsTorn: a power cut during an append can leave the
// file's size extended over blocks never written (read back as zeros, as
// XFS/ext4 do). That is a torn tail, like any other: Open must drop it and
// keep the acknowledged edits, not refuse the whole store.
func TestZeroFilledTailIsTorn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.ylf")
	c := open(t, path)
	for _, s := range []string{"one ", "two "} {
		if err := c.Edit(appendText(s)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(b, make([]byte, 4096)...), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatalf("store with a zero-filled tail does not open: %v", err)
	}
	defer c.Close()
	if c.Text() != "one two " || c.Loaded.Torn != 4096 {
		t.Fatalf("text %q, loaded %+v", c.Text(), c.Loaded)
	}
}

// TestDamagedRecordBeforeTheEndIsKept: damage to a record that is NOT the
// last (media corruption; a crash only tears the tail), in its payload or
// in its header, must not make Open silently drop every later
// acknowledged record and then compact them out of existence. Payload
// damage was caught only after the review of this package, header damage
// only after the review of that fix.
func TestDamagedRecordBeforeTheEndIsKept(t *testing.T) {
	for name, damage := range map[string]func(b []byte, pos int){
		"payload bit":   func(b []byte, pos int) { b[pos+9] ^= 0x01 },
		"zeroed header": func(b []byte, pos int) { copy(b[pos:pos+8], make([]byte, 8)) },
		"length bit":    func(b []byte, pos int) { b[pos+3] ^= 0x10 },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doc.ylf")
			c := open(t, path)
			for _, s := range []string{"one ", "two ", "three ", "four"} {
				if err := c.Edit(appendText(s)); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			b, _ := os.ReadFile(path)
			// records: magic | compacted empty doc | one | two | three | four
			pos := len(magic)
			for range 2 { // skip the empty-doc record and "one "
				pos += 8 + int(binary.LittleEndian.Uint32(b[pos:]))
			}
			damage(b, pos) // the record of "two "
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// What could be read is loaded; the file as found is kept
			// beside it, with the records after the damaged one.
			if c.Text() != "one " || c.Loaded.DamagedKeptAt == "" {
				t.Fatalf("text %q, loaded %+v", c.Text(), c.Loaded)
			}
			kept, err := os.ReadFile(c.Loaded.DamagedKeptAt)
			if err != nil || !bytes.Equal(kept, b) {
				t.Fatalf("the damaged store was not kept as found: %v (%d of %d bytes)", err, len(kept), len(b))
			}
		})
	}
	// A torn last write is not damage: nothing is kept for it.
	path := filepath.Join(t.TempDir(), "doc.ylf")
	c := open(t, path)
	if err := c.Edit(appendText("one ")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-2], 0o600); err != nil {
		t.Fatal(err)
	}
	c = open(t, path)
	defer c.Close()
	if c.Loaded.DamagedKeptAt != "" || c.Loaded.Torn == 0 {
		t.Fatalf("torn last write: loaded %+v", c.Loaded)
	}
}

// TestSecondOpenIsRefused: the same store opened twice
// (a second editor window or a restarted app while the old one still runs).
// Edits the first one acknowledges afterwards must not vanish: either the
// second Open is refused (a lock) or both write to the same file.
func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.ylf")
	a := open(t, path)
	if err := a.Edit(appendText("first ")); err != nil {
		t.Fatal(err)
	}
	if b, err := Open(path); !errors.Is(err, ErrInUse) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second Open of a store in use: %v, want ErrInUse", err)
	}
	if err := a.Edit(appendText("acknowledged")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	c := open(t, path) // free again once the first is closed
	defer c.Close()
	if c.Text() != "first acknowledged" {
		t.Fatalf("text %q", c.Text())
	}
}

// TestLargeDocumentLoads: five students each sync an accepted update
// (under the 4 MiB limit) to one document. A sixth opens it: the server's
// sync step 2 is the whole document. The client must load it, not
// reconnect forever.
func TestLargeDocumentLoads(t *testing.T) {
	be, base := server(t)
	dir := t.TempDir()
	chunk := strings.Repeat("a", 3<<20+512<<10) // 3.5 MiB per student
	for i := 0; i < 5; i++ {
		c := open(t, filepath.Join(dir, fmt.Sprint(i)))
		if err := c.Edit(appendText(chunk)); err != nil {
			t.Fatal(err)
		}
		stop := run(t, c, Remote{URL: base, DocID: "big", Token: tok(t, "school-a", fmt.Sprint("u", i))})
		if err := c.Flush(ctxT(t)); err != nil {
			t.Fatalf("student %d flush: %v", i, err)
		}
		stop()
		c.Close()
	}
	want := len(be.Text("big"))
	t.Logf("server text: %d bytes", want)

	c := open(t, filepath.Join(dir, "reader"))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, Remote{URL: base, DocID: "big", Token: tok(t, "school-a", "reader")}) }()
	if err := c.WaitFor(ctx, func(s string) bool { return len(s) == want }); err != nil {
		t.Fatalf("the document never loaded (%d of %d bytes): %v", len(c.Text()), want, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}

// TestCloseDuringRunEndsRun: the editor window closes (Close) while
// Run syncs in the background. Run must return, not redial the gateway
// forever against a closed client.
func TestCloseDuringRunEndsRun(t *testing.T) {
	_, base := server(t)
	c := open(t, filepath.Join(t.TempDir(), "d"))
	done := make(chan error, 1)
	go func() {
		done <- c.Run(context.Background(), Remote{URL: base, DocID: "essay", Token: tok(t, "school-a", "ada")})
	}()
	waitUntil(t, c.Connected)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	runEnded(t, done, 5*time.Second)
}

// runEnded waits for Run's answer on done and fails unless it is
// ErrClosed within d of Close.
func runEnded(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run returned %v, want ErrClosed", err)
		}
	case <-time.After(d):
		t.Fatalf("Run still running (redialling) %v after Close", d)
	}
}

// TestClientIDDuringReset: ClientID (documented safe for concurrent
// use, like every method) while Reset replaces the document. Run with -race.
func TestClientIDDuringReset(t *testing.T) {
	c := open(t, filepath.Join(t.TempDir(), "d"))
	defer c.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			_ = c.ClientID()
		}
	}()
	if _, err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestCloseWhileOfflineEndsRun: the editor window closes while the
// gateway is unreachable (Run dialling and backing off). Run must return
// ErrClosed, not redial an unreachable gateway for as long as its context
// lives; and Run on a closed client returns ErrClosed at once.
func TestCloseWhileOfflineEndsRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "ws://" + ln.Addr().String() + "/v1/sync/"
	ln.Close() // nothing listens there now: every dial fails
	c := open(t, filepath.Join(t.TempDir(), "d"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, Remote{URL: base, DocID: "essay"}) }()
	time.Sleep(500 * time.Millisecond) // a few failed dials: Run is backing off
	if err := c.Edit(appendText("offline ")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	runEnded(t, done, 3*time.Second)
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer rcancel()
	if err := c.Run(rctx, Remote{URL: base, DocID: "essay"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run on a closed client returned %v, want ErrClosed", err)
	}
}

// TestResetKeepsTheStoreLocked: while Reset sets the local copy aside
// and starts a new one, another client trying to open the same store
// must keep getting ErrInUse: had it got in between, it would load a
// store that Reset then moves from under it (its edits going to the
// archived file) or make Reset fail half-way.
func TestResetKeepsTheStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d")
	c := open(t, path)
	defer c.Close()
	if err := c.Edit(appendText("mine ")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var intruded error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			o, err := Open(path)
			if err == nil {
				o.Close()
				intruded = errors.New("a second client opened the store during Reset")
				return
			}
			if !errors.Is(err, ErrInUse) {
				intruded = err
				return
			}
		}
	}()
	for i := range 200 {
		if _, err := c.Reset(); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Reset %d: %v (concurrent open: %v)", i, err, intruded)
		}
		if err := c.Edit(appendText("x")); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Edit after Reset %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if intruded != nil {
		t.Fatal(intruded)
	}
}

// TestShortForeignFileIsNotOverwritten: a path naming some other small
// file (a few bytes, not the start of a store) is not a local store torn
// while being created: Open must refuse it, not compact an empty store
// over it.
func TestShortForeignFileIsNotOverwritten(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"hi\n", "{}", "YAWPLF2"} {
		path := filepath.Join(dir, "notes")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open of a file holding %q: %v, want ErrCorrupt", content, err)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("the file holding %q now holds %q", content, b)
		}
	}
	// A store torn while being created (a prefix of the magic) is still
	// a new, empty store.
	path := filepath.Join(dir, "new")
	if err := os.WriteFile(path, []byte(magic[:3]), 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, path)
	defer c.Close()
	if c.Text() != "" || c.Loaded.Torn != 3 {
		t.Fatalf("torn creation: text %q, %+v", c.Text(), c.Loaded)
	}
}
