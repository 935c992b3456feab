package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
)

// flipClient is one stock y-websocket client (test/yjs/flip-client.mjs)
// driven step by step, so the test can change the cohort's stage between
// its steps.
type flipClient struct {
	t *testing.T
	p *nodejs.Process
}

type flipAnswer struct {
	OK    bool   `json:"ok"`
	Text  string `json:"text"`
	Error string `json:"error"`
}

func startFlipClient(t *testing.T, url, doc, tok string) *flipClient {
	t.Helper()
	cfg, _ := json.Marshal(map[string]string{"url": url, "doc": doc, "token": tok})
	return &flipClient{t: t, p: nodejs.Start(t, "y-websocket", "flip-client.mjs", 1<<22, string(cfg))}
}

func (c *flipClient) do(cmd map[string]any) flipAnswer {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.p.In.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
	if !c.p.Out.Scan() {
		c.t.Fatalf("node client ended: %v", c.p.Out.Err())
	}
	var a flipAnswer
	if err := json.Unmarshal(c.p.Out.Bytes(), &a); err != nil {
		c.t.Fatalf("node client answered %q: %v", c.p.Out.Text(), err)
	}
	if a.Error != "" {
		c.t.Fatalf("node client: %s", a.Error)
	}
	return a
}

// cohortAt freezes a cohort of tenant and moves it to stage.
func (f *syncFixture) cohortAt(name, tenant, stage string) dataplane.CohortState {
	f.t.Helper()
	key := dataplane.CohortKey{Rollout: "default/demo", Cohort: name}
	cs, err := f.dp.FreezeCohort(f.t.Context(), key, 0, dataplane.Selector{Tenants: []string{tenant}}, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return f.flip(cs, stage, "")
}

func (f *syncFixture) flip(cs dataplane.CohortState, stage, outcome string) dataplane.CohortState {
	f.t.Helper()
	cs, err := f.dp.SetStage(f.t.Context(), dataplane.StageChange{Key: dataplane.CohortKey{Rollout: "default/demo", Cohort: cs.Cohort},
		ExpectEpoch: cs.Epoch, Stage: stage, Attempt: 1, Outcome: outcome, Reason: "Test", At: time.Now()})
	if err != nil {
		f.t.Fatal(err)
	}
	return cs
}

// TestRollbackOfflineStudentEditSurvivesTeacherSave: a student edits
// offline under LocalFirst (replaces one word in the middle of the essay
// with a stock y-websocket client); the cohort is rolled back to Legacy;
// a teacher's legacy save, on the current revision, corrects the first
// and the last sentence; the student reconnects. Neither edit touched the
// other's words, so both are in the text: the student's word replaced
// once, in its place, and the teacher's corrections. (The teacher's save
// replaced everything from its first change to its last in the Yjs text,
// so the document read "The colouropening sentence. The color is red.
// The final sentence.") Found by review.
func TestRollbackOfflineStudentEditSurvivesTeacherSave(t *testing.T) {
	f := setupSync(t)
	cs := f.cohortAt("pilot", "school-a", dataplane.StageLocalFirst)
	doc := docOnShard("rollback-essay", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "The first sentence. The color is red. The last sentence.")

	student := startFlipClient(t, f.wsBase(0), doc, token(t, "school-a", "student", time.Hour, false))
	if a := student.do(map[string]any{"op": "connect"}); !a.OK {
		t.Fatalf("student did not sync: %+v", a)
	}
	student.do(map[string]any{"op": "disconnect"})
	if a := student.do(map[string]any{"op": "replace", "find": "color", "with": "colour"}); a.Text != "The first sentence. The colour is red. The last sentence." {
		t.Fatalf("offline edit: %q", a.Text)
	}

	f.flip(cs, dataplane.StageLegacy, dataplane.OutcomeRolledBack)
	d := f.readDoc(0, teacher, doc)
	r := f.do(http.MethodPut, contract.PathDocuments+"/"+doc, teacher,
		map[string]any{"content": "The opening sentence. The color is red. The final sentence."},
		"If-Match", strconv.Quote(strconv.FormatInt(d.Revision, 10)))
	if r.status != http.StatusOK || r.body["outcome"] != "saved" {
		t.Fatalf("teacher's save: %d %s", r.status, r.raw)
	}

	student.do(map[string]any{"op": "connect"})
	want := "The opening sentence. The colour is red. The final sentence."
	var got string
	eventually(t, "the student's edit to reach the server", func() bool {
		got = f.readDoc(0, teacher, doc).Content
		return got != "The opening sentence. The color is red. The final sentence."
	})
	a := student.do(map[string]any{"op": "waitText", "want": got, "timeoutMs": 5000})
	if got != want {
		t.Fatalf("after the student reconnected, the document reads %q (student's client: %q); want %q", got, a.Text, want)
	}
}
