package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestRefusedSyncConnectionsCannotWriteLedgersWithoutBound: a refused sync
// connection (here another school's token on a document: 4403) is recorded
// in the document's ledger, and connections are not rate-limited: one
// token wrote a row per connection into another school's append-only
// ledger, about 1,500 a second, where the REST API limits the same
// refusal to its user's budget (TestOneTokenCannotWriteLedgersWithoutBound).
// Now the refusals count against that budget too; past it they are
// recorded a few per document, then counted.
func TestRefusedSyncConnectionsCannotWriteLedgersWithoutBound(t *testing.T) {
	at := time.Now() // stands still: no budget comes back during the run
	f := setupSyncClock(t, nil, func() time.Time { return at })
	doc := docOnShard("victim", 1)
	f.create(token(t, "school-a", "ada", time.Hour, false), doc, "school a only")
	mallory := token(t, "school-b", "mallory", time.Hour, false)
	// A bound on the whole run, not a speed: about 1,100 connections took
	// 34 s on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	refuse := func(n int) {
		for i := range n {
			ws, _, err := websocket.Dial(ctx, f.wsBase(1)+"/"+doc+"?token="+mallory, nil)
			if err != nil {
				t.Fatal(err)
			}
			for err == nil {
				_, _, err = ws.Read(ctx)
			}
			_ = ws.CloseNow()
			if code := websocket.CloseStatus(err); int(code) != contract.CloseForbidden {
				t.Fatalf("connection %d: %v, want close %d", i, err, contract.CloseForbidden)
			}
		}
	}
	const conns = userBurst + 100
	refuse(conns)
	rows, err := store.LedgerRows(t.Context(), f.pool, doc)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range rows {
		if strings.Contains(string(r.Body), `"code":"websocket_4403"`) {
			refused++
		}
	}
	if refused < userBurst || refused > userBurst+10 {
		t.Fatalf("%d refused connections left %d ledger rows, want the user's burst (%d) and a few more", conns, refused, userBurst)
	}
	// The next record counts those left out: the document's record budget
	// has one more 10 s on, once the user's (full again) is spent.
	at = at.Add(10 * time.Second)
	refuse(userBurst + 1)
	if rows, err = store.LedgerRows(t.Context(), f.pool, doc); err != nil {
		t.Fatal(err)
	}
	if last := string(rows[len(rows)-1].Body); !strings.Contains(last, "more sync refusals of this document were not recorded") {
		t.Fatalf("the refusals left out are not counted by the next record: %s", last)
	}
}

// TestOversizedStateVectorRefusalIsRecorded: a sync step 1 whose state
// vector is over the 1 MiB limit is closed with 4413, and the refusal is
// in the document's ledger like every other (docs/api.md: "every client
// state vector seen is recorded"). The syncer refused it with its request
// check, which records nothing, and the gateway, taking the refusal for
// one the syncer had recorded, did not record it either.
func TestOversizedStateVectorRefusalIsRecorded(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("big-sv", 0)
	tok := token(t, "school-a", "ada", time.Hour, false)
	f.create(tok, doc, "hello")
	sv := yjs.StateVector{}
	// Client IDs of 3 varuint bytes at clock 0 (one byte): none is
	// missing, only the size is over.
	for c := uint64(16384); len(sv) < contract.MaxStateVectorBytes/4+10; c++ {
		sv[c] = 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.wsBase(1)+"/"+doc+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeSyncStep1(yjs.EncodeStateVector(sv))); err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, _, err = ws.Read(ctx)
	}
	if code := websocket.CloseStatus(err); int(code) != contract.CloseTooLarge {
		t.Fatalf("%v, want close %d", err, contract.CloseTooLarge)
	}
	eventually(t, "the refusal in the ledger", func() bool {
		rows, err := store.LedgerRows(t.Context(), f.pool, doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if strings.Contains(string(r.Body), `"code":"websocket_4413"`) {
				return true
			}
		}
		return false
	})
}
