package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
)

// A gateway stopping with traces of unconfirmed saves still waiting
// (their syncer has not answered) hands them to a peer gateway, which
// records them as its own. The spool (spool.go) outlives a crashed
// container, not the pod: a rolling upgrade deletes every pod, and a
// syncer outage during one lost the traces of the saves it refused.

// PathUnconfirmedHandoff (POST, internal token) takes a stopping peer's
// traces: a JSON array of them as the spool keeps them.
const PathUnconfirmedHandoff = "/v1/unconfirmed-handoff"

const (
	// handoffChunk bounds the traces of one handoff call.
	handoffChunk = 128
	// handoffPeerWait bounds one handoff call: a peer that does not
	// answer leaves the rest of handoffWait to the others.
	handoffPeerWait = time.Second
	// maxHandoffBody bounds a handoff call's body: 128 traces of at most
	// 1024 clients and 1024 ranges each, with room.
	maxHandoffBody = 32 << 20
)

// acceptHandoff serves PathUnconfirmedHandoff.
func (g *Gateway) acceptHandoff(w http.ResponseWriter, r *http.Request) {
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if g.cfg.InternalToken == "" || subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.InternalToken)) != 1 {
		syncer.WriteError(w, bad(http.StatusUnauthorized, "unauthenticated", "internal token required"))
		return
	}
	var in []unconfirmed
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHandoffBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, "bad handoff: "+err.Error()))
		return
	}
	if len(in) == 0 || len(in) > handoffChunk {
		syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("a handoff holds 1 to %d traces, not %d", handoffChunk, len(in))))
		return
	}
	for i, u := range in {
		if err := checkHandedTrace(u); err != nil {
			syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("trace %d: %v", i, err)))
			return
		}
	}
	g.unconfMu.Lock()
	held := len(g.unconf)
	if g.unconfCur != nil {
		held++
	}
	switch {
	case g.unconfStopping:
		// This gateway has flushed and exits: what it queued now would be
		// neither recorded, handed on nor logged.
		g.unconfMu.Unlock()
		syncer.WriteError(w, bad(http.StatusServiceUnavailable, store.CodeUnavailable, "this gateway is stopping"))
		return
	case held+len(in) > unconfirmedQueue:
		// Taken, they would push this gateway's own oldest traces out of
		// its queue: the sender tries another peer.
		g.unconfMu.Unlock()
		syncer.WriteError(w, bad(http.StatusServiceUnavailable, store.CodeUnavailable,
			fmt.Sprintf("%d unconfirmed saves wait here already, room for %d", held, unconfirmedQueue-held)))
		return
	}
	for _, u := range in {
		u.file = ""
		g.spool(&u)
		g.queueUnconfirmed(u)
	}
	g.startDrain()
	g.unconfMu.Unlock()
	g.log.Info("took over unconfirmed saves from a stopping gateway", "traces", len(in))
	w.WriteHeader(http.StatusNoContent)
}

// handOff gives the traces in left to a peer gateway, trying each other
// shard's in turn, and forgets those one took. It returns those nobody
// took.
func (g *Gateway) handOff(ctx context.Context, left []unconfirmed) []unconfirmed {
	if g.cfg.InternalToken == "" {
		return left
	}
	var bases []string
	for shard := range g.cfg.Shards {
		if shard == g.cfg.SelfShard {
			continue
		}
		if base, ok := g.peerBase(shard); ok {
			bases = append(bases, base)
		}
	}
	var kept []unconfirmed
	failed := map[string]bool{} // peers that did not take a chunk: not asked again
	for len(left) > 0 {
		chunk := left[:min(len(left), handoffChunk)]
		left = left[len(chunk):]
		wire := make([]unconfirmed, len(chunk))
		for i, u := range chunk {
			wire[i] = onDisk(u)
		}
		body, err := json.Marshal(wire)
		taken := false
		for _, base := range bases {
			if err != nil || ctx.Err() != nil {
				break
			}
			if failed[base] {
				continue
			}
			// One peer that does not answer (its pod gone, its address
			// black-holed) does not spend the others' time.
			pctx, cancel := context.WithTimeout(ctx, handoffPeerWait)
			err = g.postHandoff(pctx, base, body)
			cancel()
			if err == nil {
				taken = true
				g.log.Info("handed unconfirmed saves to a peer gateway, which records them", "peer", base, "traces", len(chunk))
				break
			}
			g.log.Warn("a peer gateway did not take unconfirmed saves", "peer", base, "err", err)
			failed[base], err = true, nil
		}
		if !taken {
			kept = append(kept, chunk...)
			continue
		}
		g.unconfMu.Lock()
		for _, u := range chunk {
			g.dropQueued(u)
		}
		g.unconfMu.Unlock()
	}
	return kept
}

func (g *Gateway) postHandoff(ctx context.Context, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+PathUnconfirmedHandoff, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+g.cfg.InternalToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// dropQueued forgets u, handed to a peer: at once if it waits in the
// queue; if it is being recorded meanwhile, once that attempt ends (a
// failed one is not queued again; one that succeeds is recorded by both
// gateways, as after a crash: twice, never lost). unconfMu held.
func (g *Gateway) dropQueued(u unconfirmed) {
	for i, q := range g.unconf {
		if sameTrace(q, u) {
			g.unconf = append(g.unconf[:i], g.unconf[i+1:]...)
			g.forgetUnconfirmed(q)
			return
		}
	}
	if g.unconfCur != nil && sameTrace(*g.unconfCur, u) {
		g.unconfHanded = u
	}
	g.unspool(u)
}

func sameTrace(a, b unconfirmed) bool {
	return a.At.Equal(b.At) && a.file == b.file && a.Req.Doc == b.Req.Doc && a.Req.RequestID == b.Req.RequestID
}

// checkHandedTrace says whether u, from a peer, is an unconfirmed save's
// trace as a gateway makes it and nothing more: no student text (a save's
// content, a Yjs update: a handoff sends its trace), the save it stands
// for named by kind, document and tenant only, and an update's trace
// within the bounds a syncer records.
func checkHandedTrace(u unconfirmed) error {
	if err := checkTrace(u); err != nil {
		return err
	}
	r, o := u.Req, u.Orig
	switch {
	case r.Update != nil || r.Content != "" || r.Title != nil || r.StateVector != nil || r.BaseRevision != 0:
		return errors.New("a trace carries no content, update, title, state vector or base revision")
	case r.UpdateTrace != nil && (len(r.UpdateTrace.Clients) > store.MaxTraceClients || len(r.UpdateTrace.Ops) > store.MaxTraceClients):
		return fmt.Errorf("an update's trace names at most %d clients", store.MaxTraceClients)
	case !reflect.DeepEqual(o, store.Request{Kind: o.Kind, Doc: r.Doc, Tenant: r.Tenant}):
		return errors.New("the save a trace stands for is named by its kind, the trace's document and tenant only")
	case o.Kind != store.KindCreate && o.Kind != store.KindSave && o.Kind != store.KindYjs:
		return fmt.Errorf("not the trace of a save: %q", o.Kind)
	}
	return nil
}
