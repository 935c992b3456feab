package ledger

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// appendCanonical appends e as encoding/json would marshal it (field
// order, omitempty, escaping, RFC 3339 time), without reflection: sealing
// entries was about 8% of the syncer's CPU under load. Anything the fast
// paths do not handle exactly (a string needing escapes, a year outside
// 0-9999) goes through encoding/json itself, so the bytes are the same by
// construction; FuzzCanonical compares the two.
func appendCanonical(b []byte, e *Entry) []byte {
	b = append(b, `{"doc":`...)
	b = appendString(b, e.Doc)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, e.Kind)
	b = append(b, `,"at":`...)
	b = appendTime(b, e.At)
	b = append(b, `,"tenant":`...)
	b = appendString(b, e.Tenant)
	b = optString(b, `,"user":`, e.User)
	b = optString(b, `,"stage":`, e.Stage)
	b = optString(b, `,"cohort":`, e.Cohort)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendInt(b, e.Epoch, 10)
	b = append(b, `,"shard":`...)
	b = strconv.AppendInt(b, int64(e.Shard), 10)
	b = append(b, `,"shard_epoch":`...)
	b = strconv.AppendInt(b, e.ShardEpoch, 10)
	b = optString(b, `,"protocol":`, e.Protocol)
	b = optString(b, `,"request_id":`, e.RequestID)
	b = optString(b, `,"idempotency_key":`, e.IdempotencyKey)
	if len(e.Clients) > 0 {
		b = append(b, `,"clients":[`...)
		for i, c := range e.Clients {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, c, 10)
		}
		b = append(b, ']')
	}
	b = optInt(b, `,"base_revision":`, e.BaseRevision)
	b = optInt(b, `,"revision":`, e.Revision)
	b = optInt(b, `,"superseded_revision":`, e.SupersededRevision)
	b = optInt(b, `,"preserved_id":`, e.PreservedID)
	b = optString(b, `,"content_sha256":`, e.ContentSHA256)
	b = optString(b, `,"legacy_sha256":`, e.LegacySHA256)
	b = optString(b, `,"yjs_sha256":`, e.YjsSHA256)
	b = optString(b, `,"update_sha256":`, e.UpdateSHA256)
	b = optInt(b, `,"yjs_seq":`, e.YjsSeq)
	if len(e.StateVector) > 0 {
		b = append(b, `,"state_vector":{`...)
		for i, k := range sortedKeys(e.StateVector) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = strconv.AppendUint(b, e.StateVector[k], 10)
		}
		b = append(b, '}')
	}
	b = optRanges(b, `,"missing":`, e.Missing)
	b = optRanges(b, `,"preserved_ops":`, e.PreservedOps)
	b = optString(b, `,"outcome":`, e.Outcome)
	b = optString(b, `,"code":`, e.Code)
	b = optString(b, `,"reason":`, e.Reason)
	return append(b, '}')
}

func optString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

func optInt(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), n, 10)
}

func optRanges(b []byte, key string, m map[string][2]uint64) []byte {
	if len(m) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ":["...)
		b = strconv.AppendUint(b, m[k][0], 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, m[k][1], 10)
		b = append(b, ']')
	}
	return append(b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // encoding/json sorts map keys by their bytes
	return keys
}

// appendString quotes s. Printable ASCII other than the five characters
// encoding/json escapes (" \ < > &) is copied as is; any other string is
// left to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, trailing zeros trimmed); years it refuses go through it.
func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		q, err := json.Marshal(t)
		if err != nil {
			panic(err) // as Canonical always did: entries carry real times
		}
		return append(b, q...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
