package ledger

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// reference is the encoding Canonical promises: encoding/json of the
// entry, its time in UTC.
func reference(t testing.TB, e Entry) []byte {
	e.At = e.At.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomEntry(r *rand.Rand) Entry {
	pieces := []string{"", "a", "doc-1", "school 7", "ü", "日本", "😀", "\"", "\\", "<b>", "&amp;", "\n", "\t", "\x00", "\x1f", "\x7f",
		"\u2028", "\u2029", "\xff", "\xe2\x80", "0123456789abcdef"}
	str := func() string {
		var s string
		for range r.IntN(4) {
			s += pieces[r.IntN(len(pieces))]
		}
		return s
	}
	num := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64()
		default:
			return r.Int64N(1 << 40)
		}
	}
	e := Entry{Doc: str(), Seq: num(), Kind: str(), Tenant: str(), User: str(), Stage: str(), Cohort: str(), Epoch: num(),
		Shard: int(num()), ShardEpoch: num(), Protocol: str(), RequestID: str(), IdempotencyKey: str(), BaseRevision: num(),
		Revision: num(), SupersededRevision: num(), PreservedID: num(), ContentSHA256: str(), LegacySHA256: str(), YjsSHA256: str(),
		UpdateSHA256: str(), YjsSeq: num(), Outcome: str(), Code: str(), Reason: str(),
		At: time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).In(time.FixedZone("x", int(r.Int64N(50000))-25000))}
	for range r.IntN(3) {
		e.Clients = append(e.Clients, r.Uint64())
	}
	if r.IntN(2) == 0 {
		e.StateVector = map[string]uint64{}
		for range r.IntN(4) {
			e.StateVector[str()] = r.Uint64()
		}
	}
	for _, m := range []*map[string][2]uint64{&e.Missing, &e.PreservedOps} {
		if r.IntN(2) == 0 {
			*m = map[string][2]uint64{}
			for range r.IntN(4) {
				(*m)[str()] = [2]uint64{r.Uint64(), r.Uint64()}
			}
		}
	}
	return e
}

// TestCanonicalMatchesEncodingJSON: the hand-written encoding is byte for
// byte encoding/json's, which every chain stored so far was hashed over.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 20000 {
		e := randomEntry(r)
		if got, want := e.Canonical(), reference(t, e); !bytes.Equal(got, want) {
			t.Fatalf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// Years encoding/json refuses still panic, as before (entries carry
	// the server's clock).
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a year past 9999 encoded without complaint")
			}
		}()
		_ = Entry{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}.Canonical()
	}()
}

func FuzzCanonical(f *testing.F) {
	f.Add("doc", "tenant", "reason <&> \u2028", int64(1), int64(-5), uint64(3), int64(1700000000), "k\xff")
	f.Fuzz(func(t *testing.T, doc, tenant, reason string, seq, rev int64, client uint64, unix int64, key string) {
		e := Entry{Doc: doc, Tenant: tenant, Reason: reason, Seq: seq, Revision: rev, Clients: []uint64{client},
			At: time.Unix(unix%(1<<35), 0), StateVector: map[string]uint64{key: client, doc: uint64(seq)},
			Missing: map[string][2]uint64{tenant: {client, uint64(rev)}}}
		want, err := json.Marshal(Entry{Doc: e.Doc, Tenant: e.Tenant, Reason: e.Reason, Seq: e.Seq, Revision: e.Revision, Clients: e.Clients,
			At: e.At.UTC(), StateVector: e.StateVector, Missing: e.Missing})
		if err != nil {
			return // a time encoding/json refuses: Canonical panics too
		}
		if got := e.Canonical(); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkCanonical(b *testing.B) {
	e := Entry{Doc: "doc-123", Seq: 42, Kind: KindCommitted, At: time.Now(), Tenant: "school-7", User: "student-9", Stage: "LocalFirst",
		Cohort: "grade-5", Epoch: 3, Shard: 1, ShardEpoch: 2, Protocol: "yjs", Clients: []uint64{12345678}, Revision: 17,
		ContentSHA256: SHA256Hex([]byte("x")), UpdateSHA256: SHA256Hex([]byte("y")), YjsSeq: 99,
		StateVector: map[string]uint64{"12345678": 400, "1": 3}, Outcome: "saved"}
	b.Run("hand-written", func(b *testing.B) {
		for b.Loop() {
			_ = e.Canonical()
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_ = reference(b, e)
		}
	})
}
