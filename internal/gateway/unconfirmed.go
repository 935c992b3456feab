package gateway

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
)

// A save that reached the gateway but whose commit the gateway could not
// confirm (the syncer was unreachable, restarting or fenced) must still
// leave a trace in the document's ledger (I6): the client was told to
// retry, and support must be able to see that it tried. The rejection is
// recorded as soon as the document's syncer answers again, in the
// background, retried for up to unconfirmedPatience. If the save did
// commit after all (the answer was lost), the ledger holds both, and the
// evidence verdict for the request is its commit.

// CodeUnconfirmed names such a ledger entry.
const CodeUnconfirmed = "unconfirmed"

const (
	unconfirmedQueue    = 4096
	unconfirmedPatience = 2 * time.Minute
)

type unconfirmed struct {
	req store.Request
	// orig is the save itself (kind, document, tenant): once its trace is
	// recorded, the document's room is brought up to date, in case the
	// save committed after all and only its answer was lost.
	orig store.Request
	at   time.Time
}

// unavailable reports whether err left the save's fate unknown to the
// gateway (as opposed to a refusal the syncer recorded itself).
func unavailable(err error) bool {
	var e *store.Error
	if !errors.As(err, &e) {
		return true
	}
	return e.Code == store.CodeUnavailable || e.Code == store.CodeFenced
}

// recordUnconfirmed queues the trace of a save the gateway could not
// confirm; when the queue is full the oldest pending trace is logged and
// dropped (the gateway's own log is then the only record).
func (g *Gateway) recordUnconfirmed(req store.Request, cause error) {
	if req.Kind != store.KindCreate && req.Kind != store.KindSave && req.Kind != store.KindYjs {
		return
	}
	reason := "the save reached the gateway but its commit could not be confirmed (" + cause.Error() + "); the client was told to retry"
	if errors.Is(cause, context.Canceled) {
		// Not the syncer: the client went away while its save was on
		// the way, so nobody was told anything.
		reason = "the save reached the gateway, and the client disconnected before its commit was confirmed; " +
			"if it committed, its commit is in the ledger too"
	}
	rec := store.Request{Kind: store.KindReject, Doc: req.Doc, Tenant: req.Tenant, User: req.User, RequestID: req.RequestID,
		IdempotencyKey: req.IdempotencyKey, Code: CodeUnconfirmed, Reason: reason}
	if req.Kind == store.KindYjs && len(req.Update) <= contract.MaxUpdateBytes {
		// Recorded with its hash and clients, so evidence asked about a
		// Yjs client finds it.
		rec.Update = req.Update
	}
	u := unconfirmed{req: rec, orig: store.Request{Kind: req.Kind, Doc: req.Doc, Tenant: req.Tenant}, at: g.cfg.Now()}
	g.unconfMu.Lock()
	defer g.unconfMu.Unlock()
	if len(g.unconf) >= unconfirmedQueue {
		g.log.Error("unconfirmed saves queue full; dropping the oldest trace", "doc", g.unconf[0].req.Doc, "request", g.unconf[0].req.RequestID)
		g.unconf = g.unconf[1:]
	}
	g.unconf = append(g.unconf, u)
	if !g.unconfRunning {
		g.unconfRunning = true
		go g.drainUnconfirmed()
	}
}

// drainUnconfirmed records the queued traces, retrying with backoff, and
// exits when the queue is empty. A trace whose syncer does not answer goes
// to the back of the queue, so the traces of shards that answer are not
// held behind it; the drain backs off only after a whole round of the
// queue failed.
func (g *Gateway) drainUnconfirmed() {
	backoff := 100 * time.Millisecond
	failed := 0 // traces that failed in a row
	for {
		g.unconfMu.Lock()
		if len(g.unconf) == 0 {
			g.unconfRunning = false
			g.unconfMu.Unlock()
			return
		}
		// Out of the queue while it is recorded: a full queue drops its
		// oldest entry meanwhile, and must not drop this one or make a
		// position-based pop remove another.
		u := g.unconf[0]
		g.unconf = g.unconf[1:]
		g.unconfCur = &u
		g.unconfMu.Unlock()
		err := g.recordOne(u.req)
		g.unconfMu.Lock()
		g.unconfCur = nil
		switch {
		case err == nil || !unavailable(err):
			if err != nil {
				g.log.Warn("recording an unconfirmed save", "doc", u.req.Doc, "err", err)
			} else {
				// The syncer answers again: if the save committed after
				// all, its room gets it now.
				g.committedOutsideSync(u.orig, store.Result{Outcome: store.OutcomeSaved})
			}
			failed, backoff = 0, 100*time.Millisecond
		case g.cfg.Now().Sub(u.at) > unconfirmedPatience:
			g.log.Error("gave up recording an unconfirmed save", "doc", u.req.Doc, "request", u.req.RequestID, "err", err)
		default:
			g.unconf = append(g.unconf, u)
			failed++
		}
		round := failed > 0 && failed >= len(g.unconf)
		g.unconfMu.Unlock()
		if round {
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
			failed = 0
		}
	}
}

func (g *Gateway) recordOne(req store.Request) error {
	s, err := g.syncerFor(req.Doc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.Apply(ctx, req)
	return err
}

// FlushUnconfirmed waits until the queued traces are recorded or ctx ends;
// it logs each one still queued then (the gateway is stopping, and they
// live only in its memory).
func (g *Gateway) FlushUnconfirmed(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		g.unconfMu.Lock()
		left := slices.Clone(g.unconf)
		if g.unconfCur != nil {
			left = append(left, *g.unconfCur)
		}
		g.unconfMu.Unlock()
		if len(left) == 0 {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			for _, u := range left {
				g.log.Error("stopping with an unconfirmed save not recorded in its ledger", "doc", u.req.Doc, "tenant", u.req.Tenant,
					"user", u.req.User, "request", u.req.RequestID, "idempotency_key", u.req.IdempotencyKey, "since", u.at)
			}
			return
		}
	}
}
