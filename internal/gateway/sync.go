package gateway

// The Yjs sync WebSocket (internal/syncws) on the gateway: a syncws.Backend
// and syncws.Authenticator over this pod's syncer, and the routing of
// PathSync+docID to the document's shard.
//
// A connection for a document of this pod's shard is served by the local
// Hub; one for a document of another shard is forwarded unchanged (the
// WebSocket upgrade included, httputil.ReverseProxy) to that shard's
// gateway (Peers / PeerPattern), which authenticates it. So all clients of
// a document share one Hub room, on the document's own pod.
//
// Durability: ApplyUpdate is the syncer's save (store.KindYjs), committed
// before it returns, so the Hub relays nothing uncommitted; a replayed
// update is a duplicate and relays nothing. AnnounceStateVector is the
// syncer's sync step 1 (store.KindSync1), which records the state vector
// in the ledger (with what the client holds that the server lacks: the
// evidence API's saved-locally-not-synced) and computes the answer from
// the committed state in the same request; SyncStep1 returns that answer.
//
// Protocol at a flip: WatchProtocols polls the stage of the tenants with
// open connections every interval and calls Hub.SetProtocol when a
// tenant's protocol changes. Connections opened later ask the syncer.
//
// REST saves reach connected Yjs clients live: after a create, save or
// HTTP Yjs update commits, the gateway that served it tells the document's
// gateway (itself, or POST PathSyncNotify+docID with the internal token),
// whose backend asks the syncer for what the room lacks (YjsSince the
// state vector the room last caught up to) and publishes it to the room
// (Hub.Publish). Updates the room already has are no-ops for Yjs clients.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/syncws"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// ProtocolOf maps a cohort stage to the protocol its clients use.
func ProtocolOf(stage string) string {
	switch stage {
	case dataplane.StageLocalFirst, dataplane.StageComplete, dataplane.StageLegacyRetired:
		return contract.ProtocolLocalFirst
	}
	return contract.ProtocolWriteThrough
}

// SyncBackend implements syncws.Backend, syncws.SessionObserver and the
// document half of syncws.Authenticator with this gateway's syncers.
type SyncBackend struct {
	g    *Gateway
	boot string // this process, in sync request IDs (bootID)

	mu       sync.Mutex
	step1    map[string]step1Answer // by ConnID: AnnounceStateVector's answer for SyncStep1
	recorded map[string]bool        // by ConnID: the syncer already recorded the refusal
	// announced: by ConnID, the state vector of a client that held
	// operations the server lacked when it announced it; on disconnect the
	// syncer records when it was last seen, if they are still missing.
	announced map[string][]byte
	tenants   map[string]int    // open sessions per document tenant
	proto     map[string]string // last protocol told per tenant
	docs      map[string]int    // open sessions per document
	roomSV    map[string][]byte // per open document: the server state vector its room caught up to
	// firstSV: by document, then ConnID, the first history the
	// connection was given: the server's state vector of its first sync
	// step 1 answer, or, when that was empty (the document did not exist
	// yet), of the first update it was relayed or published after. A
	// connection given a history since replaced holds text the document
	// no longer has (see historyReplaced).
	firstSV map[string]map[string][]byte
	// roomDec: roomSV decoded, per document (roomState).
	roomDec map[string]decodedSV
	hub     *syncws.Hub
}

// PathSyncNotify+docID?tenant=T (POST, internal token) tells a document's
// gateway that a save of tenant T, the document's owner, committed outside
// its sync WebSocket.
const PathSyncNotify = "/v1/sync-notify/"

type step1Answer struct {
	sv, update, serverSV []byte
}

// bootID names one gateway process among those a shard has had: the hub
// numbers its connections from 1 in every process, and a sync session's
// request ID must name that session alone, after a restart too.
func bootID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewSyncBackend returns the gateway's sync backend.
func (g *Gateway) NewSyncBackend() *SyncBackend {
	b := &SyncBackend{g: g, boot: bootID(), step1: map[string]step1Answer{}, recorded: map[string]bool{}, announced: map[string][]byte{},
		tenants: map[string]int{}, proto: map[string]string{}, docs: map[string]int{}, roomSV: map[string][]byte{},
		firstSV: map[string]map[string][]byte{}, roomDec: map[string]decodedSV{}}
	g.syncBE.Store(b)
	return b
}

// Auth returns the Authenticator: the REST API's tokens, document tenants
// from the syncer.
func (b *SyncBackend) Auth() syncws.Authenticator {
	return syncws.TokenAuth{Key: b.g.cfg.TokenKey, Tenants: b, Now: b.g.cfg.Now}
}

func docTenant(s syncws.Session) string {
	if s.DocTenant != "" {
		return s.DocTenant
	}
	return s.Tenant
}

func (b *SyncBackend) requestID(s syncws.Session) string {
	return fmt.Sprintf("ws-%d-%s-%s", b.g.cfg.SelfShard, b.boot, s.ConnID)
}

// DocumentTenant implements the Authenticator's document lookup.
func (b *SyncBackend) DocumentTenant(ctx context.Context, docID string) (string, error) {
	c, err := b.g.syncerFor(docID)
	if err != nil {
		return "", err
	}
	return c.DocumentTenant(ctx, docID)
}

// Protocol implements syncws.Backend.
func (b *SyncBackend) Protocol(ctx context.Context, s syncws.Session) (string, error) {
	t := docTenant(s)
	st, err := b.g.ownSyncer().Stage(ctx, t)
	if err != nil {
		return "", err
	}
	p := ProtocolOf(st.Stage)
	b.mu.Lock()
	b.proto[t] = p // what this tenant's connections were told last
	b.mu.Unlock()
	return p, nil
}

// mapErr turns a syncer refusal into the Hub's close codes; recorded
// notes refusals the syncer already wrote to the ledger.
func (b *SyncBackend) mapErr(s syncws.Session, err error) error {
	var e *store.Error
	if !errors.As(err, &e) {
		return err
	}
	var kind error
	switch e.Code {
	case store.CodeInvalidUpdate, store.CodeInvalidSV:
		kind = syncws.ErrMalformedUpdate
	case store.CodeTooLarge:
		kind = syncws.ErrTooLarge
	case store.CodeNotFound:
		kind = syncws.ErrForbidden // the document belongs to another tenant
	case store.CodeForeignHistory:
		kind = syncws.ErrForeignHistory
	case store.CodeInvalidRequest:
		return fmt.Errorf("%w: %s", syncws.ErrMalformedUpdate, e.Message)
	default:
		return err
	}
	b.mu.Lock()
	b.recorded[s.ConnID] = true
	b.mu.Unlock()
	return fmt.Errorf("%w: %s", kind, e.Message)
}

// AnnounceStateVector implements syncws.Backend: the syncer's sync step 1
// records sv in the ledger and answers from committed state.
func (b *SyncBackend) AnnounceStateVector(ctx context.Context, s syncws.Session, sv []byte) error {
	return b.announce(ctx, s, sv, false)
}

func (b *SyncBackend) announce(ctx context.Context, s syncws.Session, sv []byte, again bool) error {
	if len(sv) > contract.MaxStateVectorBytes {
		// The syncer's limit; refused here (and recorded by the Hub's
		// Reject), as ApplyUpdate does: the syncer's request check
		// records nothing, and its refusal left no trace in the ledger.
		return fmt.Errorf("%w: state vector is %d bytes, the limit is %d", syncws.ErrTooLarge, len(sv), contract.MaxStateVectorBytes)
	}
	c, err := b.g.syncerFor(s.DocID)
	if err != nil {
		return err
	}
	res, err := c.Apply(ctx, store.Request{Kind: store.KindSync1, Doc: s.DocID, Tenant: s.Tenant, User: s.User,
		RequestID: b.requestID(s), StateVector: sv, Again: again})
	if err != nil {
		return b.mapErr(s, err)
	}
	ans := step1Answer{sv: append([]byte(nil), sv...), update: res.Update, serverSV: res.StateVector}
	if len(ans.serverSV) == 0 {
		ans.serverSV = []byte{0} // no Yjs state yet: the empty state vector
	}
	b.mu.Lock()
	if rs, ok := b.roomSV[s.DocID]; ok && !again && store.HistoryReplaced(ans.serverSV, rs) && store.HistoryReplaced(rs, ans.serverSV) {
		// The answer and the room's state are of two histories: the
		// document was deleted outside the gateway and created again
		// while the answer was on its way, and historyReplaced, which
		// did not know this connection yet, has sent it the new text.
		// Given the old text too, it would show both run together: ask
		// again (the first request recorded the announcement).
		b.mu.Unlock()
		return b.announce(ctx, s, sv, true)
	}
	if len(res.Missing) > 0 {
		b.announced[s.ConnID] = ans.sv
	}
	b.step1[s.ConnID] = ans
	if b.docs[s.DocID] > 0 {
		conns := b.firstSV[s.DocID]
		if conns == nil {
			conns = map[string][]byte{}
			b.firstSV[s.DocID] = conns
		}
		if _, ok := conns[s.ConnID]; !ok {
			conns[s.ConnID] = ans.serverSV
		}
	}
	if _, ok := b.roomSV[s.DocID]; !ok && b.docs[s.DocID] > 0 {
		b.roomSV[s.DocID] = ans.serverSV
	}
	b.mu.Unlock()
	return nil
}

// SyncStep1 implements syncws.Backend with the answer AnnounceStateVector
// got (one syncer round trip per handshake).
func (b *SyncBackend) SyncStep1(ctx context.Context, s syncws.Session, clientSV []byte) ([]byte, []byte, error) {
	b.mu.Lock()
	ans, ok := b.step1[s.ConnID]
	delete(b.step1, s.ConnID)
	b.mu.Unlock()
	if !ok || !bytes.Equal(ans.sv, clientSV) {
		if err := b.AnnounceStateVector(ctx, s, clientSV); err != nil {
			return nil, nil, err
		}
		b.mu.Lock()
		ans = b.step1[s.ConnID]
		delete(b.step1, s.ConnID)
		b.mu.Unlock()
	}
	return ans.update, ans.serverSV, nil
}

// ApplyUpdate implements syncws.Backend: the syncer's save, committed
// before it returns.
func (b *SyncBackend) ApplyUpdate(ctx context.Context, s syncws.Session, update []byte) ([]byte, error) {
	if len(update) > contract.MaxUpdateBytes {
		// The syncer's limit; refused here (and recorded by the Hub's
		// Reject) rather than by its request-size check, which records
		// nothing.
		b.g.cfg.Metrics.syncUpdates.WithLabelValues(updateRefused).Inc()
		return nil, fmt.Errorf("%w: update is %d bytes, the limit is %d", syncws.ErrTooLarge, len(update), contract.MaxUpdateBytes)
	}
	m := b.g.cfg.Metrics
	if carriesNothing(update) {
		// A client with nothing new answers the server's sync step 1 with
		// an update of no operations and no deletions. To a document that
		// exists it changes nothing (the syncer would answer it as a
		// duplicate). To an ID without one, committed, it created the
		// document, empty and this student's, and the gateway cannot tell
		// whose answer that is: a tab opening a new ID sends the same two
		// bytes as a tab with an empty copy reconnecting after the legacy
		// application deleted the document, or answering just after it
		// did. The deleted document read as hers, and the school's create
		// of the ID got 409 already_exists. So only text creates a
		// document over sync: the first update that carries some (a
		// client's first keystroke, or an offline copy's step 2), as
		// docs/api.md says. Nothing is lost by waiting: the client holds
		// nothing the server lacks.
		m.syncUpdates.WithLabelValues(updateDuplicate).Inc()
		return nil, nil
	}
	c, err := b.g.syncerFor(s.DocID)
	if err != nil {
		m.syncUpdates.WithLabelValues(updateFailed).Inc()
		return nil, err
	}
	start := time.Now()
	req := store.Request{Kind: store.KindYjs, Doc: s.DocID, Tenant: s.Tenant, User: s.User, RequestID: b.requestID(s), Update: update}
	res, err := c.Apply(ctx, req)
	if err != nil {
		if unavailable(err) {
			// Its fate is unknown (the connection closes with 4500 and the
			// client sends it again): the ledger gets a trace of it, as
			// for a REST save, and its room is brought up to date once
			// the syncer answers again.
			b.g.recordUnconfirmed(req, err)
		}
		if foreignHandled(err) {
			// Refused, but its text may have been merged and committed:
			// the room gets what it lacks, as after a REST save.
			b.g.committedOutsideSync(store.Request{Kind: store.KindYjs, Doc: s.DocID, Tenant: s.Tenant}, store.Result{Outcome: store.OutcomeSaved})
		}
		err = b.mapErr(s, err)
		outcome := updateFailed
		if refusedUpdate(err) {
			outcome = updateRefused
		}
		m.syncUpdates.WithLabelValues(outcome).Inc()
		return nil, err
	}
	m.syncCommit.Observe(time.Since(start).Seconds())
	if res.Outcome == store.OutcomeDuplicate {
		m.syncUpdates.WithLabelValues(updateDuplicate).Inc()
		return nil, nil
	}
	b.mu.Lock()
	hub := b.hub
	room, open := b.roomState(s.DocID)
	if open && len(res.StateVector) > 0 {
		// The room is relayed this update: a room or connection that
		// opened before the document existed holds its history from now
		// on. Without this, a student who typed a new document into
		// existence was, when it was deleted and created again, sent the
		// new text over the old ("abcwxyz12").
		if emptySV(b.roomSV[s.DocID]) {
			b.roomSV[s.DocID] = res.StateVector
		}
		b.givenHistory(s.DocID, res.StateVector)
	}
	b.mu.Unlock()
	if open && hub != nil && len(res.StateVector) > 0 && store.ReachesBeyond(room, res.StateVector) {
		// The update created the document again (it was deleted outside
		// the gateway) while clients of the deleted one are in the room:
		// relayed to them, it would run the new text into the old.
		b.historyReplaced(ctx, c, hub, s.DocID, false)
	}
	m.syncUpdates.WithLabelValues(updateRelayed).Inc()
	return update, nil
}

// carriesNothing reports a Yjs update that holds no operations and no
// deletions (skips aside). A client's is two bytes; only short ones are
// decoded, not every keystroke's. One that does not decode is the
// syncer's to refuse.
func carriesNothing(update []byte) bool {
	if len(update) == 0 || len(update) > 64 {
		return false
	}
	dec, err := yjs.DecodeUpdate(update)
	if err != nil {
		return false
	}
	for _, it := range dec.Structs {
		if !it.IsSkip() {
			return false
		}
	}
	for _, rs := range dec.DeleteSet {
		for _, r := range rs {
			if r.Len > 0 {
				return false
			}
		}
	}
	return true
}

// refusedUpdate reports an error the Hub answers as the client's fault
// (closing with a 44xx code), as against a failure to commit (4500).
func refusedUpdate(err error) bool {
	for _, e := range []error{syncws.ErrMalformedUpdate, syncws.ErrTooLarge, syncws.ErrForbidden, syncws.ErrForeignHistory} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Reject implements syncws.Backend: the refusal goes to the document's
// ledger, unless the syncer recorded it already.
func (b *SyncBackend) Reject(ctx context.Context, s syncws.Session, code int, reason string, msg []byte) {
	b.mu.Lock()
	done := b.recorded[s.ConnID]
	delete(b.recorded, s.ConnID)
	b.mu.Unlock()
	if done || s.DocID == "" || !contract.ValidDocID(s.DocID) {
		return
	}
	c, err := b.g.syncerFor(s.DocID)
	if err != nil {
		return
	}
	tenant, user := s.Tenant, s.User
	now := b.g.cfg.Now()
	switch {
	case tenant == "":
		tenant, user = unauthenticated, ""
		ok, note := b.g.unauth.admit(s.DocID, now)
		if !ok {
			return
		}
		reason += note
	case !b.g.users.allow(tenant, user, now):
		// Each refusal ends its connection, and connections are not
		// rate-limited: one token (another school's, whose refusals go
		// on the owner's document) wrote a ledger row per connection as
		// fast as it could connect. They count against the user's
		// budget, as the REST API's refusals do; past it they are
		// recorded a few per document, then counted.
		ok, note := b.g.syncRefusals.admit(tenant+"\x00"+s.DocID, now)
		if !ok {
			return
		}
		reason += note
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// A refused update (over the rate, say) goes on record with it, so
	// that evidence asked about its clients shows the refusal.
	var update []byte
	if m, err := yprotocol.DecodeClient(msg); err == nil && m.Type == yprotocol.MessageSync &&
		(m.Sync == yprotocol.SyncStep2 || m.Sync == yprotocol.SyncUpdate) && len(m.Payload) <= contract.MaxUpdateBytes {
		update = m.Payload
	}
	if _, err := c.Apply(ctx, store.Request{Kind: store.KindReject, Doc: s.DocID, Tenant: tenant, User: user,
		RequestID: b.requestID(s), Code: fmt.Sprintf("websocket_%d", code), Reason: reason, Update: update}); err != nil {
		b.g.log.Warn("recording a sync refusal", "doc", s.DocID, "err", err)
	}
}

// Opened implements syncws.SessionObserver.
func (b *SyncBackend) Opened(_ context.Context, s syncws.Session) {
	b.g.cfg.Metrics.syncConns.Inc()
	b.mu.Lock()
	b.tenants[docTenant(s)]++
	b.docs[s.DocID]++
	b.mu.Unlock()
}

// Closed implements syncws.SessionObserver.
func (b *SyncBackend) Closed(_ context.Context, s syncws.Session, code int, reason string) {
	b.g.cfg.Metrics.syncConns.Dec()
	b.g.cfg.Metrics.syncCloses.WithLabelValues(closeLabel(code, reason)).Inc()
	t := docTenant(s)
	b.mu.Lock()
	defer b.mu.Unlock()
	if sv, ok := b.announced[s.ConnID]; ok {
		delete(b.announced, s.ConnID)
		go b.lastSeen(s, sv, code, reason)
	}
	delete(b.step1, s.ConnID)
	delete(b.recorded, s.ConnID)
	if conns := b.firstSV[s.DocID]; conns != nil {
		delete(conns, s.ConnID)
		if len(conns) == 0 {
			delete(b.firstSV, s.DocID)
		}
	}
	if b.tenants[t]--; b.tenants[t] <= 0 {
		delete(b.tenants, t)
		delete(b.proto, t)
	}
	if b.docs[s.DocID]--; b.docs[s.DocID] <= 0 {
		delete(b.docs, s.DocID)
		delete(b.roomSV, s.DocID)
		delete(b.roomDec, s.DocID)
	}
}

// lastSeen tells the syncer a client that had announced operations the
// server lacked is gone; it records when, if they are still missing.
func (b *SyncBackend) lastSeen(s syncws.Session, sv []byte, code int, reason string) {
	c, err := b.g.syncerFor(s.DocID)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Apply(ctx, store.Request{Kind: store.KindDisconnect, Doc: s.DocID, Tenant: s.Tenant, User: s.User,
		RequestID: b.requestID(s), StateVector: sv, Code: fmt.Sprintf("websocket_%d", code), Reason: reason}); err != nil {
		b.g.log.Warn("recording a disconnect", "doc", s.DocID, "err", err)
	}
}

// WatchProtocols polls, every interval until ctx ends, the stage of each
// tenant with open sync connections and tells them (Hub.SetProtocol) when
// their protocol changed. A flip reaches connected clients within about
// one interval; connections opened later ask the syncer at connect.
func (b *SyncBackend) WatchProtocols(ctx context.Context, hub *syncws.Hub, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		tenants := make([]string, 0, len(b.tenants))
		for t := range b.tenants {
			tenants = append(tenants, t)
		}
		for t := range b.proto {
			if _, open := b.tenants[t]; !open {
				delete(b.proto, t) // told to connections since closed or refused
			}
		}
		b.mu.Unlock()
		for _, tenant := range tenants {
			st, err := b.g.ownSyncer().Stage(ctx, tenant)
			if err != nil {
				continue
			}
			p := ProtocolOf(st.Stage)
			b.mu.Lock()
			prev := b.proto[tenant]
			_, still := b.tenants[tenant]
			if still {
				b.proto[tenant] = p
			}
			b.mu.Unlock()
			// prev is what connections were last told ("" unknown: tell
			// again, harmless).
			if still && prev != p {
				b.g.log.Info("cohort protocol changed", "tenant", tenant, "protocol", p, "stage", st.Stage, "epoch", st.Epoch)
				hub.SetProtocol(tenant, p)
			}
		}
	}
}

// peerBase is the base URL of shard's gateway.
func (g *Gateway) peerBase(shard int) (string, bool) {
	switch {
	case len(g.cfg.Peers) > 0:
		return strings.TrimRight(g.cfg.Peers[shard], "/"), true
	case g.cfg.PeerPattern != "":
		return strings.TrimRight(fmt.Sprintf(g.cfg.PeerPattern, shard), "/"), true
	}
	return "", false
}

// SyncHandler serves PathSync+docID: the document's shard's connections
// on hub, the others forwarded to their shard's gateway.
func (g *Gateway) SyncHandler(hub *syncws.Hub) http.Handler {
	proxies := map[int]*httputil.ReverseProxy{}
	for shard := range g.cfg.Shards {
		if shard == g.cfg.SelfShard {
			continue
		}
		base, ok := g.peerBase(shard)
		if !ok {
			continue
		}
		target, err := url.Parse(base)
		if err != nil {
			continue
		}
		p := httputil.NewSingleHostReverseProxy(target)
		p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("forwarding a sync connection", "shard", shard, "err", err)
			msg := fmt.Sprintf("the gateway of shard %d is unreachable", shard)
			if refuseUpgrade(w, r, contract.CloseInternalError, msg+"; retry") {
				return
			}
			http.Error(w, msg, http.StatusBadGateway)
		}
		// At this gateway's shutdown each forwarded connection ends with
		// a close frame, not cut (forward.go).
		p.Transport = forwardTransport{base: http.DefaultTransport, stop: g.fwd.stopping()}
		proxies[shard] = p
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isUpgrade(r) {
			// No WebSocket to route: the hub answers it here, for any
			// shard's document (426, Upgrade: websocket). Forwarded, the
			// 426 came back without its Upgrade header (hop-by-hop: the
			// forwarding drops it), or as 502 when that shard's gateway
			// was down, and a plain request cost a forward.
			hub.ServeHTTP(w, r)
			return
		}
		doc := strings.TrimPrefix(r.URL.Path, contract.PathSync)
		shard := placement.Shard(doc, g.cfg.Shards)
		// A gateway shutting down forwards nothing more: the hub refuses
		// the connection with 4503, and the client reconnects through
		// another gateway. (Connections it forwarded before are closed
		// with 1001 by ShutdownForwarded. Nothing is lost; every update
		// was committed before it was acknowledged.)
		if shard == g.cfg.SelfShard || g.cfg.Shards == 1 || !syncws.ValidDocID(doc) || hub.Closing() {
			hub.ServeHTTP(w, r)
			return
		}
		p := proxies[shard]
		if p == nil {
			http.Error(w, fmt.Sprintf("no route to shard %d", shard), http.StatusServiceUnavailable)
			return
		}
		g.fwd.begin()
		defer g.fwd.end()
		g.cfg.Metrics.syncFwd.Inc()
		defer g.cfg.Metrics.syncFwd.Dec()
		cs := &clientSide{ResponseWriter: w}
		p.ServeHTTP(cs, r.WithContext(context.WithValue(r.Context(), clientSideKey{}, cs)))
	})
}

// refuseUpgrade answers a WebSocket upgrade with a connection closed
// with code and reason, as the Hub refuses: a browser sees nothing of a
// failed upgrade's HTTP status, only a close without a code (1006). It
// reports false when r is no upgrade or it could not accept it.
func refuseUpgrade(w http.ResponseWriter, r *http.Request, code int, reason string) bool {
	if !isUpgrade(r) {
		return false
	}
	// Nothing is read from the connection and nothing of the document
	// is sent: the origin check is the document's gateway's.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{contract.SyncSubprotocol}, InsecureSkipVerify: true})
	if err != nil {
		return true // Accept answered with an HTTP error
	}
	_ = ws.Close(websocket.StatusCode(code), reason)
	return true
}

// isUpgrade reports a request for a WebSocket upgrade, as the hub tells
// one.
func isUpgrade(r *http.Request) bool { return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") }

// refresh publishes to doc's room of its owner what it lacks of the
// committed state. The owner is the syncer's answer, not the tenant of
// the request that prompted the refresh: that request may have been
// another tenant's, refused or never committed (an unconfirmed save of
// another school's document ID), and publishing to its tenant's room
// would hand that room the owner's text and close the owner's
// connections as another tenant's (Publish claims the document).
func (b *SyncBackend) refresh(ctx context.Context, doc string) {
	b.mu.Lock()
	hub := b.hub
	sv, open := b.roomSV[doc]
	b.mu.Unlock()
	if hub == nil || !open || !hub.HasRoom(doc) {
		return
	}
	c, err := b.g.syncerFor(doc)
	if err != nil {
		return
	}
	out, err := c.YjsSince(ctx, doc, sv)
	if foreignHandled(err) {
		b.historyReplaced(ctx, c, hub, doc, true)
		return
	}
	if err != nil {
		b.g.log.Warn("relaying a REST save to sync clients", "doc", doc, "err", err)
		return
	}
	if out.Tenant == "" {
		return // no document (yet): nobody's room to publish to
	}
	// Published even when there is nothing to send: it also closes other
	// tenants' connections that opened doc before the owner's commit made
	// it the owner's.
	hub.Publish(out.Tenant, doc, out.Update)
	b.mu.Lock()
	if _, still := b.roomSV[doc]; still && len(out.StateVector) > 0 {
		b.roomSV[doc] = out.StateVector
		b.givenHistory(doc, out.StateVector)
	}
	b.mu.Unlock()
}

// roomState is the room's state vector (roomSV) decoded, decoded again
// only when it changed: every update is checked against it, and decoding
// it for each made garbage enough to show in the gateway's memory. The
// map returned is never changed. b.mu is held.
func (b *SyncBackend) roomState(doc string) (yjs.StateVector, bool) {
	raw, ok := b.roomSV[doc]
	if !ok {
		delete(b.roomDec, doc)
		return nil, false
	}
	if c, ok := b.roomDec[doc]; ok && bytes.Equal(c.raw, raw) {
		return c.sv, true
	}
	sv, err := yjs.DecodeStateVector(raw)
	if err != nil {
		sv = nil
	}
	b.roomDec[doc] = decodedSV{raw: raw, sv: sv}
	return sv, true
}

// decodedSV is a state vector and its encoding.
type decodedSV struct {
	raw []byte
	sv  yjs.StateVector
}

// emptySV reports a state vector naming no operations ("no document").
func emptySV(sv []byte) bool { return len(sv) == 0 || (len(sv) == 1 && sv[0] == 0) }

// givenHistory records, for doc's connections first answered from no
// document, that they were sent sv's history. b.mu is held.
func (b *SyncBackend) givenHistory(doc string, sv []byte) {
	if emptySV(sv) {
		return
	}
	for id, first := range b.firstSV[doc] {
		if emptySV(first) {
			b.firstSV[doc][id] = sv
		}
	}
}

// historyReplaced handles a room that may hold clients of a history of
// doc that is gone (the document was deleted outside the gateway and its
// ID taken again): a relay's state vector reaching beyond the
// document's, or a document created while its room was open. Relaying
// the new history to them would make them show the deleted text and the
// new one together, and their edits would land in the wrong text. Each
// connection first answered from a history since replaced is closed with
// 4409 (foreign history: a local-first client sets its copy aside and
// starts again from the server's); nothing more is sent to it. With
// publish, the room's other connections, opened since, get the
// document's whole state (what they hold already is a no-op to them).
func (b *SyncBackend) historyReplaced(ctx context.Context, c *syncer.Client, hub *syncws.Hub, doc string, publish bool) {
	cur, err := c.YjsSince(ctx, doc, nil)
	if err != nil || cur.Tenant == "" {
		if err != nil {
			b.g.log.Warn("reading a re-created document for its sync clients", "doc", doc, "err", err)
		}
		return
	}
	stale := map[string]bool{}
	b.mu.Lock()
	for id, first := range b.firstSV[doc] {
		if store.HistoryReplaced(first, cur.StateVector) {
			stale[id] = true
		}
	}
	if sv, still := b.roomSV[doc]; still && len(cur.StateVector) > 0 && store.HistoryReplaced(sv, cur.StateVector) {
		b.roomSV[doc] = cur.StateVector
	}
	b.mu.Unlock()
	if n := hub.CloseConnections(doc, stale, contract.CloseForeignHistory,
		"this document was deleted and created again: your copy is of the deleted one"); n > 0 {
		b.g.log.Info("closed the sync connections holding a replaced history of a document", "doc", doc, "connections", n)
	}
	if publish {
		hub.Publish(cur.Tenant, doc, cur.Update)
		b.mu.Lock()
		b.givenHistory(doc, cur.StateVector)
		b.mu.Unlock()
	}
}

// foreignHandled reports whether err is the syncer's answer to an update
// from a copy of the document it does not know (409 foreign_history): the
// update was refused, but its text was preserved and, when it merged
// cleanly, committed into the document.
func foreignHandled(err error) bool {
	var e *store.Error
	return errors.As(err, &e) && e.Code == store.CodeForeignHistory
}

// committedOutsideSync tells the document's gateway that a REST request
// committed, so its connected Yjs clients get the change live. Best
// effort and asynchronous: clients get it at their next sync anyway.
func (g *Gateway) committedOutsideSync(req store.Request, res store.Result) {
	switch req.Kind {
	case store.KindCreate, store.KindSave, store.KindYjs:
	default:
		return
	}
	if res.Replayed || res.Outcome == store.OutcomeDuplicate {
		return
	}
	doc := req.Doc
	shard := placement.Shard(doc, g.cfg.Shards)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if shard == g.cfg.SelfShard || g.cfg.Shards == 1 {
			if be := g.syncBE.Load(); be != nil {
				be.refresh(ctx, doc)
			}
			return
		}
		base, ok := g.peerBase(shard)
		if !ok {
			return
		}
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+PathSyncNotify+url.PathEscape(doc)+"?tenant="+url.QueryEscape(req.Tenant), nil)
		if err != nil {
			return
		}
		r.Header.Set("Authorization", "Bearer "+g.cfg.InternalToken)
		resp, err := g.cfg.HTTP.Do(r)
		if err != nil {
			g.log.Debug("sync notify", "doc", doc, "err", err)
			return
		}
		_ = resp.Body.Close()
	}()
}

// syncNotify serves PathSyncNotify+docID for peers.
func (g *Gateway) syncNotify(w http.ResponseWriter, r *http.Request) {
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if g.cfg.InternalToken == "" || subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.InternalToken)) != 1 {
		syncer.WriteError(w, bad(http.StatusUnauthorized, "unauthenticated", "internal token required"))
		return
	}
	// A tenant parameter (sent for gateways of the version before, which
	// require it) is not used: the room is the owner's, as the syncer says.
	if be := g.syncBE.Load(); be != nil {
		be.refresh(r.Context(), r.PathValue("id"))
	}
	w.WriteHeader(http.StatusNoContent)
}

// HandlerWithSync is Handler with the sync WebSocket mounted at PathSync
// (its backend, if made with NewSyncBackend, publishes REST saves to it).
func (g *Gateway) HandlerWithSync(hub *syncws.Hub) http.Handler {
	if be := g.syncBE.Load(); be != nil {
		be.mu.Lock()
		be.hub = hub
		be.mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.Handle(contract.PathSync, g.SyncHandler(hub))
	mux.HandleFunc("POST "+PathSyncNotify+"{id}", g.syncNotify)
	mux.Handle("/", g.routes())
	return canonicalPaths(mux)
}

// Refused implements syncws.RefusalObserver: a connection refused before
// it opened counts under the code it was sent.
func (b *SyncBackend) Refused(_ context.Context, _ syncws.Session, code int) {
	b.g.cfg.Metrics.syncCloses.WithLabelValues(closeLabel(code, "")).Inc()
}

// closeLabel bounds yawp_gateway_sync_closes_total's code label to the
// codes this gateway sends, "client" when the client closed first (its
// code is its own choice, anything in 1000-4999, and must neither grow
// the label set nor pass for the server's 4500), and "other".
func closeLabel(code int, reason string) string {
	if strings.HasPrefix(reason, "client: ") {
		return "client"
	}
	switch code {
	case 1000, contract.CloseGoingAway, contract.CloseRateLimited, contract.CloseMalformed, contract.CloseUnauthenticated,
		contract.CloseForbidden, contract.CloseTooLarge, contract.CloseForeignHistory, contract.CloseInternalError,
		contract.CloseShuttingDown, contract.CloseTooSlow:
		return strconv.Itoa(code)
	}
	return "other"
}

var (
	_ syncws.Backend         = (*SyncBackend)(nil)
	_ syncws.SessionObserver = (*SyncBackend)(nil)
	_ syncws.RefusalObserver = (*SyncBackend)(nil)
)
