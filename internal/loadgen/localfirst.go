package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// lfSession is one document's local-first client (one device): its
// durable store, and its connection while online.
type lfSession struct {
	mu      sync.Mutex
	c       *localfirst.Client
	remote  localfirst.Remote
	cancel  context.CancelFunc
	done    chan struct{}
	offline bool
	edits   int
	// refused is the permanent refusal Run ended with, if any.
	refused atomic.Pointer[error]
}

// online starts syncing.
func (s *lfSession) online() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		// Run reconnects by itself; it ends with ctx or a permanent refusal.
		if err := s.c.Run(ctx, s.remote); err != nil && ctx.Err() == nil {
			s.refused.Store(&err)
		}
	}(s.done)
	s.offline = false
}

// disconnect stops syncing (the client keeps its edits on disk).
func (s *lfSession) disconnect() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

func (s *lfSession) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disconnect()
	if s.c != nil {
		_ = s.c.Close()
	}
}

func wsBase(gw string) string {
	return "ws" + strings.TrimPrefix(strings.TrimRight(gw, "/"), "http") + contract.PathSync
}

// session returns d's local-first client, opened and online the first
// time. Only one operation uses a session at a time (s.mu).
func (g *Generator) session(ctx context.Context, d *document) (*lfSession, error) {
	g.mu.Lock()
	s := d.lf
	if s == nil {
		s = &lfSession{}
		d.lf = s
	}
	g.mu.Unlock()
	s.mu.Lock()
	if s.c == nil {
		c, err := localfirst.Open(g.storePath(d))
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		tok, err := g.rest.token(d.tenant, "loadgen-device-"+d.id, false)
		if err != nil {
			_ = c.Close()
			s.mu.Unlock()
			return nil, err
		}
		s.c, s.remote = c, localfirst.Remote{URL: wsBase(g.gateway(d.idx)), DocID: d.id, Token: tok}
		s.online()
		// As the editor does, open the document before typing: wait for
		// the first sync, so edits are made on the server's text (an
		// insertion into an empty text would be a different history).
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = s.c.Flush(fctx)
		cancel()
		if err != nil {
			s.mu.Unlock()
			if r := s.refused.Load(); r != nil {
				return nil, fmt.Errorf("the gateway refused the client: %w", *r)
			}
			return nil, fmt.Errorf("first sync: %w", err)
		}
	}
	return s, nil
}

// localFirst is one local-first operation on d: an edit, acknowledged
// when the server's state vector covers it; sometimes the start of an
// offline episode (more edits while disconnected), sometimes its end.
func (g *Generator) localFirst(ctx context.Context, d *document, rng *rand.Rand) error {
	s, err := g.session(ctx, d)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.offline && rng.IntN(2) == 0 {
		s.online() // the episode ends: reconnect, announce, push
		g.offline.Add(-1)
	}
	if err := g.lfEdit(s, rng); err != nil {
		return err
	}
	if s.offline {
		return nil
	}
	if rng.Float64() < g.cfg.Mix.Offline {
		// Going offline: the edit above may or may not have been sent;
		// the ones below are made while disconnected.
		s.disconnect()
		s.offline = true
		g.offline.Add(1)
		g.episodes.Add(1)
		for range 1 + rng.IntN(3) {
			if err := g.lfEdit(s, rng); err != nil {
				return err
			}
		}
		return nil
	}
	return g.flush(ctx, d, s, 10*time.Second)
}

func (g *Generator) lfEdit(s *lfSession, rng *rand.Rand) error {
	s.edits++
	marker := fmt.Sprintf("(c%d.%d)", s.c.ClientID()%100000, s.edits)
	return s.c.Edit(func(t *yjs.Text) error { return t.Insert(rng.IntN(t.Len()+1), marker, nil) })
}

// flush waits until the server holds every edit of s and records them as
// acknowledged.
func (g *Generator) flush(ctx context.Context, d *document, s *lfSession, timeout time.Duration) error {
	clock := s.c.StateVector()[s.c.ClientID()]
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.c.Flush(fctx); err != nil {
		if r := s.refused.Load(); r != nil {
			return fmt.Errorf("the gateway refused the client: %w", *r)
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return errors.New("flush timed out")
		}
		return err
	}
	if p := s.c.Protocol(); p != "" {
		d.protocol.Store(p)
	}
	g.ackYjs(d.id, d.tenant, s.c.ClientID(), clock)
	return nil
}

// flushAll brings every offline client back and flushes every local-first
// client, then disconnects them.
func (g *Generator) flushAll(ctx context.Context) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range g.docs {
		g.mu.Lock()
		s := d.lf
		g.mu.Unlock()
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.c == nil {
				return
			}
			if s.offline {
				s.online()
				g.offline.Add(-1)
			}
			if err := g.flush(ctx, d, s, time.Minute); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("flush the local-first client of %s: %w", d.id, err))
				mu.Unlock()
			}
			s.disconnect()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
