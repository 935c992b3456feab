package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/store"
)

// docsInOtherLanes returns two document IDs the engine's two group-commit
// lanes (the default) take in different lanes.
func docsInOtherLanes(prefix string) (string, string) {
	a := prefix + "-a"
	for i := 0; ; i++ {
		if b := fmt.Sprintf("%s-b%d", prefix, i); store.LaneIndex(b, 2) != store.LaneIndex(a, 2) {
			return a, b
		}
	}
}

// TestABatchAnswersEachRequestAsItCommits: a batch was answered in one
// JSON answer, once its last request was done. A save waiting for a
// document row held by another transaction (up to the lanes' 5 s
// lock_timeout) held back the answers of the saves beside it in the
// batch, committed in the other lane long before: students whose work was
// safe waited, and a gateway giving up on them reported their saves in
// doubt. Each request is now answered as soon as it commits.
func TestABatchAnswersEachRequestAsItCommits(t *testing.T) {
	rig := newBatchRig(t, false)
	ctx := t.Context()
	locked, free := docsInOtherLanes("essay")
	for _, doc := range []string{locked, free} {
		if _, err := rig.direct.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: doc, Tenant: "t", User: "u", Content: "draft"}); err != nil {
			t.Fatal(err)
		}
	}
	// The legacy application holds the row of one document.
	conn, err := pgx.Connect(ctx, rig.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE`, locked); err != nil {
		t.Fatal(err)
	}

	finish := rig.hold(t, "held")
	answers := map[string]chan applied{locked: make(chan applied, 1), free: make(chan applied, 1)}
	for doc, ch := range answers {
		go func() {
			res, err := rig.batching.Apply(context.Background(), store.Request{Kind: store.KindSave, Doc: doc, Tenant: "t", User: "u", Content: "final " + doc})
			ch <- applied{res, err}
		}()
	}
	rig.waitQueued(t, 2)
	finish() // the two go together in the next call
	select {
	case a := <-answers[free]:
		if a.err != nil || a.res.Revision != 2 {
			t.Fatalf("the save of %s: revision %d, %v; want revision 2", free, a.res.Revision, a.err)
		}
	case a := <-answers[locked]:
		t.Fatalf("the save waiting for its row was answered first (%v, %v)", a.res, a.err)
	case <-time.After(20 * time.Second):
		t.Fatal("no answer")
	}
	select {
	case a := <-answers[locked]:
		t.Fatalf("the save of %s was answered while its row was still held (%+v, %v): the free save's answer waited for it", locked, a.res, a.err)
	default:
	}
	if got := rig.batches.Load(); got != 1 {
		t.Fatalf("%d calls to the batch endpoint, want 1", got)
	}
	// The row is let go: the waiting save commits, and is answered.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if a := <-answers[locked]; a.err != nil || a.res.Revision != 2 {
		t.Fatalf("the save of %s: revision %d, %v; want revision 2", locked, a.res.Revision, a.err)
	}
}

// TestACutStreamLeavesTheUnansweredInDoubt: a streamed answer that ends
// before answering every request (the syncer stopped mid-answer) gives the
// answered ones their answers and the others "unavailable": they may
// have been applied, and their clients retry. A line that does not read,
// or answers a request twice, ends the reading the same way.
func TestACutStreamLeavesTheUnansweredInDoubt(t *testing.T) {
	for name, stream := range map[string]string{
		"cut":     `{"index":1,"result":{"doc":"b","revision":3}}` + "\n",
		"garbage": `{"index":1,"result":{"doc":"b","revision":3}}` + "\n" + `{"index":`,
		"twice":   `{"index":1,"result":{"doc":"b","revision":3}}` + "\n" + `{"index":1,"result":{"doc":"b","revision":4}}` + "\n",
		"outside": `{"index":1,"result":{"doc":"b","revision":3}}` + "\n" + `{"index":7,"error":{"status":404,"code":"not_found","message":"x"}}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			q := &applyQueue{b: &Batches{}, max: 1}
			batch := []*pendingApply{{done: make(chan struct{})}, {done: make(chan struct{})}, {done: make(chan struct{})}}
			q.readStream(&Client{BaseURL: "http://syncer"}, strings.NewReader(stream), batch)
			for i, p := range batch {
				select {
				case <-p.done:
				default:
					t.Fatalf("request %d never answered", i)
				}
			}
			if batch[1].err != nil || batch[1].res.Revision != 3 {
				t.Errorf("the answered request: %+v, %v", batch[1].res, batch[1].err)
			}
			for _, i := range []int{0, 2} {
				if e := store.AsError(batch[i].err); e.Code != store.CodeUnavailable || !strings.Contains(e.Message, "may have been applied") {
					t.Errorf("request %d: %v; want unavailable, may have been applied", i, batch[i].err)
				}
			}
		})
	}
}

// TestASyncerAnsweringInOneJSONStillAnswersEach: a syncer of the previous
// version answers a batch in one JSON answer whatever the gateway
// accepts, as during a rolling upgrade; each request still gets its own
// answer.
func TestASyncerAnsweringInOneJSONStillAnswersEach(t *testing.T) {
	rig := newBatchRig(t, false)
	rig.noStream.Store(true)
	finish := rig.hold(t, "held")
	answers := make(chan applied, 3)
	for i := range 3 {
		go func() {
			res, err := rig.batching.Apply(context.Background(), store.Request{Kind: store.KindCreate, Doc: fmt.Sprint("essay-", i), Tenant: "t", User: "u", Content: "hello"})
			answers <- applied{res, err}
		}()
	}
	rig.waitQueued(t, 3)
	finish()
	seen := map[string]bool{}
	for range 3 {
		a := <-answers
		if a.err != nil || a.res.Outcome != store.OutcomeCreated {
			t.Fatalf("%+v, %v", a.res, a.err)
		}
		seen[a.res.Doc] = true
	}
	if len(seen) != 3 || rig.batches.Load() != 1 {
		t.Fatalf("answers for %v in %d batch calls; want 3 documents in 1", seen, rig.batches.Load())
	}
}

// TestAStreamedBatchRefusesOnlyItsUndecodableRequest: streamed, a request
// that does not decode is refused alone, as in a JSON answer, and every
// request is answered once.
func TestAStreamedBatchRefusesOnlyItsUndecodableRequest(t *testing.T) {
	rig := newBatchRig(t, false)
	create := func(doc string) string {
		return fmt.Sprintf(`{"kind":"create","doc":%q,"tenant":"t","user":"u","content":"hello"}`, doc)
	}
	body := `{"requests":[` + create("a") + `,{"kind":"create","doc":"b","tenant":"t","user":"u","colour":"red"},` + create("c") + `]}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, rig.srv.URL+PathApplyBatch, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Accept", "application/json;q=0.5, "+BatchStreamType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != BatchStreamType {
		t.Fatalf("%s, %s", resp.Status, ct)
	}
	dec := json.NewDecoder(resp.Body)
	got := map[int]BatchResult{}
	for {
		var line BatchLine
		if err := dec.Decode(&line); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if _, dup := got[line.Index]; dup {
			t.Fatalf("request %d answered twice", line.Index)
		}
		got[line.Index] = line.BatchResult
	}
	if r := got[1]; len(got) != 3 || r.Error == nil || r.Error.Code != store.CodeInvalidRequest || r.Result != nil {
		t.Fatalf("answers %+v; want 3, the second refused as invalid_request", got)
	}
	for _, i := range []int{0, 2} {
		if r := got[i]; r.Error != nil || r.Result == nil || r.Result.Outcome != store.OutcomeCreated {
			t.Fatalf("request %d: %+v %+v", i, r.Result, r.Error)
		}
	}
}
