package syncws

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// Limits bound what one client may do. Zero fields take the defaults.
type Limits struct {
	// MaxMessageBytes bounds one WebSocket message (default
	// contract.MaxSyncMessageBytes); larger ones close with 4413.
	MaxMessageBytes int
	// MaxConnsPerUser bounds a user's open connections (default 32).
	MaxConnsPerUser int
	// MaxConns bounds the connections open on the hub (0: no bound),
	// counting those being opened (their tokens checked, their documents
	// looked up). Past it a connection is refused with 1013 before its
	// token is checked or its document looked up: a gateway whose memory limit
	// would otherwise be passed refuses the connections it cannot hold,
	// and the clients retry (their edits stay in the browser), instead of
	// being killed for memory with every connection it held, all of which
	// reconnect at once.
	MaxConns int
	// UpdatesPerSecond and UpdateBurst are a user's token bucket for
	// sync messages (step 1, step 2, update), shared by its connections
	// (defaults 100 and 400).
	UpdatesPerSecond float64
	UpdateBurst      int
	// RateWait is how long a message over the rate is held back before
	// the connection is closed with 1013 instead (default 2 s).
	RateWait time.Duration
	// AwarenessPerSecond and AwarenessBurst bound awareness and
	// query-awareness messages per connection (defaults 30 and 120).
	AwarenessPerSecond float64
	AwarenessBurst     int
	// MaxAwarenessBytes bounds one awareness message (default 64 KiB;
	// larger ones close with 4413) and MaxAwarenessClients the awareness
	// states a document remembers for newcomers (default 1024; beyond it
	// states are still relayed, not remembered).
	MaxAwarenessBytes   int
	MaxAwarenessClients int
	// MaxAwarenessState bounds one remembered awareness state (default
	// 8 KiB: a real one, a name, a colour and a cursor, is well under 1
	// KiB) and MaxConnAwareness the states one connection has remembered
	// in all (default 64 KiB); past either a state is relayed, not
	// remembered, so one student's connections cannot fill the gateway's
	// memory with states kept as long as they stay open.
	MaxAwarenessState int
	MaxConnAwareness  int
	// MaxStateVectorBytes bounds the state vector of a sync step 1
	// (default contract.MaxStateVectorBytes); a larger one closes with
	// 4413 before it is decoded (its count would size the decoder's map).
	MaxStateVectorBytes int
	// SendQueue bounds the messages waiting to be written to one client
	// (default 512); when full the client is closed with 4508.
	SendQueue int
	// WriteTimeout bounds one write to a client (default 10 s); a client
	// that does not read within it is closed with 4508.
	WriteTimeout time.Duration
	// PingInterval is how often a WebSocket ping checks that the peer is
	// alive (default 30 s); no pong within WriteTimeout drops it.
	PingInterval time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = contract.MaxSyncMessageBytes
	}
	if l.MaxConnsPerUser <= 0 {
		l.MaxConnsPerUser = 32
	}
	if l.UpdatesPerSecond <= 0 {
		l.UpdatesPerSecond = 100
	}
	if l.UpdateBurst <= 0 {
		l.UpdateBurst = 400
	}
	if l.RateWait <= 0 {
		l.RateWait = 2 * time.Second
	}
	if l.AwarenessPerSecond <= 0 {
		l.AwarenessPerSecond = 30
	}
	if l.AwarenessBurst <= 0 {
		l.AwarenessBurst = 120
	}
	if l.MaxAwarenessBytes <= 0 {
		l.MaxAwarenessBytes = 64 << 10
	}
	if l.MaxAwarenessClients <= 0 {
		l.MaxAwarenessClients = 1024
	}
	if l.MaxAwarenessState <= 0 {
		l.MaxAwarenessState = 8 << 10
	}
	if l.MaxConnAwareness <= 0 {
		l.MaxConnAwareness = 64 << 10
	}
	if l.MaxStateVectorBytes <= 0 {
		l.MaxStateVectorBytes = contract.MaxStateVectorBytes
	}
	if l.SendQueue <= 0 {
		l.SendQueue = 512
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 10 * time.Second
	}
	if l.PingInterval <= 0 {
		l.PingInterval = 30 * time.Second
	}
	return l
}

// Config configures a Hub.
type Config struct {
	Backend Backend
	Auth    Authenticator
	Limits  Limits
	// OriginPatterns restricts browser origins (see websocket.AcceptOptions).
	// Empty allows every origin: tokens are bearer tokens, not cookies,
	// so cross-site WebSocket hijacking gains nothing.
	OriginPatterns []string
	Logger         *slog.Logger
}

// Hub serves PathSync+docID and tracks rooms (documents) and connections.
type Hub struct {
	cfg    Config
	lim    Limits
	log    *slog.Logger
	nextID atomic.Uint64

	mu      sync.Mutex
	closing bool
	// rooms are per tenant and document: a document's ID is one name
	// across tenants, and before it exists users of two tenants may open
	// it; the one whose update creates it owns it, and nothing of it
	// (updates, awareness) may reach the other's connections.
	rooms   map[roomKey]*room
	byDoc   map[string]map[string]*room // document, tenant: the same rooms
	perUser map[Principal]int
	buckets map[Principal]*bucket
	conns   map[*conn]struct{}
	// opening counts the connections past the limit's pre-check in
	// ServeHTTP and not yet registered or refused: each holds its place
	// under MaxConns while its token is checked and its document looked
	// up, so a burst of connections to a hub with little room spends
	// nothing on the ones it cannot take.
	opening int
	wg      sync.WaitGroup

	unregisters int // counts unregisters, to sweep refilled buckets now and then
}

// NewHub returns a Hub; mount it at contract.PathSync.
func NewHub(cfg Config) *Hub {
	if cfg.Backend == nil || cfg.Auth == nil {
		panic("syncws: Config needs a Backend and an Authenticator")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		cfg: cfg, lim: cfg.Limits.withDefaults(), log: log,
		rooms: map[roomKey]*room{}, byDoc: map[string]map[string]*room{}, perUser: map[Principal]int{}, buckets: map[Principal]*bucket{},
		conns: map[*conn]struct{}{},
	}
}

// roomKey names a room: the connecting user's tenant (which owns the
// document, or will if its update creates it: a connection to another
// tenant's document is refused) and the document.
type roomKey struct{ tenant, doc string }

type room struct {
	key       roomKey
	conns     map[*conn]struct{}
	awareness map[uint64]awState
	// owners is the user whose connection first announced each
	// awareness client, kept for the room's life: a reconnecting tab
	// keeps its client ID (peers learnt it, with its removal, when the
	// old connection closed), and no one else may take it meanwhile.
	// ownedBy counts each user's (at most maxOwnedClients).
	owners  map[uint64]Principal
	ownedBy map[Principal]int
}

// maxOwnedClients bounds the awareness clients one user owns in a room (a
// tab is one client, and a page load draws a new one); past it the IDs no
// connection of the user's still speaks for are released, and a client
// that still finds no room is relayed but not owned.
const maxOwnedClients = 64

// own records c's user as the owner of awareness client id, if the user
// has room for it (hub.mu held).
func (rm *room) own(id uint64, c *conn) {
	p := c.s.Principal
	if rm.ownedBy[p] >= maxOwnedClients {
		inUse := map[uint64]bool{}
		for o := range rm.conns {
			if o.s.Principal == p {
				for cid := range o.clients {
					inUse[cid] = true
				}
			}
		}
		for cid, q := range rm.owners {
			if q == p && !inUse[cid] {
				delete(rm.owners, cid)
				rm.ownedBy[p]--
			}
		}
		if rm.ownedBy[p] >= maxOwnedClients {
			return
		}
	}
	rm.owners[id] = p
	rm.ownedBy[p]++
}

type awState struct {
	clock uint64
	state []byte
	owner *conn
}

// forgetAwareness drops the state a room remembers for an awareness
// client, if any, and counts it off its connection (hub.mu held).
func forgetAwareness(rm *room, id uint64) {
	if st, ok := rm.awareness[id]; ok {
		st.owner.awBytes -= len(st.state)
		delete(rm.awareness, id)
	}
}

// refusal is a decision to close a connection with a code and reason.
type refusal struct {
	code   int
	reason string
	msg    []byte // the refused message, if any
	// unrecorded: a refusal that carries no work and is not put on any
	// document's record (the hub at its connection limit: recording each
	// would load the syncer just when the gateway is overloaded).
	unrecorded bool
}

func (r *refusal) Error() string { return fmt.Sprintf("%d %s", r.code, r.reason) }

func refuse(code int, format string, args ...any) *refusal {
	return &refusal{code: code, reason: fmt.Sprintf(format, args...)}
}

// ValidDocID reports whether id can name a document in a sync URL. It is
// wider than the REST API's rule (contract.ValidDocID): documents made over
// sync under such IDs exist, and their clients must keep reaching them.
func ValidDocID(id string) bool {
	if id == "" || len(id) > contract.MaxIDBytes || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '/' || r == '?' || r == '#' || r == '\\' {
			return false
		}
	}
	return true
}

// tokenFrom extracts a bearer token: query, Authorization header, or
// subprotocol.
func tokenFrom(r *http.Request) string {
	if t := r.URL.Query().Get(contract.SyncTokenParam); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	for _, p := range offeredSubprotocols(r) {
		if strings.HasPrefix(p, contract.SyncTokenSubprotocolPrefix) {
			return p[len(contract.SyncTokenSubprotocolPrefix):]
		}
	}
	return ""
}

func offeredSubprotocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func wantsYawpMessages(r *http.Request) bool {
	if r.URL.Query().Get(contract.SyncProtocolMessagesParam) == "1" {
		return true
	}
	for _, p := range offeredSubprotocols(r) {
		if p == contract.SyncSubprotocol {
			return true
		}
	}
	return false
}

// ServeHTTP upgrades a request for PathSync+docID.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks the Yjs sync protocol over WebSocket", http.StatusUpgradeRequired)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	docID := strings.TrimPrefix(r.URL.Path, contract.PathSync)
	s := Session{DocID: docID, ConnID: strconv.FormatUint(h.nextID.Add(1), 10), Remote: r.RemoteAddr}

	var ref *refusal
	var protocol string
	h.mu.Lock()
	closing, full := h.closing, h.fullLocked()
	placed := !closing && !full && h.lim.MaxConns > 0
	if placed {
		h.opening++
	}
	h.mu.Unlock()
	// The place taken under MaxConns is given back when the connection is
	// refused, or turned into its registration (register).
	giveBack := func() {
		if placed {
			placed = false
			h.mu.Lock()
			h.opening--
			h.mu.Unlock()
		}
	}
	defer giveBack()
	switch {
	case closing:
		ref = refuse(contract.CloseShuttingDown, "server shutting down; reconnect")
	case full:
		// Before the token and the document are looked at: a gateway at
		// its limit spends nothing more on the connection.
		ref = h.fullRefusal()
	case !ValidDocID(docID) || r.URL.Path == docID:
		s.DocID = ""
		ref = refuse(contract.CloseMalformed, "invalid document id in path")
	default:
		ref = h.authorize(ctx, r, &s)
	}
	if ref == nil {
		p, err := h.cfg.Backend.Protocol(ctx, s)
		if err != nil {
			h.log.Error("protocol lookup failed", "doc", s.DocID, "err", err)
			ref = refuse(contract.CloseInternalError, "backend unavailable; retry")
		}
		protocol = p
		if protocol != "" {
			w.Header().Set(contract.HeaderProtocol, protocol)
		}
	}
	opts := &websocket.AcceptOptions{
		Subprotocols:       []string{contract.SyncSubprotocol},
		OriginPatterns:     h.cfg.OriginPatterns,
		InsecureSkipVerify: len(h.cfg.OriginPatterns) == 0,
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		h.log.Info("websocket accept failed", "err", err)
		return
	}
	if ref != nil {
		// Before the close is sent: a client told its token was bad that
		// reconnects at once with a good one finds the place free, not
		// held until the close handshake ends.
		giveBack()
		h.refuseConn(ctx, ws, s, ref)
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{
		hub: h, ws: ws, s: s, yawp: wantsYawpMessages(r),
		ctx:       cctx,
		closing:   make(chan struct{}),
		writerOut: make(chan struct{}),
		aw:        newBucket(h.lim.AwarenessPerSecond, h.lim.AwarenessBurst),
		clients:   map[uint64]struct{}{},
	}
	ref = h.register(c, placed)
	placed = false // register gave the place back
	if ref != nil {
		h.refuseConn(ctx, ws, s, ref)
		return
	}
	obs, _ := h.cfg.Backend.(SessionObserver)
	if obs != nil {
		obs.Opened(ctx, s)
	}
	defer func() {
		h.unregister(c)
		if obs != nil {
			obs.Closed(ctx, s, c.closedCode, c.closedReason)
		}
	}()
	c.run(protocol)
}

func (h *Hub) authorize(ctx context.Context, r *http.Request, s *Session) *refusal {
	tok := tokenFrom(r)
	if tok == "" {
		return refuse(contract.CloseUnauthenticated, "missing token")
	}
	p, validFor, err := h.cfg.Auth.Authenticate(ctx, tok)
	if err != nil {
		return refuse(contract.CloseUnauthenticated, "invalid token: %s", strings.TrimPrefix(err.Error(), "auth: "))
	}
	s.Principal, s.ValidFor = p, validFor
	tenant, err := h.cfg.Auth.DocumentTenant(ctx, s.DocID)
	if err != nil {
		h.log.Error("document tenant lookup failed", "doc", s.DocID, "err", err)
		return refuse(contract.CloseInternalError, "backend unavailable; retry")
	}
	if tenant != "" && tenant != p.Tenant {
		return refuse(contract.CloseForbidden, "document belongs to another tenant")
	}
	s.DocTenant = tenant
	return nil
}

func (h *Hub) refuseConn(ctx context.Context, ws *websocket.Conn, s Session, ref *refusal) {
	if ref.code != contract.CloseInternalError && ref.code != contract.CloseShuttingDown && !ref.unrecorded {
		h.cfg.Backend.Reject(ctx, s, ref.code, ref.reason, nil)
	}
	if obs, ok := h.cfg.Backend.(RefusalObserver); ok {
		obs.Refused(ctx, s, ref.code)
	}
	h.log.Info("sync connection refused", "doc", s.DocID, "tenant", s.Tenant, "user", s.User, "code", ref.code, "reason", ref.reason)
	wctx, cancel := context.WithTimeout(ctx, h.lim.WriteTimeout)
	defer cancel()
	if ref.code == contract.CloseUnauthenticated || ref.code == contract.CloseForbidden {
		_ = ws.Write(wctx, websocket.MessageBinary, yprotocol.EncodePermissionDenied(ref.reason))
	}
	_ = ws.Close(websocket.StatusCode(ref.code), closeReason(ref.reason))
}

// closeReason fits a reason into a close frame (123 bytes).
func closeReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:123]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// register adds c to the hub; placed: c holds a place under MaxConns
// (ServeHTTP's opening), which register gives back.
func (h *Hub) register(c *conn, placed bool) *refusal {
	h.mu.Lock()
	defer h.mu.Unlock()
	if placed {
		h.opening--
	}
	if h.closing {
		return refuse(contract.CloseShuttingDown, "server shutting down; reconnect")
	}
	if h.lim.MaxConns > 0 && len(h.conns) >= h.lim.MaxConns {
		// Not reached while every connection takes its place first (a
		// connection is placed only with room for it and those placed
		// before it); kept as the authoritative bound.
		return h.fullRefusal()
	}
	if h.perUser[c.s.Principal] >= h.lim.MaxConnsPerUser {
		return refuse(contract.CloseRateLimited, "too many connections for this user (max %d)", h.lim.MaxConnsPerUser)
	}
	h.perUser[c.s.Principal]++
	b := h.buckets[c.s.Principal]
	if b == nil {
		b = newBucket(h.lim.UpdatesPerSecond, h.lim.UpdateBurst)
		h.buckets[c.s.Principal] = b
	}
	c.updates = b
	key := roomKey{c.s.Tenant, c.s.DocID}
	rm := h.rooms[key]
	if rm == nil {
		rm = &room{key: key, conns: map[*conn]struct{}{}, awareness: map[uint64]awState{},
			owners: map[uint64]Principal{}, ownedBy: map[Principal]int{}}
		h.rooms[key] = rm
		if h.byDoc[key.doc] == nil {
			h.byDoc[key.doc] = map[string]*room{}
		}
		h.byDoc[key.doc][key.tenant] = rm
	}
	rm.conns[c] = struct{}{}
	c.room = rm
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return nil
}

// fullLocked reports whether the hub holds MaxConns connections, open or
// being opened (with h.mu held).
func (h *Hub) fullLocked() bool {
	return h.lim.MaxConns > 0 && len(h.conns)+h.opening >= h.lim.MaxConns
}

func (h *Hub) fullRefusal() *refusal {
	ref := refuse(contract.CloseRateLimited, "gateway at its connection limit (%d); retry later", h.lim.MaxConns)
	ref.unrecorded = true
	return ref
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	rm := c.room
	delete(rm.conns, c)
	delete(h.conns, c)
	var gone []yprotocol.AwarenessEntry
	for id := range c.clients {
		if st, ok := rm.awareness[id]; ok && st.owner == c {
			forgetAwareness(rm, id)
			gone = append(gone, yprotocol.AwarenessEntry{ClientID: id, Clock: st.clock + 1, State: []byte("null")})
		}
	}
	if len(rm.conns) == 0 {
		delete(h.rooms, rm.key)
		if delete(h.byDoc[rm.key.doc], rm.key.tenant); len(h.byDoc[rm.key.doc]) == 0 {
			delete(h.byDoc, rm.key.doc)
		}
	}
	if h.perUser[c.s.Principal]--; h.perUser[c.s.Principal] <= 0 {
		delete(h.perUser, c.s.Principal)
		// The bucket outlives the connection until it has refilled, so
		// reconnecting does not reset a user's rate.
		if c.updates.full() {
			delete(h.buckets, c.s.Principal)
		}
	}
	if h.unregisters++; h.unregisters%256 == 0 {
		for p, b := range h.buckets {
			if h.perUser[p] == 0 && b.full() {
				delete(h.buckets, p)
			}
		}
	}
	var others []*conn
	if len(gone) > 0 {
		for o := range rm.conns {
			others = append(others, o)
		}
	}
	h.mu.Unlock()
	if len(gone) > 0 {
		msg := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(gone))
		for _, o := range others {
			o.enqueue(msg)
		}
	}
	h.wg.Done()
}

// broadcast enqueues msg to the room's connections (except skip).
func (h *Hub) broadcast(rm *room, msg []byte, skip *conn) {
	h.mu.Lock()
	targets := make([]*conn, 0, len(rm.conns))
	for c := range rm.conns {
		if c != skip {
			targets = append(targets, c)
		}
	}
	h.mu.Unlock()
	for _, c := range targets {
		c.enqueue(msg)
	}
}

// Stats is a snapshot for metrics and tests.
type Stats struct {
	Rooms, Conns int
}

// Stats returns the number of open rooms and connections.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Rooms: len(h.rooms), Conns: len(h.conns)}
}

// YawpMessage is the JSON payload of yprotocol.MessageYawp.
type YawpMessage struct {
	Protocol string `json:"protocol"`
}

// SetProtocol tells the opted-in connections to the documents of tenant
// that its cohort now uses protocol (at a flip). Connections opened
// later learn it from Backend.Protocol.
func (h *Hub) SetProtocol(tenant, protocol string) {
	msg := encodeYawp(protocol)
	h.mu.Lock()
	var targets []*conn
	for c := range h.conns {
		if c.yawp && (c.s.DocTenant == tenant || c.s.DocTenant == "" && c.s.Tenant == tenant) {
			targets = append(targets, c)
		}
	}
	h.mu.Unlock()
	for _, c := range targets {
		c.enqueue(msg)
	}
}

func encodeYawp(protocol string) []byte {
	b, _ := json.Marshal(YawpMessage{Protocol: protocol})
	return yprotocol.EncodeYawp(b)
}

// CloseDocument closes every connection to docID after the message each
// is processing and a flush, with code and reason (e.g. 1012 when the
// document moved to another shard, so clients reconnect and land there).
func (h *Hub) CloseDocument(docID string, code int, reason string) {
	h.mu.Lock()
	var targets []*conn
	for _, rm := range h.byDoc[docID] {
		for c := range rm.conns {
			targets = append(targets, c)
		}
	}
	h.mu.Unlock()
	for _, c := range targets {
		go c.stop(code, reason)
	}
}

// CloseConnections closes, with code and reason, the connections to docID
// whose Session.ConnID ids holds, after the message each is processing
// and a flush of what was queued for it before the call; nothing queued
// after the call returns (a Publish, a relayed update) reaches them. It
// returns how many it closes.
func (h *Hub) CloseConnections(docID string, ids map[string]bool, code int, reason string) int {
	if len(ids) == 0 {
		return 0
	}
	h.mu.Lock()
	var targets []*conn
	for _, rm := range h.byDoc[docID] {
		for c := range rm.conns {
			if ids[c.s.ConnID] {
				targets = append(targets, c)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range targets {
		c.finish(code, reason, false) // from here on enqueue drops
		go c.stop(code, reason)
	}
	return len(targets)
}

// tokenExpired is the reason a connection whose token ran out is closed
// with.
const tokenExpired = "token expired; reconnect with a new token"

// claimGrace is how long a connection of another tenant to a document
// just claimed stays open if it sends nothing (see claimed).
const claimGrace = time.Second

// claimed closes, with 4403, the connections of tenants other than owner
// to docID: they opened it before it existed, and owner's commit made it
// owner's. They saw nothing of it (their room is their own), and their
// updates are refused from now on. Not at once: a tab typing into the ID
// while it was claimed has keystrokes on their way, and a connection
// closing drops the messages that arrive meanwhile (the close handshake
// reads past them), so that text was refused without a trace in the
// ledger. Its next message is refused (its update on record, with its
// text) and closes it with 4403; one that sends nothing is closed after
// claimGrace.
func (h *Hub) claimed(owner, docID string) {
	h.mu.Lock()
	var others []*conn
	for tenant, rm := range h.byDoc[docID] {
		if tenant != owner {
			for c := range rm.conns {
				others = append(others, c)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range others {
		c.lostDoc.Store(true)
		time.AfterFunc(claimGrace, func() { c.stop(contract.CloseForbidden, "document belongs to another tenant") })
	}
}

// Shutdown stops accepting connections (new ones are refused with 4503),
// lets every connection finish the message it is processing (an update
// being committed is committed and relayed), flushes its send queue and
// closes it with 1001. It returns when all connections are closed or ctx
// ends (then the rest are closed at once).
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		go c.stop(contract.CloseGoingAway, "server shutting down; reconnect")
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.mu.Lock()
		for c := range h.conns {
			_ = c.ws.CloseNow()
		}
		h.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// conn is one client connection.
type conn struct {
	hub     *Hub
	ws      *websocket.Conn
	s       Session
	room    *room
	yawp    bool
	updates *bucket
	aw      *bucket

	// ctx ends when the connection's handler returns.
	ctx context.Context
	// out holds the messages waiting to be written (at most SendQueue);
	// writing: a writer goroutine is running (see kickLocked). A queue
	// grows only while a client has messages waiting: a preallocated
	// channel of SendQueue messages was 16 KiB of every open connection,
	// idle ones too (most of a gateway's connections are students' open
	// tabs, idle).
	outMu     sync.Mutex
	out       outQueue
	writing   bool
	snapshots atomic.Int32 // awareness snapshots in out (see answerQuery)
	answers   atomic.Int32 // sync step 2 answers in out (see answerStep1)
	// handling: run's goroutine is handling a message (not reading, so no
	// pong is read); handled counts the messages it started to handle.
	// The pinger waits them out (see pinger).
	handling  atomic.Bool
	handled   atomic.Uint64
	answered  step1Answer   // the last step 1 answered (read and set by run's goroutine only)
	closing   chan struct{} // closed once: stop writing after the queue (or at once when aborted)
	writerOut chan struct{}
	closeOnce sync.Once
	code      int
	reason    string
	abort     bool // close without flushing the queue
	kill      bool // close without a handshake

	peerClose    *websocket.CloseError
	closedCode   int // how the connection ended, set when run returns
	closedReason string

	procMu  sync.Mutex // held while a message is processed
	stopped bool

	clients map[uint64]struct{} // awareness client IDs seen on this connection (guarded by hub.mu)
	awBytes int                 // bytes of the awareness states the room remembers for it (guarded by hub.mu)

	claimedDoc bool // an update of this connection created its document (read and set by run's goroutine only)
	// lostDoc: another tenant's commit made the document, free when this
	// connection opened, that tenant's (see claimed).
	lostDoc atomic.Bool
	// expired: the token ran out (see run).
	expired atomic.Bool
}

// outQueue is a connection's messages waiting to be written, oldest
// first, in a slice that grows as they do and is let go once they are
// written (a burst's queue is not kept for the connection's life).
type outQueue struct {
	buf  []outMsg
	head int
}

func (q *outQueue) len() int { return len(q.buf) - q.head }

func (q *outQueue) push(m outMsg) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		// Full up to its capacity with written ones at the front: moved
		// down instead of grown, so a queue never emptied grows no larger
		// than about twice the most that waited in it at once (it keeps
		// that buffer until it empties: at most about 2*SendQueue slots,
		// what the preallocated channel always held).
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, m)
}

func (q *outQueue) pop() (outMsg, bool) {
	if q.head == len(q.buf) {
		return outMsg{}, false
	}
	m := q.buf[q.head]
	q.buf[q.head] = outMsg{} // its bytes are the writer's now
	q.head++
	if q.head == len(q.buf) {
		if cap(q.buf) > 16 {
			q.buf = nil
		} else {
			q.buf = q.buf[:0]
		}
		q.head = 0
	}
	return m, true
}

// outMsg is a message waiting to be written; queued, if set, counts the
// messages of its kind in send (a copy of the room's awareness states, a
// sync step 2 answer).
type outMsg struct {
	b      []byte
	queued *atomic.Int32
}

// step1Answer is what a sync step 1 was answered from: the client's state
// vector and the server's (ok: both known), with the update of
// everything the server held beyond the client's.
type step1Answer struct {
	client, server yjs.StateVector
	ok             bool
}

// covers reports whether the answer a holds everything the server held
// then beyond state vector sv: for every client of the server, sv reaches
// at least as far as the client's did.
func (a step1Answer) covers(sv yjs.StateVector) bool {
	if !a.ok {
		return false
	}
	for client, clock := range a.server {
		if min(sv[client], clock) < min(a.client[client], clock) {
			return false
		}
	}
	return true
}

// enqueue queues msg without blocking; a full queue closes the client.
func (c *conn) enqueue(msg []byte) { c.enqueueMsg(outMsg{b: msg}) }

func (c *conn) enqueueMsg(m outMsg) {
	select {
	case <-c.closing:
		return
	default:
	}
	if c.expired.Load() {
		// The token ran out: nothing more of the document (updates,
		// awareness, a protocol change) in the second before it closes.
		return
	}
	if m.queued != nil {
		m.queued.Add(1)
	}
	c.outMu.Lock()
	full := c.out.len() >= c.hub.lim.SendQueue
	if !full {
		c.out.push(m)
		c.kickLocked()
	}
	c.outMu.Unlock()
	if full {
		if m.queued != nil {
			m.queued.Add(-1)
		}
		c.finish(contract.CloseTooSlow, "client too slow: send queue full", true)
	}
}

// next takes the oldest message waiting to be written.
func (c *conn) next() (outMsg, bool) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.out.pop()
}

// answerQuery queues a copy of the room's awareness states for the
// client, unless one it has not read yet is queued already: the states
// that change meanwhile reach it as relayed awareness anyway. A copy
// may be 64 MiB (1024 states of 64 KiB); a client asking and not reading
// made the hub hold one per question until the write timeout.
func (c *conn) answerQuery() {
	if c.snapshots.Load() > 0 {
		return
	}
	c.enqueueMsg(outMsg{b: yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(c.roomAwareness())), queued: &c.snapshots})
}

// answerStep1 queues the answer to a sync step 1 from state vector sv
// (update: what the client lacks; serverSV: the server's state vector),
// unless one the client has not read yet is queued already and holds all
// of it: what was committed since reaches the client as relayed updates
// anyway. An answer is the whole document for a new client (megabytes);
// a client sending step 1s (a few bytes each) and not reading made the
// hub hold one copy per message until the write timeout.
func (c *conn) answerStep1(sv yjs.StateVector, update, serverSV []byte) {
	if c.answers.Load() > 0 && c.answered.covers(sv) {
		return
	}
	server, err := yjs.DecodeStateVector(serverSV)
	c.answered = step1Answer{client: sv, server: server, ok: err == nil}
	c.enqueueMsg(outMsg{b: yprotocol.EncodeSyncStep2(update), queued: &c.answers})
	c.enqueue(yprotocol.EncodeSyncStep1(serverSV))
}

// roomAwareness is a copy of the awareness states the room remembers.
func (c *conn) roomAwareness() []yprotocol.AwarenessEntry {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	states := make([]yprotocol.AwarenessEntry, 0, len(c.room.awareness))
	for id, st := range c.room.awareness {
		states = append(states, yprotocol.AwarenessEntry{ClientID: id, Clock: st.clock, State: st.state})
	}
	return states
}

// finish makes the writer close the connection: after flushing the queue,
// or at once when abort.
func (c *conn) finish(code int, reason string, abort bool) {
	c.closeOnce.Do(func() {
		c.code, c.reason, c.abort = code, reason, abort
		if !abort && (code == contract.CloseUnauthenticated || code == contract.CloseForbidden) {
			// As at a refused connect: the y-protocols auth message
			// first, then the close (the writer flushes the queue).
			c.outMu.Lock()
			c.out.push(outMsg{b: yprotocol.EncodePermissionDenied(reason)})
			c.outMu.Unlock()
		}
		close(c.closing)
	})
	c.outMu.Lock()
	c.kickLocked()
	c.outMu.Unlock()
}

// killOnce closes the connection at once, without a close handshake.
func (c *conn) killOnce(reason string) {
	c.closeOnce.Do(func() {
		c.code, c.reason, c.abort, c.kill = contract.CloseTooSlow, reason, true, true
		close(c.closing)
	})
	c.outMu.Lock()
	c.kickLocked()
	c.outMu.Unlock()
}

// stop ends processing after the current message, then finishes.
func (c *conn) stop(code int, reason string) {
	c.procMu.Lock()
	c.stopped = true
	c.procMu.Unlock()
	c.finish(code, reason, false)
}

// kickLocked starts a writer unless one is running (with outMu held). A
// connection has a writer goroutine only while it has something to
// write, or to close: one waiting for every open connection was a stack
// of each, idle ones too. The writer that closes the connection stays
// "running" for good, so no other starts after it.
func (c *conn) kickLocked() {
	if !c.writing {
		c.writing = true
		go c.writeOut()
	}
}

// writeOut writes the queued messages, oldest first, until none is left
// (and returns) or the connection is finishing (and closes it: after
// flushing the queue, or at once when aborted).
func (c *conn) writeOut() {
	for {
		c.outMu.Lock()
		select {
		case <-c.closing:
			// Closing wins over the queue: aborted, nothing more is
			// written.
			c.outMu.Unlock()
			if !c.abort {
				for msg, ok := c.next(); ok; msg, ok = c.next() {
					if !c.write(msg) {
						break
					}
				}
			}
			c.closeWS()
			close(c.writerOut)
			return
		default:
		}
		msg, ok := c.out.pop()
		if !ok {
			// Checked for closing under the same lock finish kicks
			// under: either this writer sees it, or finish starts the
			// next.
			c.writing = false
			c.outMu.Unlock()
			return
		}
		c.outMu.Unlock()
		if !c.write(msg) {
			c.finish(contract.CloseInternalError, "write failed", true)
			c.closeWS()
			close(c.writerOut)
			return
		}
	}
}

// write writes one message within WriteTimeout; false: it failed.
func (c *conn) write(m outMsg) bool {
	if m.queued != nil {
		defer m.queued.Add(-1)
	}
	wctx, cancel := context.WithTimeout(c.ctx, c.hub.lim.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageBinary, m.b); err != nil {
		if wctx.Err() != nil && c.ctx.Err() == nil {
			c.killOnce("client too slow: write timed out")
		}
		return false
	}
	return true
}

// startPinger drops a peer that stops answering pings (a vanished
// client whose TCP connection never closed). The pings run on a timer,
// not a goroutine of their own: a goroutine per connection waiting out
// PingInterval was a stack of every open connection, idle ones too. The
// returned func stops it.
func (c *conn) startPinger(ctx context.Context) func() {
	var mu sync.Mutex // guards t and stopped
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(c.hub.lim.PingInterval, func() {
		if !c.ping(ctx) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(c.hub.lim.PingInterval)
		}
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// ping sends one ping and waits for its pong; false: stop pinging.
func (c *conn) ping(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-c.closing:
		return false
	default:
	}
	// A pong is read only while run reads. While it handles a message (an
	// update waiting for its commit: a row lock, a syncer in doubt, up to
	// tens of seconds) a ping would go unanswered and drop a live client
	// without a close frame; the peer has just shown it is alive by
	// sending.
	if c.handling.Load() {
		return true
	}
	n := c.handled.Load()
	pctx, cancel := context.WithTimeout(ctx, c.hub.lim.WriteTimeout)
	err := c.ws.Ping(pctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		if c.handling.Load() || c.handled.Load() != n {
			return true // its pong waited behind a message
		}
		c.killOnce("no pong")
		return false
	}
	return ctx.Err() == nil
}

func (c *conn) closeWS() {
	if c.kill {
		// The peer stopped answering: a close handshake would only wait.
		_ = c.ws.CloseNow()
		return
	}
	_ = c.ws.Close(websocket.StatusCode(c.code), closeReason(c.reason))
}

func (c *conn) run(protocol string) {
	ctx := c.ctx
	c.ws.SetReadLimit(-1) // enforced in read, to close with 4413 and a reason
	defer c.startPinger(ctx)()
	defer func() {
		c.finish(int(websocket.StatusNormalClosure), "", true)
		<-c.writerOut
		c.closedCode, c.closedReason = c.code, c.reason
		if c.peerClose != nil {
			c.closedCode, c.closedReason = int(c.peerClose.Code), "client: "+c.peerClose.Reason
		}
	}()
	if c.s.ValidFor > 0 {
		// When the token runs out, the connection ends as one opened with
		// it then would be refused, with 4401: the message being
		// processed is done (an update being committed is committed),
		// the next one is refused, on record with the work it carried
		// (typed before the editor saw the close: closing at once
		// dropped it unrecorded, as the close handshake reads past what
		// arrives), and one that sends nothing is closed after
		// claimGrace.
		expiry := time.AfterFunc(c.s.ValidFor, func() {
			c.expired.Store(true)
			time.AfterFunc(claimGrace, func() { c.stop(contract.CloseUnauthenticated, tokenExpired) })
		})
		defer expiry.Stop()
	}
	if c.yawp && protocol != "" {
		c.enqueue(encodeYawp(protocol))
	}
	// Greet with the room's current awareness states, as y-websocket's
	// server does.
	if states := c.roomAwareness(); len(states) > 0 {
		c.enqueueMsg(outMsg{b: yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(states)), queued: &c.snapshots})
	}
	for {
		msg, ref := c.read(ctx)
		if ref != nil {
			c.fail(ctx, ref)
			return
		}
		if msg == nil {
			return // closed by the peer or by us
		}
		c.procMu.Lock()
		if c.stopped {
			c.procMu.Unlock()
			return
		}
		c.handled.Add(1)
		c.handling.Store(true)
		ref = c.handle(ctx, msg)
		c.handling.Store(false)
		c.procMu.Unlock()
		if ref != nil {
			ref.msg = msg
			c.fail(ctx, ref)
			return
		}
	}
}

func (c *conn) fail(ctx context.Context, ref *refusal) {
	if ref.code != contract.CloseInternalError {
		c.hub.cfg.Backend.Reject(ctx, c.s, ref.code, ref.reason, ref.msg)
	}
	c.hub.log.Info("sync connection closed", "doc", c.s.DocID, "tenant", c.s.Tenant, "user", c.s.User, "code", ref.code, "reason", ref.reason)
	c.finish(ref.code, ref.reason, false)
}

// read returns the next message, nil at the end of the connection, or a
// refusal.
func (c *conn) read(ctx context.Context) ([]byte, *refusal) {
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			select {
			case <-c.closing: // our own close, echoed
			default:
				c.peerClose = &ce
			}
		}
		return nil, nil
	}
	if typ != websocket.MessageBinary {
		return nil, refuse(contract.CloseMalformed, "text message; the sync protocol is binary")
	}
	max := c.hub.lim.MaxMessageBytes
	buf, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, nil
	}
	if len(buf) > max {
		ref := refuse(contract.CloseTooLarge, "message larger than %d bytes", max)
		ref.msg = buf
		return nil, ref
	}
	return buf, nil
}

func (c *conn) handle(ctx context.Context, b []byte) *refusal {
	if c.expired.Load() {
		return refuse(contract.CloseUnauthenticated, tokenExpired)
	}
	if c.lostDoc.Load() {
		return refuse(contract.CloseForbidden, "document belongs to another tenant")
	}
	// Bounded before it is parsed: parsing a message sizes its entries
	// by the counts it claims.
	if typ, n := binary.Uvarint(b); n > 0 && typ == uint64(yprotocol.MessageAwareness) && len(b) > c.hub.lim.MaxAwarenessBytes {
		return refuse(contract.CloseTooLarge, "awareness message larger than %d bytes", c.hub.lim.MaxAwarenessBytes)
	}
	m, err := yprotocol.Decode(b)
	if err != nil {
		return refuse(contract.CloseMalformed, "%v", err)
	}
	be := c.hub.cfg.Backend
	switch m.Type {
	case yprotocol.MessageSync:
		switch m.Sync {
		case yprotocol.SyncStep1:
			// Each step 1 costs an evidence write and a snapshot.
			if !c.updates.wait(ctx, c.hub.lim.RateWait) {
				return refuse(contract.CloseRateLimited, "sync rate over %g/s for this user", c.hub.lim.UpdatesPerSecond)
			}
			if len(m.Payload) > c.hub.lim.MaxStateVectorBytes {
				return refuse(contract.CloseTooLarge, "state vector is %d bytes, the limit is %d", len(m.Payload), c.hub.lim.MaxStateVectorBytes)
			}
			sv, err := yjs.DecodeStateVector(m.Payload)
			if err != nil {
				return refuse(contract.CloseMalformed, "sync step 1: bad state vector: %v", err)
			}
			if err := be.AnnounceStateVector(ctx, c.s, m.Payload); err != nil {
				return c.backendRefusal("announce state vector", err)
			}
			update, serverSV, err := be.SyncStep1(ctx, c.s, m.Payload)
			if err != nil {
				return c.backendRefusal("sync step 1", err)
			}
			c.answerStep1(sv, update, serverSV)
		case yprotocol.SyncStep2, yprotocol.SyncUpdate:
			if !c.updates.wait(ctx, c.hub.lim.RateWait) {
				return refuse(contract.CloseRateLimited, "update rate over %g/s for this user", c.hub.lim.UpdatesPerSecond)
			}
			applied, err := be.ApplyUpdate(ctx, c.s, m.Payload)
			if err != nil {
				return c.backendRefusal("update", err)
			}
			if c.s.DocTenant == "" && !c.claimedDoc && len(applied) > 0 {
				// The document did not exist when this connection opened;
				// it does now, and is this tenant's. Only an update the
				// backend committed says so: one it answered with nothing
				// (a duplicate, or an empty step 2 it did not commit) may
				// have created nothing, and claiming the ID then closed
				// other tenants' connections to an ID still free.
				c.claimedDoc = true
				c.hub.claimed(c.s.Tenant, c.s.DocID)
			}
			if len(applied) > 0 && !isEmptyUpdate(applied) {
				c.hub.broadcast(c.room, yprotocol.EncodeUpdate(applied), c)
			}
		}
	case yprotocol.MessageAwareness:
		return c.handleAwareness(ctx, b, m.Awareness)
	case yprotocol.MessageQueryAwareness:
		if !c.aw.wait(ctx, c.hub.lim.RateWait) {
			return refuse(contract.CloseRateLimited, "awareness rate over %g/s", c.hub.lim.AwarenessPerSecond)
		}
		c.answerQuery()
	case yprotocol.MessageAuth:
		// Clients have nothing to say with it; ignore like y-websocket's server.
	}
	return nil
}

// mayTell reports whether c's user may change the awareness state of
// client id (hub.mu held): its owner's, or, for a client no one owns (its
// user at maxOwnedClients), the user whose connection holds its state.
func (c *conn) mayTell(id uint64) bool {
	if p, ok := c.room.owners[id]; ok {
		return p == c.s.Principal
	}
	if st, ok := c.room.awareness[id]; ok {
		return st.owner.s.Principal == c.s.Principal
	}
	return true
}

// handleAwareness takes an awareness message b with its entries: it
// remembers the states of the clients the sender's user owns and relays
// them; entries for another user's clients are dropped.
func (c *conn) handleAwareness(ctx context.Context, b []byte, entries []yprotocol.AwarenessEntry) *refusal {
	if !c.aw.wait(ctx, c.hub.lim.RateWait) {
		return refuse(contract.CloseRateLimited, "awareness rate over %g/s", c.hub.lim.AwarenessPerSecond)
	}
	c.hub.mu.Lock()
	var kept []yprotocol.AwarenessEntry
	foreign := false
	for _, e := range entries {
		if !c.mayTell(e.ClientID) {
			// Another student's client (a name and a cursor shown
			// as theirs), remembered or not: neither replaced,
			// removed nor relayed. The same user may take it
			// over (a reloaded tab). Stock clients also send
			// again what they were relayed of others, and time
			// out others' states: dropped here too.
			foreign = true
			continue
		}
		if _, owned := c.room.owners[e.ClientID]; !owned && !e.Removed() {
			c.room.own(e.ClientID, c)
		}
		kept = append(kept, e)
		if e.Removed() {
			forgetAwareness(c.room, e.ClientID)
			continue
		}
		if st, ok := c.room.awareness[e.ClientID]; ok && e.Clock <= st.clock {
			// Stale, or the state sent back (stock clients send again
			// what they were relayed: a user's other tab echoes each
			// client a reload draws). Relayed as before; it neither
			// moves the state to this connection nor counts as a
			// client this connection speaks for.
			continue
		}
		if _, seen := c.clients[e.ClientID]; !seen {
			// A browser tab speaks for one client; past the room's
			// bound a connection's further clients are relayed, not
			// remembered (each message may name thousands).
			if len(c.clients) >= c.hub.lim.MaxAwarenessClients {
				continue
			}
			c.clients[e.ClientID] = struct{}{}
		}
		if _, ok := c.room.awareness[e.ClientID]; !ok && len(c.room.awareness) >= c.hub.lim.MaxAwarenessClients {
			continue
		}
		// The newer state replaces the remembered one; one too large
		// to remember drops it (a newcomer must not get a stale one).
		forgetAwareness(c.room, e.ClientID)
		if len(e.State) > c.hub.lim.MaxAwarenessState || c.awBytes+len(e.State) > c.hub.lim.MaxConnAwareness {
			continue
		}
		c.room.awareness[e.ClientID] = awState{clock: e.Clock, state: append([]byte(nil), e.State...), owner: c}
		c.awBytes += len(e.State)
	}
	c.hub.mu.Unlock()
	if foreign {
		if len(kept) == 0 {
			return nil
		}
		b = yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate(kept))
	}
	c.hub.broadcast(c.room, b, nil)
	return nil
}

// isEmptyUpdate reports an update with no structs and no deletions.
func isEmptyUpdate(u []byte) bool { return len(u) == 2 && u[0] == 0 && u[1] == 0 }

func (c *conn) backendRefusal(what string, err error) *refusal {
	switch {
	case errors.Is(err, ErrMalformedUpdate):
		return refuse(contract.CloseMalformed, "%s: %v", what, err)
	case errors.Is(err, ErrTooLarge):
		return refuse(contract.CloseTooLarge, "%s: %v", what, err)
	case errors.Is(err, ErrForbidden):
		return refuse(contract.CloseForbidden, "%s: %v", what, err)
	case errors.Is(err, ErrForeignHistory):
		return refuse(contract.CloseForeignHistory, "%s: %v", what, err)
	}
	c.hub.log.Error("sync backend failed", "doc", c.s.DocID, "what", what, "err", err)
	return refuse(contract.CloseInternalError, "%s failed; reconnect to retry", what)
}
