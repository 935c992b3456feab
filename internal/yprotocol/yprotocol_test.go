package yprotocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	aw := EncodeAwarenessUpdate([]AwarenessEntry{
		{ClientID: 42, Clock: 3, State: []byte(`{"user":{"name":"ada"}}`)},
		{ClientID: MaxSafeInteger, Clock: 0, State: []byte(`null`)},
	})
	msgs := [][]byte{
		EncodeSyncStep1([]byte{0}),
		EncodeSyncStep2([]byte{0, 0}),
		EncodeUpdate(bytes.Repeat([]byte{7}, 300)),
		EncodeAwareness(aw),
		EncodeQueryAwareness(),
		EncodePermissionDenied("wrong tenant ✓"),
	}
	for _, b := range msgs {
		m, err := Decode(b)
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		if got := Encode(m); !bytes.Equal(got, b) {
			t.Fatalf("re-encode %x != %x", got, b)
		}
	}
	m, err := Decode(EncodeAwareness(aw))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Awareness) != 2 || m.Awareness[0].ClientID != 42 || m.Awareness[0].Clock != 3 || !m.Awareness[1].Removed() {
		t.Fatalf("awareness %+v", m.Awareness)
	}
	if _, err := Decode(EncodeYawp([]byte("x"))); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("server-only type accepted from client: %v", err)
	}
	if m, err := DecodeClient(EncodeYawp([]byte("x"))); err != nil || string(m.Payload) != "x" {
		t.Fatalf("yawp: %v %+v", err, m)
	}
}

func TestVarUint(t *testing.T) {
	for _, n := range []uint64{0, 1, 127, 128, 300, 1 << 32, MaxSafeInteger} {
		b := AppendVarUint(nil, n)
		got, k, err := ReadVarUint(b)
		if err != nil || got != n || k != len(b) {
			t.Fatalf("%d: %d %d %v", n, got, k, err)
		}
	}
	if _, _, err := ReadVarUint(AppendVarUint(nil, MaxSafeInteger+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("2^53 accepted: %v", err)
	}
	if _, _, err := ReadVarUint([]byte{0x80, 0x80}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
	if _, _, err := ReadVarUint(bytes.Repeat([]byte{0x80}, 20)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	cases := map[string][]byte{
		"empty":             {},
		"unknown type":      {9},
		"unknown sync type": {0, 3, 0},
		"truncated payload": {0, 2, 5, 1, 2},
		"trailing bytes":    append(EncodeUpdate([]byte{0, 0}), 1),
		"query trailing":    {3, 0},
		"awareness count":   {1, 2, 200, 1},
		"awareness json":    EncodeAwareness(EncodeAwarenessUpdate([]AwarenessEntry{{1, 1, []byte("{")}})),
		"awareness utf8":    EncodeAwareness(EncodeAwarenessUpdate([]AwarenessEntry{{1, 1, []byte("\"\xff\"")}})),
		"auth type":         {2, 1, 0},
		"auth utf8":         {2, 0, 1, 0xff},
		"huge length":       {0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range cases {
		_, err := Decode(b)
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want DecodeError wrapping ErrMalformed, got %v", name, err)
		}
	}
}
