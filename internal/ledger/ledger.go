// Package ledger defines the save-evidence ledger's entries and its hash
// chain. Every document has its own chain: entry n's hash is
// sha256(hash of entry n-1 || canonical JSON of entry n), entry 1 chaining
// from 32 zero bytes. The canonical JSON is encoding/json of Entry (fixed
// field order, UTC timestamps), stored verbatim beside the hash, so anyone
// holding the rows can recompute the chain. The package does no I/O.
package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Entry kinds.
const (
	// KindCreated: a document was created (legacy create or first Yjs update).
	KindCreated = "created"
	// KindCommitted: a save was applied and committed.
	KindCommitted = "committed"
	// KindMerged: a stale-base legacy save was three-way merged.
	KindMerged = "merged"
	// KindPreserved: a save superseded content that is kept readable
	// (SupersededRevision or PreservedID says where).
	KindPreserved = "preserved"
	// KindRejected: a save reached us and was refused (Code, Reason).
	KindRejected = "rejected"
	// KindStateVector: a client announced its state vector (sync step 1);
	// Missing lists operations it holds that we never received.
	KindStateVector = "state-vector"
	// KindBackfill: the syncer's backfill gave a legacy-only document its
	// Yjs representation (a genesis of the legacy text; YjsSeq, Revision,
	// ContentSHA256 and StateVector say which).
	KindBackfill = "backfill"
	// KindRepaired: the syncer found the document's legacy row changed
	// outside the gateway (or its representations apart) and repaired it
	// from the stage's authoritative side with the other side's change
	// merged in (Revision, ContentSHA256, LegacySHA256, YjsSHA256; on a
	// conflict PreservedID names the other side's text, kept).
	KindRepaired = "repaired"
	// KindForeign: a Yjs client sent a history the server does not know
	// (another document generation); it was not CRDT-merged: its text was
	// three-way merged on text and its copy preserved (PreservedID).
	KindForeign = "foreign-history"
	// KindDisconnected: a client that had announced operations the server
	// lacks disconnected without sending them (Missing, StateVector as it
	// announced); its At is when the client was last seen.
	KindDisconnected = "disconnected"
)

// Entry is one ledger record. Only fields that apply are set.
type Entry struct {
	Doc        string    `json:"doc"`
	Seq        int64     `json:"seq"`
	Kind       string    `json:"kind"`
	At         time.Time `json:"at"`
	Tenant     string    `json:"tenant"`
	User       string    `json:"user,omitempty"`
	Stage      string    `json:"stage,omitempty"`
	Cohort     string    `json:"cohort,omitempty"`
	Epoch      int64     `json:"epoch"`
	Shard      int       `json:"shard"`
	ShardEpoch int64     `json:"shard_epoch"`
	// Protocol is "legacy" or "yjs".
	Protocol       string `json:"protocol,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Clients are the Yjs client IDs whose operations a Yjs update carried.
	Clients            []uint64 `json:"clients,omitempty"`
	BaseRevision       int64    `json:"base_revision,omitempty"`
	Revision           int64    `json:"revision,omitempty"`
	SupersededRevision int64    `json:"superseded_revision,omitempty"`
	PreservedID        int64    `json:"preserved_id,omitempty"`
	// ContentSHA256 is the hex sha256 of the document's text after the save
	// (or, for rejections, of the text that was refused, if any).
	ContentSHA256 string `json:"content_sha256,omitempty"`
	// LegacySHA256 and YjsSHA256 are the hex sha256 of the legacy row's
	// content and of the Yjs text as a repair found them.
	LegacySHA256 string `json:"legacy_sha256,omitempty"`
	YjsSHA256    string `json:"yjs_sha256,omitempty"`
	// UpdateSHA256 is the hex sha256 of a Yjs update as received.
	UpdateSHA256 string `json:"update_sha256,omitempty"`
	// YjsSeq is the update's position in the document's Yjs log.
	YjsSeq int64 `json:"yjs_seq,omitempty"`
	// StateVector is the document's (or, for KindStateVector, the
	// client's) state vector, as {client: clock}.
	StateVector map[string]uint64 `json:"state_vector,omitempty"`
	// Missing is, per client, the [clock, clock+len) range a client holds
	// that we never received.
	Missing map[string][2]uint64 `json:"missing,omitempty"`
	// PreservedOps is, per client, the [clock, clock+len) range of a
	// foreign history's operations kept aside (preserved) instead of
	// integrated (KindForeign).
	PreservedOps map[string][2]uint64 `json:"preserved_ops,omitempty"`
	Outcome      string               `json:"outcome,omitempty"`
	Code         string               `json:"code,omitempty"`
	Reason       string               `json:"reason,omitempty"`
}

// Canonical returns the entry's canonical bytes: encoding/json of the
// entry with its time in UTC (written by appendCanonical).
func (e Entry) Canonical() []byte {
	e.At = e.At.UTC()
	return appendCanonical(make([]byte, 0, 512), &e)
}

// Genesis is the "previous hash" of a chain's first entry.
var Genesis = make([]byte, sha256.Size)

// Hash chains body onto prev.
func Hash(prev, body []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	return h.Sum(nil)
}

// Row is an entry as stored: its canonical body and chain hashes.
type Row struct {
	Seq      int64
	Body     []byte
	PrevHash []byte
	Hash     []byte
}

// Seal fills e.Seq and returns its row chained on prev (nil: genesis).
func Seal(e Entry, seq int64, prev []byte) (Entry, Row) {
	if prev == nil {
		prev = Genesis
	}
	e.Seq = seq
	e.At = e.At.UTC()
	body := e.Canonical()
	return e, Row{Seq: seq, Body: body, PrevHash: prev, Hash: Hash(prev, body)}
}

// Problem is one break in a chain.
type Problem struct {
	Seq     int64  `json:"seq"`
	Problem string `json:"problem"`
}

// Verify checks a document's rows, in seq order: contiguous seqs from 1,
// each prev hash equal to the previous row's hash, each hash equal to the
// recomputed one, and each body canonical and naming doc and its seq.
func Verify(doc string, rows []Row) []Problem {
	var out []Problem
	prev := Genesis
	for i, r := range rows {
		want := int64(i + 1)
		if r.Seq != want {
			out = append(out, Problem{r.Seq, fmt.Sprintf("sequence gap: expected entry %d", want)})
		}
		if !bytes.Equal(r.PrevHash, prev) {
			out = append(out, Problem{r.Seq, "prev_hash does not match the previous entry's hash"})
		}
		if h := Hash(r.PrevHash, r.Body); !bytes.Equal(h, r.Hash) {
			out = append(out, Problem{r.Seq, fmt.Sprintf("hash mismatch: stored %s, recomputed %s", hex.EncodeToString(r.Hash), hex.EncodeToString(h))})
		}
		var e Entry
		if err := json.Unmarshal(r.Body, &e); err != nil {
			out = append(out, Problem{r.Seq, "body is not a ledger entry: " + err.Error()})
		} else {
			if e.Doc != doc || e.Seq != r.Seq {
				out = append(out, Problem{r.Seq, "body names another document or position"})
			}
			if !bytes.Equal(e.Canonical(), r.Body) {
				out = append(out, Problem{r.Seq, "body is not in canonical form"})
			}
		}
		prev = r.Hash
	}
	return out
}

// SHA256Hex is the hex sha256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
