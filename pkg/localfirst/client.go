// Package localfirst is a local-first Yjs client in Go: the reference
// client for tests, the workload generator and the demo.
//
// A Client keeps one document in a durable local store (an append-only,
// checksummed, fsynced file of Yjs updates, compacted on open, tolerant of
// a torn last record), lets the caller edit it offline, and syncs it with
// the gateway's WebSocket endpoint (package syncws) using the y-websocket
// handshake: on every (re)connect it first announces its state vector
// (sync step 1), applies what the server sends back (step 2), and answers
// the server's step 1 with everything the server lacks. While connected,
// local edits are sent as they are made (after they are on disk) and
// remote edits are applied and stored as they arrive.
package localfirst

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// Client is one local-first replica of one document. Its methods are safe
// for concurrent use.
type Client struct {
	mu       sync.Mutex
	doc      *yjs.Doc
	st       *store
	capture  bool
	captured [][]byte
	out      chan []byte // the current connection's send queue, nil offline
	dropConn func()
	serverSV yjs.StateVector
	serverDS yjs.DeleteSet // deletions of the server's last step 2
	protocol string
	denied   string
	changed  chan struct{}
	closed   bool
	// done is closed by Close: it ends Run's dials and backoff waits.
	done chan struct{}
	// unsaved holds updates the document took whose write to the local
	// store failed: the next write carries them (merged) before anything
	// that comes after them, so no record on disk builds on operations
	// that are not.
	unsaved [][]byte

	// Loaded is what Open found on disk: the number of records replayed
	// and the bytes of a torn tail dropped. DamagedKeptAt names a copy of
	// the file as it was found when a damaged record sat before its end
	// (not a torn last write): the records after it could not be read,
	// and the copy keeps them for recovery.
	Loaded struct {
		Records       int
		Torn          int64
		DamagedKeptAt string
	}
}

// Open opens (or creates) the local store at path and loads the document.
// A fresh random Yjs client ID is used for this process's edits, as yjs
// does per session, so a torn record can never make an ID be reused.
func Open(path string) (*Client, error) {
	c := &Client{doc: yjs.NewDoc(yjs.Options{}), changed: make(chan struct{}), done: make(chan struct{})}
	st, ld, err := openStore(path, c.doc)
	if err != nil {
		return nil, err
	}
	c.st = st
	c.Loaded.Records, c.Loaded.Torn, c.Loaded.DamagedKeptAt = ld.records, ld.torn, ld.keptAt
	c.doc.OnUpdate(func(u []byte) {
		if c.capture {
			c.captured = append(c.captured, append([]byte(nil), u...))
		}
	})
	return c, nil
}

// Close closes the local store, writing first what an earlier failed
// write left unsaved; Run returns ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.done)
	if c.dropConn != nil {
		c.dropConn()
	}
	var err error
	if len(c.unsaved) > 0 {
		_, err = c.saveLocked(nil)
	}
	if cerr := c.st.close(); err == nil {
		err = cerr
	}
	return err
}

// ErrClosed is returned by a closed client's methods and ends Run.
var ErrClosed = errors.New("localfirst: client closed")

// saveLocked writes u to the local store, after (merged with) whatever
// earlier writes left unsaved, and returns what it wrote. On failure u
// joins the unsaved updates, to go with the next write.
func (c *Client) saveLocked(u []byte) ([]byte, error) {
	w := u
	if len(c.unsaved) > 0 {
		parts := c.unsaved
		if u != nil {
			parts = append(slices.Clip(parts), u)
		}
		m, err := yjs.MergeUpdates(parts...)
		if err != nil {
			return nil, err
		}
		w = m
	}
	if err := c.st.append(w); err != nil {
		if u != nil {
			c.unsaved = append(c.unsaved, u)
		}
		return nil, err
	}
	c.unsaved = nil
	return w, nil
}

// Text returns the document's text (root Y.Text contract.YjsTextName).
func (c *Client) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doc.GetText(contract.YjsTextName).String()
}

// Text is the document's text as Edit hands it over, and StateVector a
// Yjs state vector (client ID to clock). They are the engine's own types,
// named here because code outside this module cannot import the engine's
// internal package: without them it could not write the function Edit
// takes.
type (
	Text        = yjs.Text
	StateVector = yjs.StateVector
)

// StateVector returns the local state vector.
func (c *Client) StateVector() StateVector {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doc.StateVector()
}

// ClientID is the Yjs client ID of this process's edits.
func (c *Client) ClientID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doc.ClientID()
}

// Protocol is the protocol the server last told (contract.ProtocolLocalFirst
// or contract.ProtocolWriteThrough), "" before the first connection.
func (c *Client) Protocol() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.protocol
}

// Edit runs f on the document's text as one local edit: the resulting
// update is appended to the local store and fsynced before Edit returns,
// and then sent to the server if connected.
func (c *Client) Edit(f func(t *Text) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.capture, c.captured = true, nil
	ferr := f(c.doc.GetText(contract.YjsTextName))
	c.capture = false
	if len(c.captured) == 0 {
		return ferr
	}
	u := c.captured[0]
	if len(c.captured) > 1 {
		m, err := yjs.MergeUpdates(c.captured...)
		if err != nil {
			return err
		}
		u = m
	}
	c.captured = nil
	w, err := c.saveLocked(u)
	if err != nil {
		// The edit is in the document but not on disk: it goes with the
		// next write that succeeds (and to the server then, or with the
		// next handshake).
		return fmt.Errorf("localfirst: saving locally: %w", err)
	}
	c.sendLocked(yprotocol.EncodeUpdate(w))
	return ferr
}

// sendLocked queues msg on the current connection; a full queue drops
// the connection (the next handshake re-syncs everything).
func (c *Client) sendLocked(msg []byte) {
	if c.out == nil {
		return
	}
	select {
	case c.out <- msg:
	default:
		if c.dropConn != nil {
			c.dropConn()
		}
	}
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// applyRemote integrates and stores an update from the server.
func (c *Client) applyRemote(u []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.doc.ApplyUpdate(u); err != nil {
		return err
	}
	if _, err := c.saveLocked(u); err != nil {
		return err
	}
	c.notifyLocked()
	return nil
}

// Remote says where and as whom to sync.
type Remote struct {
	// URL is the gateway's sync base, e.g. ws://host:8080/v1/sync/ (the
	// document ID is appended).
	URL   string
	DocID string
	Token string
	// HTTPClient is used to dial (default http.DefaultClient).
	HTTPClient *http.Client
	// AnnounceOnly connects, announces the state vector and receives, but
	// never pushes local operations: an evidence drill ("saved locally,
	// not synced").
	AnnounceOnly bool
}

// RefusedError is a permanent refusal: close codes 4400-4499, or 1009
// when a message from the server is over what the local store can hold.
type RefusedError struct {
	Code   int
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("localfirst: server refused: %d %s", e.Code, e.Reason)
}

// Run syncs until ctx ends or the server refuses permanently,
// reconnecting with jittered exponential backoff after transient failures.
func (c *Client) Run(ctx context.Context, r Remote) error {
	// Close ends Run also while it dials or waits to redial an
	// unreachable gateway, not only while connected.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		if c.isClosed() {
			return ErrClosed
		}
		start := time.Now()
		err := c.session(rctx, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ref *RefusedError
		if errors.As(err, &ref) || errors.Is(err, ErrClosed) {
			return err
		}
		if c.isClosed() {
			return ErrClosed
		}
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		d := backoff/2 + rand.N(backoff/2+1)
		if backoff < 5*time.Second {
			backoff *= 2
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		case <-time.After(d):
		}
	}
}

// session runs one connection.
func (c *Client) session(ctx context.Context, r Remote) error {
	u := r.URL + url.PathEscape(r.DocID) + "?" + contract.SyncProtocolMessagesParam + "=1"
	hdr := http.Header{}
	if r.Token != "" {
		hdr.Set("Authorization", "Bearer "+r.Token)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: r.HTTPClient})
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = ws.CloseNow() }()
	// The server's sync step 2 carries the whole document, which no
	// update limit bounds: a message is bounded only by what the local
	// store can hold as one record.
	ws.SetReadLimit(maxRecord + 64)
	sctx, stop := context.WithCancel(ctx)
	defer stop()

	out := make(chan []byte, 1024)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if p := resp.Header.Get(contract.HeaderProtocol); p != "" {
		c.protocol = p
	}
	if !r.AnnounceOnly {
		c.out = out
	}
	c.dropConn = stop
	c.serverSV = nil
	// Announce our state vector first: the server records it as evidence
	// and answers with what we lack.
	first := yprotocol.EncodeSyncStep1(c.doc.EncodeStateVector())
	c.notifyLocked()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.out == out {
			c.out = nil
		}
		c.dropConn = nil
		c.serverSV = nil
		c.notifyLocked()
		c.mu.Unlock()
	}()

	werr := make(chan error, 1)
	go func() {
		werr <- func() error {
			if err := ws.Write(sctx, websocket.MessageBinary, first); err != nil {
				return err
			}
			for {
				select {
				case <-sctx.Done():
					return sctx.Err()
				case m := <-out:
					if err := ws.Write(sctx, websocket.MessageBinary, m); err != nil {
						return err
					}
				}
			}
		}()
		stop()
	}()

	for {
		_, b, err := ws.Read(sctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code >= 4400 && ce.Code < 4500 {
				return &RefusedError{Code: int(ce.Code), Reason: ce.Reason}
			}
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// Every reconnection would get the same message.
				return &RefusedError{Code: int(websocket.StatusMessageTooBig), Reason: err.Error()}
			}
			if c.isClosed() {
				return ErrClosed
			}
			if ctx.Err() == nil {
				select {
				case e := <-werr:
					if e != nil && !errors.Is(e, context.Canceled) {
						return e
					}
				default:
				}
			}
			return err
		}
		m, err := yprotocol.DecodeClient(b)
		if err != nil {
			return fmt.Errorf("localfirst: from server: %w", err)
		}
		switch m.Type {
		case yprotocol.MessageSync:
			switch m.Sync {
			case yprotocol.SyncStep2, yprotocol.SyncUpdate:
				if err := c.applyRemote(m.Payload); err != nil {
					return fmt.Errorf("localfirst: applying server update: %w", err)
				}
				if m.Sync == yprotocol.SyncStep2 {
					// A step 2 carries the server's whole delete set:
					// how Flush confirms deletions, which no state
					// vector shows.
					if d, err := yjs.DecodeUpdate(m.Payload); err == nil {
						c.mu.Lock()
						c.serverDS = d.DeleteSet
						c.notifyLocked()
						c.mu.Unlock()
					}
				}
			case yprotocol.SyncStep1:
				sv, err := yjs.DecodeStateVector(m.Payload)
				if err != nil {
					return fmt.Errorf("localfirst: server state vector: %w", err)
				}
				c.mu.Lock()
				c.serverSV = sv
				if !r.AnnounceOnly {
					// Push everything the server lacks.
					c.sendLocked(yprotocol.EncodeSyncStep2(c.doc.EncodeStateAsUpdate(sv)))
				}
				c.notifyLocked()
				c.mu.Unlock()
			}
		case yprotocol.MessageYawp:
			var ym struct {
				Protocol string `json:"protocol"`
			}
			if jsonUnmarshal(m.Payload, &ym) == nil && ym.Protocol != "" {
				c.mu.Lock()
				c.protocol = ym.Protocol
				c.notifyLocked()
				c.mu.Unlock()
			}
		case yprotocol.MessageAuth:
			c.mu.Lock()
			c.denied = m.Reason
			c.mu.Unlock()
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Connected reports whether a connection is open.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropConn != nil
}

// syncedLocked: the server's last state vector covers ours and its last
// delete set covers ours.
func (c *Client) syncedLocked() bool {
	if c.serverSV == nil || c.serverDS == nil {
		return false
	}
	for client, clock := range c.doc.StateVector() {
		if c.serverSV[client] < clock {
			return false
		}
	}
	return covers(c.serverDS, c.doc.DeleteSet())
}

// covers reports whether every range of b lies inside ranges of a.
func covers(a, b yjs.DeleteSet) bool {
	for client, rs := range b {
		have := slices.Clone(a[client])
		slices.SortFunc(have, func(x, y yjs.Range) int { return cmp.Compare(x.Clock, y.Clock) })
		for _, r := range rs {
			if r.Len == 0 {
				continue
			}
			pos, end := r.Clock, r.End()
			for _, h := range have {
				if h.Clock <= pos && h.End() > pos {
					pos = h.End()
				}
				if pos >= end {
					break
				}
			}
			if pos < end {
				return false
			}
		}
	}
	return true
}

// Flush waits until the server has confirmed (by its state vector) that
// it holds every operation this replica has, re-asking with a sync step 1
// every interval. It needs Run to be connecting.
func (c *Client) Flush(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	asked := false
	for {
		c.mu.Lock()
		if c.out != nil && !asked {
			c.serverSV, c.serverDS = nil, nil
			c.sendLocked(yprotocol.EncodeSyncStep1(c.doc.EncodeStateVector()))
			asked = true
		}
		done := asked && c.syncedLocked()
		ch := c.changed
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-tick.C:
			asked = false
		}
	}
}

// WaitFor waits until cond (called with the text) holds.
func (c *Client) WaitFor(ctx context.Context, cond func(text string) bool) error {
	for {
		c.mu.Lock()
		ok := cond(c.doc.GetText(contract.YjsTextName).String())
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// IsForeignHistory reports the refusal (close code contract.CloseForeignHistory)
// of a local copy the server does not share a history with: the server
// merged its text and preserved it, or, for a copy of a document deleted
// outside the gateway, took nothing of it (the copy then holds the only
// text of its refused edits; evidence reports them saved-locally-not-synced).
// The copy must not be sent again. Call Reset, which keeps it aside, then
// Run again.
func IsForeignHistory(err error) bool {
	var ref *RefusedError
	return errors.As(err, &ref) && ref.Code == contract.CloseForeignHistory
}

// Reset sets the local copy aside (the store file is renamed to
// path.foreign-<unix nanoseconds>, never deleted) and starts again from an
// empty document, which the next Run fills from the server. Run must not
// be running.
func (c *Client) Reset() (archived string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", ErrClosed
	}
	// The store's lock is held throughout: no other client may open the
	// path between the old copy and the new one. Until the new one is
	// open the old one stays in use (moved back on failure).
	path := c.st.path
	archived = fmt.Sprintf("%s.foreign-%d", path, time.Now().UnixNano())
	if err := os.Rename(path, archived); err != nil {
		return "", err
	}
	doc := yjs.NewDoc(yjs.Options{})
	st, _, err := openLocked(path, c.st.lock, doc)
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		if st != nil {
			_ = st.f.Close()
		}
		if rerr := os.Rename(archived, path); rerr != nil {
			return "", fmt.Errorf("%w (and the old copy stays at %s: %v)", err, archived, rerr)
		}
		return "", err
	}
	_ = c.st.f.Close()
	doc.OnUpdate(func(u []byte) {
		if c.capture {
			c.captured = append(c.captured, append([]byte(nil), u...))
		}
	})
	c.doc, c.st, c.serverSV, c.serverDS, c.unsaved = doc, st, nil, nil, nil
	return archived, nil
}
