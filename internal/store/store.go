// Package store is the syncer's persistence engine for one shard: it owns
// the document tables of internal/migrations (documents, document_revisions,
// preserved_content, yjs_updates, yjs_snapshots, save_ledger, shard_leases,
// and save_requests, read for idempotency keys recorded before migration
// 00010) and is the only writer of its shard's rows.
//
// # Apply path
//
// Every save (a legacy create or save, a Yjs update, a client's sync step 1,
// a rejection to record) is a [Request] submitted to the shard's [Engine].
// One goroutine takes the queued requests as a group and applies them in one
// transaction (group commit):
//
//  1. check the shard lease FOR SHARE: the transaction aborts unless the
//     shard epoch is still this engine's (a replaced syncer is fenced);
//  2. dataplane.LockSaveStages: register unseen tenants and read each
//     tenant's cohort (stage, epoch) FOR KEY SHARE under the rollout's stage
//     lock (shared), so a stage flip waits for the
//     group and each save commits under exactly one (stage, epoch);
//  3. apply every request to every representation its document has, as the
//     stage table of the design brief says, and append hash-chained ledger
//     entries naming stage, epoch, shard epoch, hashes and the client's and
//     request's identity;
//  4. commit; only then are the requests acknowledged.
//
// Steps 1-2 are read in a first round trip and the writes and COMMIT sent
// in a second. When every tenant of the group was seen by an earlier group,
// the group is one round trip instead: the fence and the tenants' expected
// (stage, epoch) are checked by statements that take the same stage and row
// locks and abort the transaction if anything changed, ahead of the writes
// in the same pipeline; on any refusal the group runs again the
// two-round-trip way.
//
// If a group fails, its documents are evicted from memory and each request
// is retried alone, so one bad request cannot fail its neighbours. Replays
// change nothing: a legacy request is answered from its idempotency key's
// stored result (kept with the revision the request made), a Yjs update whose operations are all contained is
// acknowledged as a duplicate without a write.
//
// Hot documents stay in memory (a bounded LRU); cold ones are loaded from
// their snapshot plus the Yjs log after it.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// Request kinds.
const (
	KindCreate = "create"
	KindSave   = "save"
	KindYjs    = "yjs-update"
	KindSync1  = "sync-step-1"
	KindReject = "reject"
	// KindDisconnect: a client that announced StateVector disconnected;
	// recorded only if it still holds operations the server lacks.
	KindDisconnect = "disconnect"
)

// Outcomes of a save.
const (
	OutcomeCreated              = "created"
	OutcomeSaved                = "saved"
	OutcomeMerged               = "merged"
	OutcomeOverwrittenPreserved = "overwritten-preserved"
	OutcomeConflictPreserved    = "conflict-preserved"
	OutcomeDuplicate            = "duplicate"
	OutcomePending              = "pending"
	OutcomeRecorded             = "recorded"
)

// Request is one save attempt (or a sync step 1, or a rejection to record).
type Request struct {
	Kind   string `json:"kind"`
	Doc    string `json:"doc"`
	Tenant string `json:"tenant"`
	User   string `json:"user"`
	// RequestID is the transport's request ID; IdempotencyKey the client's
	// key for a legacy request.
	RequestID      string  `json:"request_id,omitempty"`
	IdempotencyKey string  `json:"idempotency_key,omitempty"`
	Title          *string `json:"title,omitempty"`
	Content        string  `json:"content,omitempty"`
	// BaseRevision is the revision a legacy save was made on (If-Match);
	// 0 means none (an unconditional save).
	BaseRevision int64  `json:"base_revision,omitempty"`
	Update       []byte `json:"update,omitempty"`
	// UpdateTrace stands for Update in a rejection to record when the
	// update itself was not kept (the gateway's spool keeps no student
	// text): what the ledger entry needs of it.
	UpdateTrace *UpdateTrace `json:"update_trace,omitempty"`
	StateVector []byte       `json:"state_vector,omitempty"`
	// Again marks a sync step 1 asked again for the same message: the
	// gateway's first answer crossed a re-creation of the document, and
	// it needs the new document's. The first request recorded the
	// announcement; one message is one ledger entry, so this one is
	// answered without another (a refusal is still recorded).
	Again bool `json:"again,omitempty"`
	// Code and Reason describe a rejection to record.
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// UpdateTrace is what a refused update's ledger entry records of it: its
// sha256, its clients and the operations it carried (client -> [from
// clock, to clock)), at most MaxTraceClients of each.
type UpdateTrace struct {
	SHA256  string               `json:"sha256"`
	Clients []uint64             `json:"clients,omitempty"`
	Ops     map[string][2]uint64 `json:"ops,omitempty"`
}

// MaxTraceClients bounds the clients an UpdateTrace names.
const MaxTraceClients = 1024

// Result is what a request committed.
type Result struct {
	Doc        string              `json:"doc"`
	Outcome    string              `json:"outcome"`
	Revision   int64               `json:"revision,omitempty"`
	Title      string              `json:"title,omitempty"`
	Content    *string             `json:"content,omitempty"`
	Stage      dataplane.SaveStage `json:"stage"`
	ShardEpoch int64               `json:"shard_epoch"`
	LedgerSeq  int64               `json:"ledger_seq,omitempty"`
	LedgerHash string              `json:"ledger_hash,omitempty"`
	// Receipt is "<ledger_seq>:<ledger_hash>": kept by the client, it
	// proves later that the ledger still holds this commit as it was
	// (VerifyLedger).
	Receipt            string `json:"receipt,omitempty"`
	ContentSHA256      string `json:"content_sha256,omitempty"`
	SupersededRevision int64  `json:"superseded_revision,omitempty"`
	PreservedID        int64  `json:"preserved_id,omitempty"`
	// Update answers a sync step 1: what the client lacks.
	Update []byte `json:"update,omitempty"`
	// StateVector is the server's state vector after the request.
	StateVector []byte `json:"state_vector,omitempty"`
	// Missing lists what a client announced and we never received.
	Missing map[string][2]uint64 `json:"missing,omitempty"`
	// Replayed is true when the result was answered from an earlier
	// identical request.
	Replayed bool `json:"replayed,omitempty"`
}

// Error is a request refused with a stable code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes.
const (
	CodeNotFound         = "not_found"
	CodeInvalidUpdate    = "invalid_update"
	CodeInvalidSV        = "invalid_state_vector"
	CodeInvalidRequest   = "invalid_request"
	CodeTooLarge         = "too_large"
	CodeAlreadyExists    = "already_exists"
	CodeUnknownRevision  = "unknown_revision"
	CodeWrongShard       = "wrong_shard"
	CodeFenced           = "fenced"
	CodeUnavailable      = "unavailable"
	CodeIdempotencyReuse = "idempotency_key_reused"
)

func errf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrFenced is returned once another syncer took over the shard.
var ErrFenced = &Error{Status: http.StatusServiceUnavailable, Code: CodeFenced, Message: "this syncer no longer owns its shard"}

// AsError converts any error to an *Error (internal errors become
// "unavailable": the request may be retried).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the request failed on the server and changed nothing; retry it: " + err.Error()}
}

// now returns the syncer's clock truncated to PostgreSQL's precision.
func (e *Engine) now() time.Time { return e.cfg.Clock().UTC().Truncate(time.Microsecond) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
