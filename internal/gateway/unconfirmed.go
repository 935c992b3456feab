package gateway

import (
	"context"
	"errors"
	"fmt"
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
//
// With Config.SpoolDir set (a pod's emptyDir), each trace is also a file
// there until it is recorded, so a gateway container that crashes or is
// restarted during a syncer outage records them when it starts again
// (spool.go). A trace recorded just before a crash may be recorded twice;
// none is lost. The queue is bounded by count and by the bytes of the Yjs
// updates it keeps (a trace over that keeps no update: it is still
// recorded, found by user and request, not by client).

// CodeUnconfirmed names such a ledger entry.
const CodeUnconfirmed = "unconfirmed"

const (
	unconfirmedQueue = 4096
	// unconfirmedUpdateBytes bounds the Yjs updates the queue keeps (a
	// student may send 4 MiB updates while a syncer is down).
	unconfirmedUpdateBytes = 64 << 20
	unconfirmedPatience    = 30 * time.Minute
	// handoffWait bounds a stopping gateway's handoff to its peers.
	handoffWait = 3 * time.Second
)

type unconfirmed struct {
	Req store.Request `json:"req"`
	// Orig is the save itself (kind, document, tenant): once its trace is
	// recorded, the document's room is brought up to date, in case the
	// save committed after all and only its answer was lost.
	Orig store.Request `json:"orig"`
	At   time.Time     `json:"at"`
	// file is its spool file ("": none).
	file string
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
	at := g.cfg.Now()
	// The entry is stamped when it is written, up to the patience (and a
	// restart) later: it says when the save came.
	reason += "; it reached the gateway at " + at.UTC().Format(time.RFC3339Nano)
	rec := store.Request{Kind: store.KindReject, Doc: req.Doc, Tenant: req.Tenant, User: req.User, RequestID: req.RequestID,
		IdempotencyKey: req.IdempotencyKey, Code: CodeUnconfirmed, Reason: reason}
	g.unconfMu.Lock()
	defer g.unconfMu.Unlock()
	if req.Kind == store.KindYjs && len(req.Update) <= contract.MaxUpdateBytes {
		// Recorded with its hash and clients, so evidence asked about a
		// Yjs client finds it; unless the queue holds too many bytes.
		if g.unconfBytes+len(req.Update) <= unconfirmedUpdateBytes {
			rec.Update = req.Update
		} else {
			rec.Reason += fmt.Sprintf("; its update (%d bytes) was not kept, the gateway held %d MiB of unconfirmed updates", len(req.Update), unconfirmedUpdateBytes>>20)
		}
	}
	u := unconfirmed{Req: rec, Orig: store.Request{Kind: req.Kind, Doc: req.Doc, Tenant: req.Tenant}, At: at}
	g.spool(&u)
	g.queueUnconfirmed(u)
	g.startDrain()
}

// queueUnconfirmed appends u to the queue, dropping (and logging) the
// oldest trace when it is full; unconfMu held.
func (g *Gateway) queueUnconfirmed(u unconfirmed) {
	if len(g.unconf) >= unconfirmedQueue {
		old := g.unconf[0]
		g.log.Error("unconfirmed saves queue full; dropping the oldest trace", "doc", old.Req.Doc, "tenant", old.Req.Tenant,
			"user", old.Req.User, "request", old.Req.RequestID, "since", old.At)
		g.unconf = g.unconf[1:]
		g.forgetUnconfirmed(old)
		g.cfg.Metrics.unconfLost.WithLabelValues(lostQueueFull).Inc()
	}
	g.unconf = append(g.unconf, u)
	g.unconfBytes += len(u.Req.Update)
	g.cfg.Metrics.unconfirmed.Inc()
}

// startDrain starts the drain unless it runs; unconfMu held.
func (g *Gateway) startDrain() {
	if !g.unconfRunning && len(g.unconf) > 0 {
		g.unconfRunning = true
		go g.drainUnconfirmed()
	}
}

// forgetUnconfirmed drops a trace that left the queue for good (recorded,
// refused or given up): its bytes and its spool file. unconfMu held.
func (g *Gateway) forgetUnconfirmed(u unconfirmed) {
	g.unconfBytes -= len(u.Req.Update)
	g.unspool(u)
	g.cfg.Metrics.unconfirmed.Dec()
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
		err := g.recordOne(u.Req)
		g.unconfMu.Lock()
		g.unconfCur = nil
		handed := sameTrace(g.unconfHanded, u)
		g.unconfHanded = unconfirmed{}
		switch {
		case handed && err != nil:
			// A peer took it meanwhile (handoff.go): it records it.
			g.forgetUnconfirmed(u)
		case err == nil || !unavailable(err):
			if err != nil {
				g.log.Error("the syncer refused to record an unconfirmed save; not in its ledger", "doc", u.Req.Doc, "tenant", u.Req.Tenant,
					"user", u.Req.User, "request", u.Req.RequestID, "since", u.At, "err", err)
				g.cfg.Metrics.unconfLost.WithLabelValues(lostRefused).Inc()
			} else {
				// The syncer answers again: if the save committed after
				// all, its room gets it now.
				g.committedOutsideSync(u.Orig, store.Result{Outcome: store.OutcomeSaved})
			}
			g.forgetUnconfirmed(u)
			failed, backoff = 0, 100*time.Millisecond
		case g.cfg.Now().Sub(u.At) > unconfirmedPatience:
			g.log.Error("gave up recording an unconfirmed save", "doc", u.Req.Doc, "tenant", u.Req.Tenant, "user", u.Req.User,
				"request", u.Req.RequestID, "since", u.At, "err", err)
			g.forgetUnconfirmed(u)
			g.cfg.Metrics.unconfLost.WithLabelValues(lostPatience).Inc()
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
	var se *store.Error
	if req.UpdateTrace != nil && errors.As(err, &se) && se.Code == store.CodeInvalidRequest {
		// A syncer of the version before UpdateTrace (a rolling upgrade)
		// refuses the unknown field: the trace goes on record in the
		// reason instead of being dropped with the refusal.
		tr := req.UpdateTrace
		req.UpdateTrace = nil
		req.Reason += fmt.Sprintf("; its update (sha256 %s, clients %v, operations %v) was not kept", tr.SHA256, tr.Clients, tr.Ops)
		_, err = s.Apply(ctx, req)
	}
	return err
}

// FlushUnconfirmed waits until the queued traces are recorded or ctx ends;
// then it hands those still queued to a peer gateway (handoff.go), for up
// to handoffWait, and logs each one no peer took (the gateway is
// stopping: without a spool they live only in its memory; with one, they
// are recorded if the gateway starts again on the same spool, as a
// restarted container does, and lost with the pod).
func (g *Gateway) FlushUnconfirmed(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		g.unconfMu.Lock()
		// A handoff from a peer is refused from now on: it would come
		// after the last look at the queue (srv.Shutdown gives up on
		// handlers still running when its time is up).
		g.unconfStopping = true
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
			// A peer gateway records them instead (a rolling upgrade
			// deletes the pod, and its spool with it).
			hctx, cancel := context.WithTimeout(context.Background(), handoffWait)
			left = g.handOff(hctx, left)
			cancel()
			for _, u := range left {
				msg, attrs := "stopping with an unconfirmed save not recorded in its ledger; no peer gateway took it", []any{}
				if u.file != "" {
					msg, attrs = "stopping with an unconfirmed save not yet recorded in its ledger, and no peer gateway took it; kept in the spool, recorded if this container starts again in the same pod, lost with the pod", []any{"spool", u.file}
				}
				g.log.Error(msg, append([]any{"doc", u.Req.Doc, "tenant", u.Req.Tenant, "user", u.Req.User, "request", u.Req.RequestID,
					"idempotency_key", u.Req.IdempotencyKey, "since", u.At}, attrs...)...)
			}
			return
		}
	}
}
