// Package yprotocol encodes and decodes the messages of the Yjs sync
// protocol (y-protocols) exactly as y-websocket frames them: one message
// per WebSocket binary message, a lib0 varuint message type first.
//
//	messageSync (0)           varuint syncType, varUint8Array payload
//	  syncStep1 (0)             payload: the sender's encoded state vector
//	  syncStep2 (1)             payload: a v1 update (what the receiver lacks)
//	  update    (2)             payload: a v1 update
//	messageAwareness (1)      varUint8Array awareness update:
//	                            varuint n, n × (varuint clientID, varuint clock, varString JSON state)
//	messageAuth (2)           varuint authType (0 = permission denied), varString reason
//	messageQueryAwareness (3) no payload
//
// The decoder is strict where lib0 is lenient: integers above 2^53-1 (which
// JavaScript cannot represent), truncated or trailing bytes, invalid UTF-8
// and invalid JSON in awareness states are all rejected. Every rejection is
// a *DecodeError wrapping one of the sentinel errors below; Decode never
// panics and never allocates more than a small multiple of its input.
//
// The package does no I/O and does not interpret Yjs updates or state
// vectors: payloads are returned as sub-slices of the input.
package yprotocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MessageType is the first varuint of every message.
type MessageType uint64

// Message types of y-websocket.
const (
	MessageSync           MessageType = 0
	MessageAwareness      MessageType = 1
	MessageAuth           MessageType = 2
	MessageQueryAwareness MessageType = 3
	// MessageYawp is this project's own message type, sent by the server
	// only to clients that asked for it (see package syncws): stock
	// y-websocket providers log an error for unknown message types and
	// otherwise ignore them, so it is never sent to them unasked.
	MessageYawp MessageType = 100
)

func (t MessageType) String() string {
	switch t {
	case MessageSync:
		return "sync"
	case MessageAwareness:
		return "awareness"
	case MessageAuth:
		return "auth"
	case MessageQueryAwareness:
		return "query-awareness"
	case MessageYawp:
		return "yawp"
	}
	return fmt.Sprintf("unknown(%d)", uint64(t))
}

// SyncType is the second varuint of a sync message.
type SyncType uint64

// Sync message types of y-protocols/sync.
const (
	SyncStep1  SyncType = 0
	SyncStep2  SyncType = 1
	SyncUpdate SyncType = 2
)

func (t SyncType) String() string {
	switch t {
	case SyncStep1:
		return "step1"
	case SyncStep2:
		return "step2"
	case SyncUpdate:
		return "update"
	}
	return fmt.Sprintf("unknown(%d)", uint64(t))
}

// AuthPermissionDenied is the only auth message type y-protocols defines.
const AuthPermissionDenied = 0

// MaxSafeInteger is the largest integer a JavaScript peer decodes exactly.
const MaxSafeInteger = 1<<53 - 1

// Sentinel errors wrapped by *DecodeError.
var (
	// ErrMalformed: the bytes are not a well-formed message.
	ErrMalformed = errors.New("yprotocol: malformed message")
	// ErrTruncated: the message ends inside a field (also ErrMalformed).
	ErrTruncated = fmt.Errorf("%w: truncated", ErrMalformed)
	// ErrUnknownType: a message or sync type this protocol does not
	// define (also ErrMalformed).
	ErrUnknownType = fmt.Errorf("%w: unknown message type", ErrMalformed)
)

// DecodeError describes why and where decoding failed.
type DecodeError struct {
	Offset int    // byte offset in the message
	Field  string // what was being read
	Err    error  // one of the sentinel errors
	Detail string
}

func (e *DecodeError) Error() string {
	s := fmt.Sprintf("%v: %s at byte %d", e.Err, e.Field, e.Offset)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *DecodeError) Unwrap() error { return e.Err }

// AwarenessEntry is one client's entry in an awareness update. State is
// the JSON text as sent; "null" means the client went away.
type AwarenessEntry struct {
	ClientID uint64
	Clock    uint64
	State    []byte
}

// Removed reports whether the entry removes the client's state.
func (e AwarenessEntry) Removed() bool { return string(e.State) == "null" }

// Message is one decoded message. Payload and State slices alias the
// input.
type Message struct {
	Type MessageType
	// Sync is the sync type of a MessageSync.
	Sync SyncType
	// Payload is the state vector (SyncStep1), the update (SyncStep2,
	// SyncUpdate), the raw awareness update (MessageAwareness, to be
	// relayed as is) or the raw payload of a MessageYawp.
	Payload []byte
	// Awareness are the parsed entries of a MessageAwareness.
	Awareness []AwarenessEntry
	// Reason is a permission-denied reason of a MessageAuth.
	Reason string
}

// reader reads lib0 encodings with bounds checks.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) fail(field string, err error, detail string) {
	if r.err == nil {
		r.err = &DecodeError{Offset: r.pos, Field: field, Err: err, Detail: detail}
	}
}

// varUint reads a lib0 varuint of at most 8 bytes and at most MaxSafeInteger.
func (r *reader) varUint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	var n uint64
	var shift uint
	start := r.pos
	for i := 0; ; i++ {
		if r.pos >= len(r.b) {
			r.pos = start
			r.fail(field, ErrTruncated, "")
			return 0
		}
		c := r.b[r.pos]
		r.pos++
		if i == 7 && c >= 0x80 || shift >= 64 {
			r.pos = start
			r.fail(field, ErrMalformed, "varuint longer than 8 bytes")
			return 0
		}
		n |= uint64(c&0x7f) << shift
		shift += 7
		if n > MaxSafeInteger {
			r.pos = start
			r.fail(field, ErrMalformed, "integer above 2^53-1")
			return 0
		}
		if c < 0x80 {
			return n
		}
	}
}

func (r *reader) bytes(field string) []byte {
	n := r.varUint(field + " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.pos) {
		r.fail(field, ErrTruncated, fmt.Sprintf("length %d, %d bytes left", n, len(r.b)-r.pos))
		return nil
	}
	out := r.b[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	return out
}

func (r *reader) str(field string) string {
	start := r.pos
	b := r.bytes(field)
	if r.err == nil && !utf8.Valid(b) {
		r.pos = start
		r.fail(field, ErrMalformed, "invalid UTF-8")
	}
	return string(b)
}

func (r *reader) end() {
	if r.err == nil && r.pos != len(r.b) {
		r.fail("end of message", ErrMalformed, fmt.Sprintf("%d trailing bytes", len(r.b)-r.pos))
	}
}

// Decode decodes one message. Unknown message types are rejected with
// ErrUnknownType; so is MessageYawp, which only the server sends (use
// DecodeClient to accept it).
func Decode(b []byte) (Message, error) { return decode(b, false) }

// DecodeClient is Decode for the client side: it also accepts MessageYawp.
func DecodeClient(b []byte) (Message, error) { return decode(b, true) }

func decode(b []byte, yawp bool) (Message, error) {
	r := &reader{b: b}
	var m Message
	m.Type = MessageType(r.varUint("message type"))
	if r.err != nil {
		return Message{}, r.err
	}
	switch m.Type {
	case MessageSync:
		m.Sync = SyncType(r.varUint("sync type"))
		if r.err == nil && m.Sync > SyncUpdate {
			r.pos = 1
			r.fail("sync type", ErrUnknownType, m.Sync.String())
		}
		m.Payload = r.bytes("sync payload")
	case MessageAwareness:
		m.Payload = r.bytes("awareness update")
		if r.err == nil {
			off := r.pos - len(m.Payload)
			entries, err := ParseAwareness(m.Payload)
			if err != nil {
				var de *DecodeError
				if errors.As(err, &de) {
					de.Offset += off
				}
				return Message{}, err
			}
			m.Awareness = entries
		}
	case MessageAuth:
		t := r.varUint("auth type")
		if r.err == nil && t != AuthPermissionDenied {
			r.pos = 1
			r.fail("auth type", ErrUnknownType, fmt.Sprint(t))
		}
		m.Reason = r.str("permission denied reason")
	case MessageQueryAwareness:
	case MessageYawp:
		if !yawp {
			r.pos = 0
			r.fail("message type", ErrUnknownType, m.Type.String()+" is sent by the server only")
		}
		m.Payload = r.bytes("yawp payload")
	default:
		r.pos = 0
		r.fail("message type", ErrUnknownType, m.Type.String())
	}
	r.end()
	if r.err != nil {
		return Message{}, r.err
	}
	return m, nil
}

// ParseAwareness parses an awareness update (the payload of a
// MessageAwareness). Each state must be valid JSON, as y-protocols
// JSON.parses it.
func ParseAwareness(b []byte) ([]AwarenessEntry, error) {
	r := &reader{b: b}
	n := r.varUint("awareness count")
	if r.err != nil {
		return nil, r.err
	}
	// Every entry takes at least 3 bytes: bound the allocation by the input.
	if n > uint64(len(b)-r.pos)/3 {
		r.fail("awareness count", ErrTruncated, fmt.Sprintf("%d entries in %d bytes", n, len(b)-r.pos))
		return nil, r.err
	}
	// Grown as entries are read: the count alone is no proof of them.
	out := make([]AwarenessEntry, 0, min(n, 16))
	for i := uint64(0); i < n && r.err == nil; i++ {
		var e AwarenessEntry
		e.ClientID = r.varUint("awareness client id")
		e.Clock = r.varUint("awareness clock")
		start := r.pos
		e.State = r.bytes("awareness state")
		if r.err == nil && (!utf8.Valid(e.State) || !json.Valid(e.State)) {
			r.pos = start
			r.fail("awareness state", ErrMalformed, "not valid JSON")
		}
		out = append(out, e)
	}
	r.end()
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// AppendVarUint appends n in lib0's varuint encoding.
func AppendVarUint(dst []byte, n uint64) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// AppendVarBytes appends b prefixed with its varuint length.
func AppendVarBytes(dst, b []byte) []byte {
	return append(AppendVarUint(dst, uint64(len(b))), b...)
}

// ReadVarUint reads one varuint from the start of b and returns it with
// the number of bytes read.
func ReadVarUint(b []byte) (uint64, int, error) {
	r := &reader{b: b}
	n := r.varUint("varuint")
	return n, r.pos, r.err
}

func syncMsg(t SyncType, payload []byte) []byte {
	out := make([]byte, 0, len(payload)+12)
	out = AppendVarUint(out, uint64(MessageSync))
	out = AppendVarUint(out, uint64(t))
	return AppendVarBytes(out, payload)
}

// EncodeSyncStep1 frames a state vector as sync step 1.
func EncodeSyncStep1(stateVector []byte) []byte { return syncMsg(SyncStep1, stateVector) }

// EncodeSyncStep2 frames an update as sync step 2.
func EncodeSyncStep2(update []byte) []byte { return syncMsg(SyncStep2, update) }

// EncodeUpdate frames an update as a sync update message.
func EncodeUpdate(update []byte) []byte { return syncMsg(SyncUpdate, update) }

// EncodeAwareness frames a raw awareness update.
func EncodeAwareness(update []byte) []byte {
	return AppendVarBytes(AppendVarUint(make([]byte, 0, len(update)+6), uint64(MessageAwareness)), update)
}

// EncodeAwarenessUpdate encodes entries as an awareness update (the
// payload of EncodeAwareness).
func EncodeAwarenessUpdate(entries []AwarenessEntry) []byte {
	out := AppendVarUint(nil, uint64(len(entries)))
	for _, e := range entries {
		out = AppendVarUint(out, e.ClientID)
		out = AppendVarUint(out, e.Clock)
		out = AppendVarBytes(out, e.State)
	}
	return out
}

// EncodeQueryAwareness returns a query-awareness message.
func EncodeQueryAwareness() []byte { return []byte{byte(MessageQueryAwareness)} }

// EncodePermissionDenied returns an auth permission-denied message.
func EncodePermissionDenied(reason string) []byte {
	out := AppendVarUint(nil, uint64(MessageAuth))
	out = AppendVarUint(out, AuthPermissionDenied)
	return AppendVarBytes(out, []byte(reason))
}

// EncodeYawp frames this project's own server message.
func EncodeYawp(payload []byte) []byte {
	return AppendVarBytes(AppendVarUint(nil, uint64(MessageYawp)), payload)
}

// Encode re-encodes a decoded message.
func Encode(m Message) []byte {
	switch m.Type {
	case MessageSync:
		return syncMsg(m.Sync, m.Payload)
	case MessageAwareness:
		return EncodeAwareness(m.Payload)
	case MessageAuth:
		return EncodePermissionDenied(m.Reason)
	case MessageQueryAwareness:
		return EncodeQueryAwareness()
	case MessageYawp:
		return EncodeYawp(m.Payload)
	}
	return nil
}
