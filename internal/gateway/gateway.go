// Package gateway is the client-facing server of a shard pod: the legacy
// write-through REST API under /v1/documents, the evidence API, and Yjs
// updates over HTTP. It authenticates signed bearer tokens
// (internal/auth), validates input, and routes each document to its
// shard's syncer (placement.Shard): its own pod's syncer, or a peer.
//
// Every refusal that names a document is recorded in that document's
// ledger through its syncer, so evidence can say a save reached us and why
// it was refused.
//
// Endpoints (Authorization: Bearer <token>; errors are
// {"code": "...", "message": "..."}):
//
//	POST /v1/documents                      create {"id"?, "title"?, "content"}; Idempotency-Key
//	GET  /v1/documents                      list the token's tenant's documents (?after=&limit=)
//	GET  /v1/documents/{id}                 read (ETag: revision; Yawp-Stage, Yawp-Epoch)
//	PUT  /v1/documents/{id}                 save {"content", "title"?}; If-Match: revision; Idempotency-Key
//	GET  /v1/documents/{id}/revisions/{n}   a revision of the save history (superseded content)
//	GET  /v1/documents/{id}/preserved/{n}   text a conflicting save supplied, kept aside
//	POST /v1/documents/{id}/updates         a Yjs v1 update (binary body)
//	POST /v1/documents/{id}/sync            sync step 1: state vector in, the update the client lacks out (JSON)
//	GET  /v1/documents/{id}/evidence        timeline and verdict (?request=&revision=&client=&user=&since=)
//	GET  /v1/documents/{id}/evidence/verify hash-chain check (operator token)
//	GET  /v1/sync/{id}                      Yjs sync WebSocket (y-websocket; ?token=), see sync.go
//
// A save's response names its outcome: saved, merged (stale base, three-way
// merged), overwritten-preserved (stale base in a legacy-authoritative
// stage: applied as the legacy store would, the overwritten revision kept
// at preserved_at), conflict-preserved (the document kept its text, the
// save's text kept at preserved_at), and replayed for a repeated
// Idempotency-Key.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/syncws"
)

// Config configures a gateway.
type Config struct {
	Shards int
	// SelfShard is this pod's shard (-1: none); its documents go to Syncer.
	SelfShard int
	// Syncer is this pod's syncer (e.g. http://127.0.0.1:8081); documents
	// of SelfShard go there.
	Syncer string
	// PeerPattern is a printf pattern with one %d (the shard) giving a
	// peer's URL: its gateway (which relays the internal API to its own
	// syncer) or its syncer.
	PeerPattern string
	// Peers, if set, lists every shard's gateway or syncer URL (local
	// runs); it takes precedence over PeerPattern.
	Peers         []string
	TokenKey      []byte
	InternalToken string
	Logger        *slog.Logger
	HTTP          *http.Client
	Now           func() time.Time
	// Metrics receives the gateway's measurements (default: a set
	// registered nowhere).
	Metrics *Metrics
	// SpoolDir, if set, keeps the traces of saves the gateway could not
	// confirm as files until they are recorded in their ledgers, so a
	// restarted gateway records those the last run could not (spool.go).
	SpoolDir string
	// BodyIdleTimeout bounds the wait for the next bytes of a request
	// body (default 30 s), BodyTimeout the wait for the whole body
	// (default 5 min). A client holding a body open, sending nothing or
	// a trickle, is answered 408 request_timeout, nothing applied,
	// instead of holding a handler (and its connection) for as long as it
	// likes.
	BodyIdleTimeout time.Duration
	BodyTimeout     time.Duration
}

// The body timeouts a Config leaves zero.
const (
	DefaultBodyIdleTimeout = 30 * time.Second
	DefaultBodyTimeout     = 5 * time.Minute
)

// Gateway serves the client API.
type Gateway struct {
	cfg Config
	log *slog.Logger
	// syncBE is the sync WebSocket's backend (NewSyncBackend), told of
	// REST saves so connected Yjs clients get them live. Atomic: the
	// drain of traces loaded from the spool starts in New and reads it
	// while NewSyncBackend sets it.
	syncBE atomic.Pointer[SyncBackend]
	// fwd: the sync connections forwarded to other shards' gateways
	// (forward.go).
	fwd forwarded

	// Saves whose commit could not be confirmed, to record (unconfirmed.go).
	unconfMu      sync.Mutex
	unconf        []unconfirmed
	unconfCur     *unconfirmed // the trace being recorded, out of the queue meanwhile
	unconfRunning bool
	// unconfStopping: FlushUnconfirmed has begun; no handoff is taken.
	unconfStopping bool
	// unconfHanded is unconfCur when it was handed to a peer while being
	// recorded: not queued again if the attempt fails.
	unconfHanded unconfirmed
	unconfBytes  int // of the Yjs updates held by unconf and unconfCur
	// unauth limits the unauthenticated refusals recorded (refusals.go).
	unauth refusalLimiter
	// users bounds one user's REST requests that write the ledger;
	// limited coalesces the records of those it refuses.
	users   userLimiter
	expired userLimiter // refusals of a user's expired tokens
	limited refusalLimiter
	// expiredRefusals coalesces the records of expired tokens' refusals
	// past their user's limit.
	expiredRefusals refusalLimiter
	// syncRefusals coalesces the records of a user's sync connections
	// and messages refused past their user's limit.
	syncRefusals refusalLimiter
}

// New returns a gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Shards < 1 {
		return nil, errors.New("gateway: shards must be positive")
	}
	if len(cfg.Peers) > 0 && len(cfg.Peers) != cfg.Shards {
		return nil, fmt.Errorf("gateway: %d peers for %d shards", len(cfg.Peers), cfg.Shards)
	}
	if cfg.PeerPattern != "" && strings.Count(cfg.PeerPattern, "%d") != 1 {
		return nil, errors.New("gateway: peer pattern needs exactly one %d")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.BodyIdleTimeout < 0 || cfg.BodyTimeout < 0 {
		return nil, errors.New("gateway: body timeouts must not be negative")
	}
	if cfg.BodyIdleTimeout == 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Metrics.batches == nil {
		cfg.Metrics.batches = &syncer.Batches{}
	}
	if cfg.HTTP == nil {
		// Every save is a request to a syncer: keep enough connections
		// alive (the default 2 per host made most saves under load open
		// a new TCP connection, a quarter of the gateway's CPU).
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 256
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, unauth: refusalLimiter{what: "unauthenticated"}, limited: refusalLimiter{what: "rate-limited"},
		expiredRefusals: refusalLimiter{what: "expired-token"}, syncRefusals: refusalLimiter{what: "sync"}}
	if cfg.SpoolDir != "" {
		if err := g.loadSpool(); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *Gateway) syncerFor(doc string) (*syncer.Client, error) {
	shard := placement.Shard(doc, g.cfg.Shards)
	var base string
	switch {
	case shard == g.cfg.SelfShard && g.cfg.Syncer != "":
		base = g.cfg.Syncer
	case len(g.cfg.Peers) > 0:
		base = g.cfg.Peers[shard]
	case g.cfg.PeerPattern != "":
		base = fmt.Sprintf(g.cfg.PeerPattern, shard)
	case g.cfg.Shards == 1 && g.cfg.Syncer != "":
		base = g.cfg.Syncer
	default:
		return nil, &store.Error{Status: http.StatusServiceUnavailable, Code: store.CodeUnavailable, Message: fmt.Sprintf("no route to shard %d", shard)}
	}
	return &syncer.Client{BaseURL: strings.TrimRight(base, "/"), Token: g.cfg.InternalToken, HTTP: g.cfg.HTTP, Log: g.log, Batch: g.cfg.Metrics.batches}, nil
}

func (g *Gateway) ownSyncer() *syncer.Client {
	base := g.cfg.Syncer
	if base == "" && len(g.cfg.Peers) > 0 {
		base = g.cfg.Peers[0]
	}
	return &syncer.Client{BaseURL: strings.TrimRight(base, "/"), Token: g.cfg.InternalToken, HTTP: g.cfg.HTTP, Log: g.log, Batch: g.cfg.Metrics.batches}
}

type apiError = store.Error

func bad(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return canonicalPaths(g.routes()) }

// routes is the gateway's HTTP API, without the check of its paths.
func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+contract.PathHealthz, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET "+contract.PathReadyz, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	p := contract.PathDocuments
	m := g.cfg.Metrics
	route := func(pattern, name string, h http.HandlerFunc) { mux.Handle(pattern, m.instrument(name, h)) }
	route("POST "+p, routeCreate, g.create)
	route("GET "+p, routeList, g.list)
	route("GET "+p+"/{id}", routeRead, g.read)
	route("PUT "+p+"/{id}", routeSave, g.save)
	route("GET "+p+"/{id}/revisions/{rev}", routeRevision, g.revision)
	route("GET "+p+"/{id}/preserved/{pid}", routePreserved, g.preserved)
	route("GET "+p+"/{id}/evidence", routeEvidence, g.evidence)
	route("GET "+p+"/{id}/evidence/verify", routeVerify, g.verify)
	route("POST "+p+"/{id}/updates", routeYjsUpdate, g.yjsUpdate)
	route("POST "+p+"/{id}/sync", routeSyncStep1, g.sync1)
	mux.HandleFunc("POST "+PathUnconfirmedHandoff, g.acceptHandoff)
	// Peers may name gateways (YAWP_PEER_PATTERN, `make dev`'s --peers) or
	// syncers: a gateway relays the internal API to its own syncer, which
	// checks the internal token. Never onwards: no loops.
	if g.cfg.Syncer != "" {
		if target, err := url.Parse(g.cfg.Syncer); err == nil {
			proxy := httputil.NewSingleHostReverseProxy(target)
			proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
				g.log.Warn("relaying to this pod's syncer failed", "path", r.URL.Path, "err", err)
				syncer.WriteError(w, bad(http.StatusBadGateway, store.CodeUnavailable, "this pod's syncer is unreachable"))
			}
			mux.Handle(contract.PathInternal, m.instrument(routeOther, proxy))
		}
	}
	route("/", routeOther, func(w http.ResponseWriter, r *http.Request) {
		syncer.WriteError(w, bad(http.StatusNotFound, "no_route", "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	return mux
}

// canonicalPaths refuses a path with an empty, "." or ".." segment as no
// route. The mux answered it with a redirect to the cleaned path, a
// different resource: GET /v1/documents//evidence went to the document
// named "evidence", and a client following redirects (with its token,
// same host) read or wrote there.
func canonicalPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Escaped, as the mux cleans it: "..%2f" is a (refused) document
		// ID, not a segment.
		p := r.URL.EscapedPath()
		if c := path.Clean(p); p != "" && p != c && p != c+"/" {
			syncer.WriteError(w, bad(http.StatusNotFound, "no_route", "no such endpoint: "+r.Method+" "+p+" (a path has no empty, . or .. segment)"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// unauthBodyWait bounds reading the body of a create that came without
// valid credentials (read only to name the document its refusal is
// recorded on).
const unauthBodyWait = 5 * time.Second

const (
	// codeRequestTimeout refuses a request whose body did not arrive in
	// time (Config.BodyIdleTimeout, Config.BodyTimeout).
	codeRequestTimeout = "request_timeout"
	// codeUnsupportedEncoding refuses a body with a Content-Encoding
	// other than identity.
	codeUnsupportedEncoding = "unsupported_encoding"
)

// authenticate verifies the bearer token.
func (g *Gateway) authenticate(r *http.Request) (auth.Claims, *apiError) {
	// The scheme is case-insensitive (RFC 9110), the token is not.
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	ok = ok && strings.EqualFold(scheme, "Bearer")
	tok = strings.TrimLeft(tok, " ")
	if !ok || tok == "" {
		return auth.Claims{}, bad(http.StatusUnauthorized, CodeUnauthenticated, "missing bearer token")
	}
	c, err := auth.Verify(g.cfg.TokenKey, tok, g.cfg.Now())
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, auth.ErrExpired):
		// Authentic but too old: the refusal is recorded under the
		// token's tenant and user, as the request's own (not as an
		// unauthenticated one, whose records are rate-limited).
		return c, bad(http.StatusUnauthorized, codeTokenExpired, strings.TrimPrefix(err.Error(), "auth: "))
	case errors.Is(err, auth.ErrNoKey):
		return auth.Claims{}, bad(http.StatusServiceUnavailable, "no_token_key", "the gateway has no token key configured")
	default:
		return auth.Claims{}, bad(http.StatusUnauthorized, CodeUnauthenticated, "invalid token")
	}
}

// challenge sets the WWW-Authenticate header a 401 must carry (RFC 9110
// 11.6.1), in the form of RFC 6750 3: a request that presented no token
// gets the bare challenge, one whose token was refused gets invalid_token,
// so that an HTTP client library knows to fetch a new token.
func challenge(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.Status != http.StatusUnauthorized {
		return
	}
	v := `Bearer realm="yawp"`
	// Another scheme (Basic, say) presented no bearer token either.
	if scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") && strings.TrimLeft(tok, " ") != "" {
		v += `, error="invalid_token", error_description=` + strconv.Quote(e.Message)
	}
	w.Header().Set("WWW-Authenticate", v)
}

// refuse answers with e and, when the request names a document, records
// the refusal in its ledger.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, doc string, c auth.Claims, e *apiError) {
	g.refuseWork(w, r, doc, c, e, nil, nil)
}

// refuseUpdate is refuse for a refused Yjs update: its record carries the
// update's hash and clients, so evidence asked about a client finds it.
func (g *Gateway) refuseUpdate(w http.ResponseWriter, r *http.Request, doc string, c auth.Claims, e *apiError, update []byte) {
	g.refuseWork(w, r, doc, c, e, update, nil)
}

// refuseWork is refuse for a request whose work is known: a Yjs update
// (its record carries the update's hash, clients and operations) or a
// legacy save's text (its record carries the text's hash, never the
// text). Evidence then tells a refused request whose work a later one
// committed from work that is only on the student's device.
func (g *Gateway) refuseWork(w http.ResponseWriter, r *http.Request, doc string, c auth.Claims, e *apiError, update []byte, content *string) {
	if doc != "" && contract.ValidDocID(doc) {
		tenant, user, reason := c.Tenant, c.User, e.Message
		record := true
		switch {
		case tenant == "":
			tenant, user = unauthenticated, ""
			var note string
			record, note = g.unauth.admit(doc, g.cfg.Now())
			reason += note
		case e.Code == CodeRateLimited, e.Code == codeTokenExpired && !g.expired.allow(tenant, user, g.cfg.Now()):
			// Recorded, but not one row per refused request: that would
			// write the ledger at the rate the limit is there to stop.
			// An expired token is still its user's (authentic, only too
			// old): its refusals have a limit of their own per user, the
			// same as the user's requests, but not theirs, so a leaked
			// old token cannot spend the student's live budget.
			lim := &g.limited
			if e.Code == codeTokenExpired {
				lim = &g.expiredRefusals // its note counts expired-token refusals, not rate-limited ones
			}
			var note string
			record, note = lim.admit(tenant+"\x00"+doc, g.cfg.Now())
			reason += note
		}
		if s, err := g.syncerFor(doc); err == nil && record {
			// On record even when the client has gone (a body cut short
			// ends the request's context with the connection).
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			rec := store.Request{Kind: store.KindReject, Doc: doc, Tenant: tenant, User: user,
				RequestID: requestID(r), IdempotencyKey: headerForRecord(r, contract.HeaderIdempotencyKey), Code: e.Code, Reason: reason, Update: update}
			if content != nil && c.Tenant != "" {
				// Hashed by the syncer into the record; text sent without
				// a valid token is nobody's to vouch for.
				rec.Content = *content
			}
			_, err := s.Apply(ctx, rec)
			if err != nil {
				g.log.Warn("recording a rejection", "doc", doc, "err", err)
			}
		}
	}
	syncer.WriteError(w, e)
}

// jsonType names what a Go field of type t takes, in JSON's words.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// jsonKind names the JSON value an UnmarshalTypeError describes ("number
// -5", "array"): its kind, without the value.
func jsonKind(v string) string {
	k, _, _ := strings.Cut(v, " ")
	switch k {
	case "array", "object":
		return "an " + k
	case "":
		return "that"
	}
	return "a " + k
}

// requestID is the client's request ID, kept for the record only.
func requestID(r *http.Request) string { return headerForRecord(r, contract.HeaderRequestID) }

// headerForRecord is a header's value as the ledger can keep it: cut to
// 128 bytes on a character boundary, bytes that are not UTF-8 replaced.
func headerForRecord(r *http.Request, name string) string {
	v := strings.ToValidUTF8(r.Header.Get(name), "\uFFFD")
	for len(v) > contract.MaxIDBytes {
		_, n := utf8.DecodeLastRuneInString(v)
		v = v[:len(v)-n]
	}
	return v
}

// checkKey refuses an Idempotency-Key that could not name one request
// exactly: over 128 bytes, or not printable ASCII (bytes that are not
// UTF-8 would reach the syncer changed, so two different keys could
// become one and the second save be answered as the first's replay).
func checkKey(key string) *apiError {
	if key == "" {
		// An unset variable in a client's script ("Idempotency-Key:
		// $KEY"): taken for no key, every retry made another document.
		return bad(http.StatusBadRequest, store.CodeInvalidRequest, "Idempotency-Key is empty; leave the header out or give a key")
	}
	if len(key) > contract.MaxIDBytes {
		return bad(http.StatusBadRequest, store.CodeInvalidRequest, "Idempotency-Key longer than 128 bytes")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return bad(http.StatusBadRequest, store.CodeInvalidRequest, "Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

// idempotencyKey is the request's Idempotency-Key (the first, if given
// more than once) and its refusal, if any: given more than once, or not
// one checkKey takes.
func idempotencyKey(r *http.Request) (string, *apiError) {
	vs := r.Header.Values(contract.HeaderIdempotencyKey)
	if len(vs) == 0 {
		return "", nil
	}
	if e := onceOnly(contract.HeaderIdempotencyKey, vs); e != nil {
		return vs[0], e
	}
	return vs[0], checkKey(vs[0])
}

// onceOnly refuses a header given on more than one line (vs, its
// values). Which one the client meant cannot be told: the gateway took
// the first, and a save went through on one base revision or key when the
// client may have meant the other.
func onceOnly(name string, vs []string) *apiError {
	if len(vs) < 2 {
		return nil
	}
	return bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("%s is given %d times; send it once", name, len(vs)))
}

// Whether begin records a failed authentication in the document's ledger.
const (
	recordRefusal = true  // the request would have written or synced: the refusal is evidence of the attempt
	readOnly      = false // a read: refusing it leaves no trace in the document's evidence
)

// begin authenticates and validates the document ID. A refused write or
// sync is recorded in the document's ledger: support asks what became of
// a student's save, and "refused: token_expired" is that answer. A refused
// read is not: it is no save, and a reader with an expired token
// (support asking for the evidence itself) must not write into the
// history it looks at.
func (g *Gateway) begin(w http.ResponseWriter, r *http.Request, record bool) (auth.Claims, string, bool) {
	c, aerr := g.authenticate(r)
	return g.admit(w, r, record, c, aerr)
}

// admit is begin on the outcome of authenticating r, for a handler that
// looked at it first.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, record bool, c auth.Claims, aerr *apiError) (auth.Claims, string, bool) {
	doc := r.PathValue("id")
	if aerr != nil {
		challenge(w, r, aerr)
		if record {
			g.refuse(w, r, doc, c, aerr)
		} else {
			syncer.WriteError(w, aerr)
		}
		return c, doc, false
	}
	if doc != "" && !contract.ValidDocID(doc) {
		syncer.WriteError(w, bad(http.StatusBadRequest, "invalid_id", "document IDs are 1..128 of [A-Za-z0-9._-], starting alphanumeric"))
		return c, doc, false
	}
	return c, doc, true
}

// bodyTimeout is the error of a body read past its time (timedBody);
// its message says which time.
type bodyTimeout struct{ msg string }

func (e *bodyTimeout) Error() string { return e.msg }

// timedBody is a request body read with deadlines on its connection:
// bytes at least every idle, the whole body by end. Without them a client
// holding a body open (sending nothing, or a byte now and then) held its
// handler and connection for as long as it liked.
type timedBody struct {
	io.ReadCloser
	rc          *http.ResponseController
	idle, total time.Duration
	end         time.Time
}

func (b *timedBody) Read(p []byte) (int, error) {
	d, idle := time.Now().Add(b.idle), true
	if !d.Before(b.end) {
		d, idle = b.end, false
	}
	// A ResponseWriter that reaches no connection (a test's recorder)
	// cannot take a deadline: its body is read without one.
	_ = b.rc.SetReadDeadline(d)
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if idle {
			return n, &bodyTimeout{msg: fmt.Sprintf("no bytes of the request body arrived for %s", b.idle)}
		}
		return n, &bodyTimeout{msg: fmt.Sprintf("the request body did not arrive within %s", b.total)}
	}
	return n, err
}

// readAll reads r's body, at most limit bytes, within the body timeouts
// (Config.BodyIdleTimeout, Config.BodyTimeout; wait, if shorter, bounds
// the whole body instead).
func (g *Gateway) readAll(w http.ResponseWriter, r *http.Request, limit int64, wait time.Duration) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		// Nothing to wait for. A deadline set now would bound what
		// net/http already reads behind the request (it does for one
		// without a body), and its passing end the request's context.
		return []byte{}, nil
	}
	total := g.cfg.BodyTimeout
	if wait > 0 && wait < total {
		total = wait
	}
	b := &timedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: g.cfg.BodyIdleTimeout, total: total, end: time.Now().Add(total)}
	// Once the whole body is read, net/http clears the deadline itself
	// (HTTP/1 reads on behind the body with none; HTTP/2's bounds the
	// body alone): the work the body asks for, a commit that may take its
	// time, is not bounded by it.
	raw, err := io.ReadAll(http.MaxBytesReader(w, b, limit))
	var te *bodyTimeout
	if errors.As(err, &te) {
		// The rest of the body is still on its way: the connection can
		// carry no other request.
		w.Header().Set("Connection", "close")
	}
	return raw, err
}

// readError is the refusal of a body that could not be read: too large,
// too slow (a 408: the client stalled), or cut off (the client went away).
func readError(err error, tooLarge string) *apiError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return bad(http.StatusRequestEntityTooLarge, store.CodeTooLarge, tooLarge)
	}
	if e := timeoutError(err); e != nil {
		return e
	}
	return bad(http.StatusBadRequest, store.CodeInvalidRequest, "reading the body: "+err.Error())
}

// timeoutError is the refusal of a body read past its time, or nil.
func timeoutError(err error) *apiError {
	var te *bodyTimeout
	if !errors.As(err, &te) {
		return nil
	}
	return bad(http.StatusRequestTimeout, codeRequestTimeout, te.msg+"; nothing was applied: send the request again")
}

// decodeBody reads a JSON body into v (readBody, decodeRaw); wait, if
// not zero, bounds the whole body (see readAll).
func (g *Gateway) decodeBody(w http.ResponseWriter, r *http.Request, v any, wait time.Duration) *apiError {
	raw, e := g.readBody(w, r, wait)
	if e != nil {
		return e
	}
	return decodeRaw(raw, v)
}

// readBody reads a request body of at most contract.MaxBodyBytes (see
// readAll).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, wait time.Duration) ([]byte, *apiError) {
	raw, err := g.readAll(w, r, contract.MaxBodyBytes, wait)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, bad(http.StatusRequestEntityTooLarge, store.CodeTooLarge, fmt.Sprintf("request body over %d bytes", contract.MaxBodyBytes))
		}
		if e := timeoutError(err); e != nil {
			return nil, e
		}
		return nil, bad(http.StatusBadRequest, "invalid_json", "reading body: "+err.Error())
	}
	return raw, nil
}

// encodingError refuses a body with a Content-Encoding other than
// identity: the gateway decodes none, and read as if not encoded, a
// gzipped save was refused as "not UTF-8" and a plain one labelled gzip
// was saved. The answer names what is accepted (RFC 9110 15.5.16).
func encodingError(w http.ResponseWriter, r *http.Request) *apiError {
	for _, v := range r.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			c = strings.TrimSpace(c)
			if c == "" || strings.EqualFold(c, "identity") {
				continue
			}
			w.Header().Set("Accept-Encoding", "identity")
			return bad(http.StatusUnsupportedMediaType, codeUnsupportedEncoding,
				fmt.Sprintf("the body has Content-Encoding %q, which the gateway does not decode: send it unencoded (identity)", c))
		}
	}
	return nil
}

// decodeRaw decodes a JSON body into v (see decodeBody).
func decodeRaw(raw []byte, v any) *apiError {
	// Said plainly: the decoder's words for these were "EOF" and
	// "invalid character 'ï' looking for beginning of value".
	if len(bytes.TrimSpace(raw)) == 0 {
		return bad(http.StatusBadRequest, "invalid_json", "the body is empty; it must be a JSON object")
	}
	if bytes.HasPrefix(raw, []byte("\xEF\xBB\xBF")) {
		return bad(http.StatusBadRequest, "invalid_json",
			"the body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow (RFC 8259 8.1); send the JSON without it")
	}
	// encoding/json would read bytes that are not UTF-8 as U+FFFD, and
	// the text saved would not be the text sent.
	if !utf8.Valid(raw) {
		return bad(http.StatusBadRequest, "invalid_json", "the body is not UTF-8")
	}
	// Nor a \uXXXX escape of half a surrogate pair (an editor cutting
	// text at a UTF-16 index sends one): it too would be saved as U+FFFD.
	if at := loneSurrogate(raw); at >= 0 {
		return bad(http.StatusBadRequest, "invalid_json", fmt.Sprintf("a string escape at byte %d is half of a UTF-16 surrogate pair, not a character", at))
	}
	if e := exactFields(raw, v); e != nil {
		return e
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return bad(http.StatusBadRequest, store.CodeInvalidRequest, "the body must be a JSON object, not "+jsonKind(te.Value))
			}
			return bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonType(te.Type), jsonKind(te.Value)))
		}
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return bad(http.StatusBadRequest, store.CodeInvalidRequest, err.Error())
		}
		return bad(http.StatusBadRequest, "invalid_json", "malformed JSON: "+err.Error())
	}
	// More misses a stray '}' or ']' after the object; the next token
	// must be the end of the body.
	if _, err := dec.Token(); err != io.EOF {
		return bad(http.StatusBadRequest, "invalid_json", "trailing data after the JSON object")
	}
	return nil
}

// loneSurrogate returns the offset of the first \uXXXX escape in raw that
// is half of a UTF-16 surrogate pair without its other half, or -1.
// Backslashes occur only inside strings in JSON; a body that is not JSON
// is refused by the decoder anyway.
func loneSurrogate(raw []byte) int {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // another escape: skip the escaped byte
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if lo, ok := hex4(i + 6); ok && lo >= 0xDC00 && lo < 0xE000 {
				i += 11
				continue
			}
			return i
		case r >= 0xDC00 && r < 0xE000:
			return i
		}
		i += 5
	}
	return -1
}

// exactFields refuses a body whose top-level object names a field twice or
// names one in another case than the API's (encoding/json would match
// "CONTENT" to content, and keep the last of two "content"s): the text
// saved must be the one the client meant, not a guess. The API's fields
// are v's JSON tags. Anything that is not an object is left to the
// decoder's error.
func exactFields(raw []byte, v any) *apiError {
	known := map[string]bool{}
	if t := reflect.TypeOf(v); t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		for f := range t.Elem().Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				known[name] = true
			}
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		switch {
		case seen[name]:
			return bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("field %q appears twice", name))
		case !known[name]:
			return bad(http.StatusBadRequest, store.CodeInvalidRequest, fmt.Sprintf("json: unknown field %q (field names are case-sensitive)", name))
		}
		seen[name] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

// keyedDocID is the ID of the document a create that names none reaches
// with its Idempotency-Key, derived from the tenant and the key so that a
// retry reaches the same document; "" without a tenant or a valid key
// (keyErr, idempotencyKey's refusal of it).
func keyedDocID(tenant, key string, keyErr *apiError) string {
	if tenant == "" || keyErr != nil || key == "" {
		return ""
	}
	s := sha256.Sum256([]byte(tenant + "\x00" + key))
	return "d" + hex.EncodeToString(s[:12])
}

type createBody struct {
	// ID is nil when the body leaves it out; "" is an invalid ID.
	ID      *string `json:"id,omitempty"`
	Title   *string `json:"title,omitempty"`
	Content *string `json:"content"`
}

type saveBody struct {
	Title   *string `json:"title,omitempty"`
	Content *string `json:"content"`
}

// SaveResponse is the legacy API's answer to a create or save.
type SaveResponse struct {
	store.Result
	// PreservedAt is where superseded or conflicting content can be read.
	PreservedAt string `json:"preserved_at,omitempty"`
	Message     string `json:"message"`
}

func describe(r store.Result) SaveResponse {
	out := SaveResponse{Result: r}
	switch r.Outcome {
	case store.OutcomeCreated:
		out.Message = "document created"
	case store.OutcomeSaved:
		out.Message = "saved"
	case store.OutcomeMerged:
		out.Message = "your save was based on an older revision; it was merged with the changes made since"
	case store.OutcomeOverwrittenPreserved:
		out.Message = fmt.Sprintf("your save was based on an older revision and replaced revision %d, which is preserved", r.SupersededRevision)
		out.PreservedAt = fmt.Sprintf("%s/%s/revisions/%d", contract.PathDocuments, r.Doc, r.SupersededRevision)
	case store.OutcomeConflictPreserved:
		out.Message = "your save conflicted with changes made since its base revision; the document kept those changes and your text is preserved"
		out.PreservedAt = fmt.Sprintf("%s/%s/preserved/%d", contract.PathDocuments, r.Doc, r.PreservedID)
	default:
		out.Message = r.Outcome
	}
	if r.Replayed {
		out.Message += " (replayed: this request was already applied)"
	}
	return out
}

func (g *Gateway) create(w http.ResponseWriter, r *http.Request) {
	c, aerr := g.authenticate(r)
	if aerr != nil {
		challenge(w, r, aerr)
		// The URL names no document: the body does, if it names one,
		// and the refused attempt goes on that document's record ("was
		// my essay ever saved?" "refused: token_expired"). A body sent
		// without valid credentials gets a few seconds to arrive: read
		// without a deadline, slow ones held their connections and up
		// to 1 MiB each for as long as the sender liked.
		var b createBody
		doc := ""
		if g.decodeBody(w, r, &b, unauthBodyWait) == nil && b.ID != nil && contract.ValidDocID(*b.ID) {
			doc = *b.ID
		} else if b.ID == nil {
			key, keyErr := idempotencyKey(r)
			doc = keyedDocID(c.Tenant, key, keyErr) // an expired token still names its tenant
		}
		g.refuseWork(w, r, doc, c, aerr, nil, b.Content)
		return
	}
	if e := encodingError(w, r); e != nil {
		syncer.WriteError(w, e) // the body, not read, names no document to record it on
		return
	}
	var b createBody
	raw, e := g.readBody(w, r, 0)
	if e == nil {
		e = decodeRaw(raw, &b)
	}
	key, keyErr := idempotencyKey(r)
	if e != nil {
		// Refused for its shape: on the record of the document the body
		// names, if it names a valid one (as a refused save is).
		var named struct {
			ID *string `json:"id"`
		}
		// A type error elsewhere still fills id; a syntax error fills
		// nothing.
		_ = json.Unmarshal(raw, &named)
		if named.ID != nil && contract.ValidDocID(*named.ID) {
			g.refuse(w, r, *named.ID, c, e)
			return
		}
		if doc := keyedDocID(c.Tenant, key, keyErr); named.ID == nil && doc != "" {
			// No id, and a key: the document its retry reaches.
			g.refuse(w, r, doc, c, e)
			return
		}
		syncer.WriteError(w, e)
		return
	}
	doc := ""
	switch {
	case b.ID != nil:
		doc = *b.ID
		if !contract.ValidDocID(doc) {
			syncer.WriteError(w, bad(http.StatusBadRequest, "invalid_id", "document IDs are 1..128 of [A-Za-z0-9._-], starting alphanumeric"))
			return
		}
	case key != "" || keyErr != nil:
		if keyErr != nil {
			syncer.WriteError(w, keyErr) // no document to record it on
			return
		}
		// A retried create lands on the same document.
		doc = keyedDocID(c.Tenant, key, keyErr)
	default:
		var rb [12]byte
		_, _ = rand.Read(rb[:])
		doc = "d" + hex.EncodeToString(rb[:])
	}
	if b.Content == nil {
		g.refuse(w, r, doc, c, bad(http.StatusBadRequest, store.CodeInvalidRequest, `field "content" is required`))
		return
	}
	if keyErr != nil {
		g.refuse(w, r, doc, c, keyErr)
		return
	}
	g.apply(w, r, http.StatusCreated, store.Request{Kind: store.KindCreate, Doc: doc, Tenant: c.Tenant, User: c.User,
		RequestID: requestID(r), IdempotencyKey: key, Title: b.Title, Content: *b.Content})
}

func (g *Gateway) apply(w http.ResponseWriter, r *http.Request, status int, req store.Request) {
	if !g.users.allow(req.Tenant, req.User, g.cfg.Now()) {
		w.Header().Set("Retry-After", "1")
		// With its work (the update's operations, the text's hash): a
		// client told to retry in a second usually does, and evidence
		// then says the refused work was committed by the retry.
		var content *string
		if req.Kind == store.KindCreate || req.Kind == store.KindSave {
			content = &req.Content
		}
		g.refuseWork(w, r, req.Doc, auth.Claims{Tenant: req.Tenant, User: req.User}, bad(http.StatusTooManyRequests, CodeRateLimited,
			fmt.Sprintf("over %d saves, updates and syncs a second for this user; retry in a second", userPerSecond)), req.Update, content)
		return
	}
	s, err := g.syncerFor(req.Doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	res, err := s.Apply(r.Context(), req)
	if err != nil {
		if unavailable(err) {
			g.recordUnconfirmed(req, err)
		}
		if foreignHandled(err) {
			// A foreign-history update's text may have been merged and
			// committed: sync clients get it live.
			g.committedOutsideSync(req, store.Result{Outcome: store.OutcomeSaved})
		}
		syncer.WriteError(w, err)
		return
	}
	g.committedOutsideSync(req, res)
	if res.Revision > 0 {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(res.Revision, 10)))
	}
	if req.Kind == store.KindCreate {
		// Where the document now lives (RFC 9110 10.2.2); a replayed
		// create names the same one.
		w.Header().Set("Location", contract.PathDocuments+"/"+res.Doc)
	}
	if res.Replayed && status == http.StatusCreated {
		status = http.StatusOK
	}
	syncer.WriteJSON(w, status, describe(res))
}

func (g *Gateway) save(w http.ResponseWriter, r *http.Request) {
	c, aerr := g.authenticate(r)
	if aerr != nil && aerr.Code == codeTokenExpired && c.Tenant != "" && contract.ValidDocID(r.PathValue("id")) {
		// Authentic, only too old (as for a Yjs update): the editor saves
		// again once it has a new token, under a new request ID. The
		// record keeps the text's hash, so evidence of this refusal can
		// say the same text was saved by that later request.
		var b saveBody
		_ = g.decodeBody(w, r, &b, unauthBodyWait)
		challenge(w, r, aerr)
		g.refuseWork(w, r, r.PathValue("id"), c, aerr, nil, b.Content)
		return
	}
	c, doc, ok := g.admit(w, r, recordRefusal, c, aerr)
	if !ok {
		return
	}
	if e := encodingError(w, r); e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	var base int64
	ims := r.Header.Values("If-Match")
	if e := onceOnly("If-Match", ims); e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	// An empty value is not "no condition": a client whose revision
	// variable was unset ("If-Match: $REV") would overwrite unawares.
	if len(ims) == 1 && ims[0] != "*" {
		im := ims[0]
		if strings.Contains(im, ",") {
			// A list of entity tags (RFC 9110 13.1.1): a save has one base.
			g.refuse(w, r, doc, c, bad(http.StatusBadRequest, store.CodeInvalidRequest,
				"If-Match names more than one revision; send the one revision the text is based on"))
			return
		}
		v := strings.TrimPrefix(im, "W/")
		if q, ok := strings.CutPrefix(v, `"`); ok {
			// A quoted entity tag: exactly one pair of quotes.
			v, ok = strings.CutSuffix(q, `"`)
			if !ok {
				v = "not quoted right"
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if strings.HasPrefix(v, "+") {
			err = strconv.ErrSyntax // digits only, as the other numbers of the API
		}
		if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
			// A positive revision beyond any document's: higher than the
			// latest, as docs/api.md answers it.
			g.refuse(w, r, doc, c, bad(http.StatusPreconditionFailed, store.CodeUnknownRevision, "base revision "+v+" is not a revision of this document"))
			return
		}
		if err != nil || n < 1 {
			g.refuse(w, r, doc, c, bad(http.StatusBadRequest, store.CodeInvalidRequest, "If-Match must be a revision number"))
			return
		}
		base = n
	}
	var b saveBody
	if e := g.decodeBody(w, r, &b, 0); e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	if b.Content == nil {
		g.refuse(w, r, doc, c, bad(http.StatusBadRequest, store.CodeInvalidRequest, `field "content" is required`))
		return
	}
	key, e := idempotencyKey(r)
	if e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	g.apply(w, r, http.StatusOK, store.Request{Kind: store.KindSave, Doc: doc, Tenant: c.Tenant, User: c.User,
		RequestID: requestID(r), IdempotencyKey: key, Title: b.Title, Content: *b.Content, BaseRevision: base})
}

func (g *Gateway) yjsUpdate(w http.ResponseWriter, r *http.Request) {
	c, aerr := g.authenticate(r)
	if aerr != nil && aerr.Code == codeTokenExpired && c.Tenant != "" && contract.ValidDocID(r.PathValue("id")) {
		// Authentic, only too old: a student's offline work sent after her
		// token ran out. Its operations exist only on her device; the
		// record names them (hash, clients), as any refused update's.
		raw, err := g.readAll(w, r, contract.MaxUpdateBytes, unauthBodyWait)
		if err != nil {
			raw = nil
		}
		challenge(w, r, aerr)
		g.refuseUpdate(w, r, r.PathValue("id"), c, aerr, raw)
		return
	}
	c, doc, ok := g.begin(w, r, recordRefusal)
	if !ok {
		return
	}
	if e := encodingError(w, r); e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	raw, err := g.readAll(w, r, contract.MaxUpdateBytes, 0)
	if err != nil {
		g.refuse(w, r, doc, c, readError(err, fmt.Sprintf("update over %d bytes", contract.MaxUpdateBytes)))
		return
	}
	g.apply(w, r, http.StatusOK, store.Request{Kind: store.KindYjs, Doc: doc, Tenant: c.Tenant, User: c.User, RequestID: requestID(r), Update: raw})
}

func (g *Gateway) sync1(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, recordRefusal)
	if !ok {
		return
	}
	if e := encodingError(w, r); e != nil {
		g.refuse(w, r, doc, c, e)
		return
	}
	raw, err := g.readAll(w, r, contract.MaxStateVectorBytes, 0)
	if err != nil {
		g.refuse(w, r, doc, c, readError(err, "state vector too large"))
		return
	}
	g.apply(w, r, http.StatusOK, store.Request{Kind: store.KindSync1, Doc: doc, Tenant: c.Tenant, User: c.User, RequestID: requestID(r), StateVector: raw})
}

// query parses the request's query string strictly: url.Values drops
// the pairs it cannot parse (a bad percent escape, a ';'), and the
// request would be answered as if it had not asked what it asked.
func query(r *http.Request) (url.Values, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, bad(http.StatusBadRequest, store.CodeInvalidRequest, "the query string cannot be parsed: "+err.Error())
	}
	return q, nil
}

func (g *Gateway) list(w http.ResponseWriter, r *http.Request) {
	c, _, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	q, qerr := query(r)
	if qerr != nil {
		syncer.WriteError(w, qerr)
		return
	}
	limit := 0 // the default, 1000
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(vs[0])
		if len(vs) != 1 || err != nil || n < 1 || n > 1000 {
			syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, "limit must be given once, a number from 1 to 1000"))
			return
		}
		limit = n
	}
	after := ""
	if vs, ok := q["after"]; ok {
		// A cursor is the last ID of the page before: a document ID, of
		// any document the list returns, so sync's rule, not REST's
		// (documents made over sync under wider IDs are listed too, and a
		// page ending on one could not be followed).
		if len(vs) != 1 || !syncws.ValidDocID(vs[0]) {
			syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, "after must be given once, a document ID (the last ID of the page before)"))
			return
		}
		after = vs[0]
	}
	out, err := g.ownSyncer().List(r.Context(), c.Tenant, after, limit)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	syncer.WriteJSON(w, http.StatusOK, map[string]any{"documents": out})
}

func (g *Gateway) read(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	s, err := g.syncerFor(doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	d, err := s.Read(r.Context(), c.Tenant, doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(d.Revision, 10)))
	w.Header().Set(contract.HeaderStage, d.Stage.Stage)
	w.Header().Set(contract.HeaderEpoch, strconv.FormatInt(d.Stage.Epoch, 10))
	syncer.WriteJSON(w, http.StatusOK, d)
}

func (g *Gateway) revision(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	rev, err := strconv.ParseInt(r.PathValue("rev"), 10, 64)
	if errors.Is(err, strconv.ErrRange) && rev > 0 {
		err = nil // past any revision: not found
	}
	if err != nil || rev < 1 {
		syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, "revision must be a positive integer"))
		return
	}
	s, err := g.syncerFor(doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	out, err := s.Revision(r.Context(), c.Tenant, doc, rev)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	syncer.WriteJSON(w, http.StatusOK, out)
}

func (g *Gateway) preserved(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("pid"), 10, 64)
	if errors.Is(err, strconv.ErrRange) && id > 0 {
		err = nil // past any preserved text: not found
	}
	if err != nil || id < 1 {
		syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, "preserved ID must be a positive integer"))
		return
	}
	s, err := g.syncerFor(doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	out, err := s.Preserved(r.Context(), c.Tenant, doc, id)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	syncer.WriteJSON(w, http.StatusOK, out)
}

func (g *Gateway) evidence(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	given, qerr := query(r)
	if qerr != nil {
		syncer.WriteError(w, qerr)
		return
	}
	q := url.Values{}
	for _, k := range []string{"request", "revision", "client", "user", "since"} {
		vs, ok := given[k]
		if !ok {
			continue
		}
		if len(vs) != 1 || vs[0] == "" {
			syncer.WriteError(w, bad(http.StatusBadRequest, store.CodeInvalidRequest, k+" must be given once, not empty"))
			return
		}
		q.Set(k, vs[0])
	}
	if _, err := syncer.EvidenceQueryFrom(q); err != nil {
		syncer.WriteError(w, err)
		return
	}
	q.Set("tenant", c.Tenant)
	s, err := g.syncerFor(doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	out, err := s.Evidence(r.Context(), doc, q)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	syncer.WriteJSON(w, http.StatusOK, out)
}

// verify is operator-only: it checks a document's whole hash chain, and
// the receipts given (receipt=<ledger_seq>:<ledger_hash>, repeated)
// against it.
func (g *Gateway) verify(w http.ResponseWriter, r *http.Request) {
	c, doc, ok := g.begin(w, r, readOnly)
	if !ok {
		return
	}
	if !c.Operator {
		syncer.WriteError(w, bad(http.StatusForbidden, "forbidden", "operator token required"))
		return
	}
	// Strictly parsed: r.URL.Query() drops a pair it cannot parse (a bad
	// percent escape, a ';'), and a receipt dropped so is one never
	// checked: the chain alone reads as verified.
	q, qerr := query(r)
	if qerr != nil {
		syncer.WriteError(w, qerr)
		return
	}
	receipts, err := syncer.ReceiptsFrom(q)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	s, err := g.syncerFor(doc)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	out, err := s.Verify(r.Context(), doc, receipts)
	if err != nil {
		syncer.WriteError(w, err)
		return
	}
	syncer.WriteJSON(w, http.StatusOK, out)
}
