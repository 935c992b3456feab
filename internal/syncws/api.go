// Package syncws serves the Yjs sync protocol over WebSocket the way an
// unmodified y-websocket WebsocketProvider expects it, for one document
// per connection (the room name is the document ID: PathSync+docID).
//
// Storage and authorisation are behind two interfaces, Backend and
// Authenticator, so the gateway plugs its syncer client in and tests plug
// in MemoryBackend.
//
// Per connection, the Hub:
//   - authenticates the token (?token=, Authorization: Bearer, or the
//     subprotocol pair "yawp", "yawp-token.<token>") and checks the
//     document's tenant; refusals accept the upgrade, send a y-protocols
//     permission-denied message and close with 4401/4403 and a reason,
//     because browsers cannot see an HTTP status of a failed upgrade;
//   - tells the client its cohort's protocol in the upgrade response
//     header Yawp-Protocol, and, to clients that opt in (?yawp=1 or the
//     "yawp" subprotocol), in a MessageYawp message {"protocol": "..."}
//     sent first and again whenever SetProtocol changes it;
//   - on sync step 1 from the client: records its state vector
//     (AnnounceStateVector, save evidence), answers with sync step 2 (what
//     the client lacks) and sends its own sync step 1 (the server's state
//     vector), so the client answers with step 2 holding what the server
//     lacks: the y-websocket handshake;
//   - on sync step 2 and update messages: Backend.ApplyUpdate, which is
//     durable before it returns, and only then relays the update to the
//     document's other connections;
//   - relays awareness to all of the document's connections (the sender
//     too, like y-websocket's server, which keeps the provider's 30 s
//     liveness check fed) without persisting it, remembers the latest
//     state per awareness client to answer query-awareness and to greet
//     new connections, and announces removal of a connection's clients
//     when it closes;
//   - enforces limits: message size, connections per user, a token
//     bucket of updates per user (a burst beyond it is slowed down, and a
//     client that would have to wait longer than RateWait is closed), an
//     awareness rate per connection, and a bounded send queue per
//     connection (a client that does not read is closed with 4508 instead
//     of stalling the room or growing memory).
//
// Close codes are in package contract (4400 malformed, 4401, 4403, 4413,
// 1013 rate limited, 4500, 4503, 4508, 1001).
package syncws

import (
	"context"
	"errors"
	"time"
)

// Principal is who a token says the client is.
type Principal struct {
	Tenant string
	User   string
}

// Session identifies one connection to one document, as passed to the
// Backend.
type Session struct {
	Principal
	// DocID is the document (the y-websocket room name).
	DocID string
	// DocTenant is the tenant owning the document ("" for a document that
	// does not exist yet, which the first update creates in the
	// principal's tenant).
	DocTenant string
	// ConnID is unique per connection of this Hub.
	ConnID string
	// Remote is the client's address.
	Remote string
	// ValidFor is how long the connection's token stayed valid when it
	// connected (0: no end). The connection is closed with 4401 when it
	// runs out: a token is not a pass for as long as a socket stays open.
	ValidFor time.Duration
}

// Authenticator turns tokens into principals and documents into tenants.
type Authenticator interface {
	// Authenticate verifies a bearer token and says how long it stays
	// valid (0: no end). Any error refuses the connection with 4401 and
	// the error's text as the reason.
	Authenticate(ctx context.Context, token string) (p Principal, validFor time.Duration, err error)
	// DocumentTenant returns the tenant owning docID, or "" and nil when
	// the document does not exist yet. A principal of another tenant is
	// refused with 4403.
	DocumentTenant(ctx context.Context, docID string) (string, error)
}

// Backend stores documents. Every method may be called concurrently, for
// the same document too; implementations serialise per document.
type Backend interface {
	// Protocol returns the protocol the document's cohort uses now
	// (contract.ProtocolLocalFirst or contract.ProtocolWriteThrough).
	Protocol(ctx context.Context, s Session) (string, error)
	// AnnounceStateVector records a state vector a client announced
	// (save evidence: operations it holds that the server lacks were
	// saved locally and not synced). Called before SyncStep1.
	AnnounceStateVector(ctx context.Context, s Session, sv []byte) error
	// SyncStep1 answers a client's state vector: update is everything the
	// server holds beyond clientSV (a v1 update), serverSV the server's
	// state vector, from the same snapshot.
	SyncStep1(ctx context.Context, s Session, clientSV []byte) (update, serverSV []byte, err error)
	// ApplyUpdate commits a v1 update durably and returns what is to be
	// relayed to the document's other clients (usually the update
	// itself; empty when it changed nothing, which also tells the Hub it
	// created no document: a connection opened on an ID without one
	// claims the ID for its tenant only with a non-empty answer). Errors
	// wrapping ErrMalformedUpdate close the connection with 4400,
	// ErrTooLarge with 4413, ErrForbidden with 4403; any other error with
	// 4500 (the client reconnects and re-sends: it still holds the
	// update). The backend records its own refusals; ApplyUpdate replayed
	// changes nothing.
	ApplyUpdate(ctx context.Context, s Session, update []byte) (applied []byte, err error)
	// Reject records a refusal decided by the Hub (authentication,
	// tenant, malformed frame, size, rate): the ledger's "rejected".
	// Principal and DocID may be empty when unknown. msg is the refused
	// WebSocket message when the refusal is of one (possibly malformed;
	// at most a few bytes over Limits.MaxMessageBytes), nil otherwise.
	Reject(ctx context.Context, s Session, code int, reason string, msg []byte)
}

// SessionObserver is optionally implemented by a Backend that wants to
// know when accepted connections open and close (evidence: when a client
// was last seen; metrics). Closed gets the close code the Hub sent, or
// 1000/1005/1006 style codes when the client went away.
type SessionObserver interface {
	Opened(ctx context.Context, s Session)
	Closed(ctx context.Context, s Session, code int, reason string)
}

// RefusalObserver is optionally implemented by a Backend that wants to
// know of connections refused before they opened (authentication, tenant,
// too many connections, shutting down): code is the close code sent. They
// never reach SessionObserver.
type RefusalObserver interface {
	Refused(ctx context.Context, s Session, code int)
}

// Errors a Backend wraps to choose the close code.
var (
	ErrMalformedUpdate = errors.New("syncws: malformed update")
	ErrTooLarge        = errors.New("syncws: too large")
	ErrForbidden       = errors.New("syncws: forbidden")
	// ErrForeignHistory: the client's copy is from a history the server
	// does not know; the client must reload (CloseForeignHistory).
	ErrForeignHistory = errors.New("syncws: foreign history")
)
