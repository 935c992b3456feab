package yprotocol

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
)

type nodeResult struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Type      uint64 `json:"type"`
	Sync      uint64 `json:"sync"`
	Payload   string `json:"payload"`
	Reason    string `json:"reason"`
	Awareness []struct {
		Client uint64 `json:"client"`
		Clock  uint64 `json:"clock"`
		State  string `json:"state"`
	} `json:"awareness"`
	AwarenessTrailing int    `json:"awarenessTrailing"`
	Reencoded         string `json:"reencoded"`
	Trailing          int    `json:"trailing"`
}

// TestDifferentialYProtocols decodes valid and mutated messages with this
// package and with lib0/y-protocols in Node: whatever we accept, Node
// decodes to the same fields; whatever Node rejects, we reject. We may
// reject more (trailing bytes, integers above 2^53-1, invalid UTF-8).
func TestDifferentialYProtocols(t *testing.T) {
	inputs := diffInputs()
	p := nodejs.Start(t, "y-protocols", "yprotocol.mjs", 16<<20)
	stdin := p.In
	go func() {
		w := bufio.NewWriter(stdin)
		for _, in := range inputs {
			line, _ := json.Marshal(map[string]string{"b": base64.StdEncoding.EncodeToString(in)})
			_, _ = w.Write(append(line, '\n'))
		}
		_ = w.Flush()
		_ = stdin.Close()
	}()
	sc := p.Out
	var accepted, stricter int
	why := map[string]int{}
	for i := 0; sc.Scan(); i++ {
		var nr nodeResult
		if err := json.Unmarshal(sc.Bytes(), &nr); err != nil {
			t.Fatal(err)
		}
		in := inputs[i]
		m, gerr := Decode(in)
		if gerr != nil {
			if nr.OK {
				stricter++
				var de *DecodeError
				if errors.As(gerr, &de) {
					why[de.Field]++
				}
			}
			continue
		}
		accepted++
		if !nr.OK {
			t.Fatalf("input %x: we accept, y-protocols rejects: %s", in, nr.Error)
		}
		if nr.Trailing != 0 || nr.AwarenessTrailing != 0 {
			t.Fatalf("input %x: we accepted trailing bytes", in)
		}
		if uint64(m.Type) != nr.Type || uint64(m.Sync) != nr.Sync || m.Reason != nr.Reason {
			t.Fatalf("input %x: header differs: %+v vs %+v", in, m, nr)
		}
		if m.Type != MessageQueryAwareness && m.Type != MessageAuth && base64.StdEncoding.EncodeToString(m.Payload) != nr.Payload {
			t.Fatalf("input %x: payload differs", in)
		}
		if got := base64.StdEncoding.EncodeToString(Encode(m)); got != nr.Reencoded {
			t.Fatalf("input %x: Encode gives %s, y-protocols writes %s", in, got, nr.Reencoded)
		}
		if len(m.Awareness) != len(nr.Awareness) {
			t.Fatalf("input %x: awareness count %d vs %d", in, len(m.Awareness), len(nr.Awareness))
		}
		for j, e := range m.Awareness {
			ne := nr.Awareness[j]
			if e.ClientID != ne.Client || e.Clock != ne.Clock || string(e.State) != ne.State {
				t.Fatalf("input %x: awareness entry %d differs: %+v vs %+v", in, j, e, ne)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d inputs: %d accepted by both, %d rejected only by us (stricter): %v", len(inputs), accepted, stricter, why)
	if accepted < len(inputs)/10 {
		t.Fatalf("too few valid inputs (%d)", accepted)
	}
}

func diffInputs() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var base [][]byte
	base = append(base, seedMessages()...)
	for i := 0; i < 50; i++ {
		payload := make([]byte, rng.IntN(300))
		for j := range payload {
			payload[j] = byte(rng.IntN(256))
		}
		switch i % 4 {
		case 0:
			base = append(base, EncodeUpdate(payload), EncodeSyncStep1(payload))
		case 1:
			var es []AwarenessEntry
			for k := 0; k < rng.IntN(4); k++ {
				es = append(es, AwarenessEntry{ClientID: rng.Uint64N(MaxSafeInteger), Clock: uint64(rng.IntN(1000)), State: []byte(`{"user":{"name":"n` + string(rune('a'+k)) + `","color":"#ff0"},"cursor":null}`)})
			}
			base = append(base, EncodeAwareness(EncodeAwarenessUpdate(es)))
		case 2:
			base = append(base, EncodePermissionDenied("no access to doc é"+string(rune('0'+i))))
		case 3:
			base = append(base, EncodeSyncStep2(payload), EncodeQueryAwareness())
		}
	}
	out := append([][]byte(nil), base...)
	for _, b := range base {
		for k := 0; k < 30; k++ {
			m := append([]byte(nil), b...)
			switch rng.IntN(5) {
			case 0:
				if len(m) > 0 {
					m = m[:rng.IntN(len(m))]
				}
			case 1:
				if len(m) > 0 {
					m[rng.IntN(len(m))] ^= byte(1 << rng.IntN(8))
				}
			case 2:
				m = append(m, byte(rng.IntN(256)))
			case 3:
				if len(m) > 1 {
					m[rng.IntN(2)] = byte(rng.IntN(6))
				}
			case 4:
				if len(m) > 2 {
					i := rng.IntN(len(m))
					m = append(m[:i], m[i+1:]...)
				}
			}
			out = append(out, m)
		}
	}
	return out
}
