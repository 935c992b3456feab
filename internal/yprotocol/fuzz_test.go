package yprotocol

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error is a
// *DecodeError wrapping ErrMalformed, and that accepted messages re-encode
// to a message that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, s := range seedMessages() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dec := range []func([]byte) (Message, error){Decode, DecodeClient} {
			m, err := dec(b)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) || de.Offset < 0 || de.Offset > len(b) {
					t.Fatalf("bad error %#v", err)
				}
				continue
			}
			re := Encode(m)
			m2, err := dec(re)
			if err != nil {
				t.Fatalf("re-encoded message rejected: %v", err)
			}
			if m2.Type != m.Type || m2.Sync != m.Sync || !bytes.Equal(m2.Payload, m.Payload) || m2.Reason != m.Reason || len(m2.Awareness) != len(m.Awareness) {
				t.Fatalf("round trip differs: %+v vs %+v", m, m2)
			}
		}
	})
}

func seedMessages() [][]byte {
	aw := EncodeAwarenessUpdate([]AwarenessEntry{{ClientID: 1, Clock: 2, State: []byte(`{"a":1}`)}, {ClientID: 3, Clock: 4, State: []byte("null")}})
	return [][]byte{
		EncodeSyncStep1([]byte{1, 5, 3}),
		EncodeSyncStep2([]byte{1, 1, 5, 0, 4, 1, 7, 99, 111, 110, 116, 101, 110, 116, 1, 97, 0}),
		EncodeUpdate([]byte{0, 0}),
		EncodeAwareness(aw),
		EncodeQueryAwareness(),
		EncodePermissionDenied("denied"),
		EncodeYawp([]byte(`{"protocol":"local-first"}`)),
		{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		{1, 4, 1, 1, 1, 0},
	}
}
