package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// atLocalFirst puts tenant's cohort at LocalFirst (Yjs-authoritative).
func atLocalFirst(t *testing.T, f *fixture, tenant string) {
	t.Helper()
	ctx := context.Background()
	key := dataplane.CohortKey{Rollout: "default/demo", Cohort: "pilot"}
	cs, err := f.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{tenant}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: dataplane.StageLocalFirst,
		Attempt: 1, Reason: "Test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestEmptyIfMatchIsRefused: docs/api.md (PUT, If-Match): only a missing
// header or `*` is unconditional, and a value that is not a positive
// integer gives 400 invalid_request. An empty value (a client whose
// revision variable is unset: `-H "If-Match: $REV"`) was taken for no
// header: at LocalFirst the student's save replaced the teacher's edit
// made since her base instead of being merged with it, answered "saved".
// It is refused now, and the document keeps the teacher's edit.
func TestEmptyIfMatchIsRefused(t *testing.T) {
	f := setup(t)
	atLocalFirst(t, f, "school-a")
	stu := token(t, "school-a", "stu", time.Hour, false)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(stu, "essay", "The cat sat on the mat.")
	if r := f.do("PUT", "/v1/documents/essay", teacher, map[string]any{"content": "The cat sat on the mat. Good start!"}, "If-Match", `"1"`); r.status != 200 {
		t.Fatalf("teacher's save: %d %s", r.status, r.raw)
	}
	// The student's editor, based on revision 1, sends an empty If-Match.
	r := f.do("PUT", "/v1/documents/essay", stu, map[string]any{"content": "The black cat sat on the mat."}, "If-Match", "")
	rd := f.do("GET", "/v1/documents/essay", stu, nil)
	if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
		t.Errorf("save with an empty If-Match: %d outcome=%v, want 400 invalid_request", r.status, r.body["outcome"])
	}
	if rd.body["content"] != "The cat sat on the mat. Good start!" {
		t.Errorf("after a save with an empty If-Match the document reads %q, want the teacher's edit kept", rd.body["content"])
	}
	// A plus sign is no revision number either.
	if r := f.do("PUT", "/v1/documents/essay", stu, map[string]any{"content": "x"}, "If-Match", `"+2"`); r.status != http.StatusBadRequest {
		t.Errorf(`If-Match "+2": %d, want 400`, r.status)
	}
}

// TestEmptyIdempotencyKeyIsRefused: an Idempotency-Key header sent empty
// (an unset variable in a client's script) was taken for no key, so every
// retry of a create made another document. It is refused now (400
// invalid_request), and nothing is created.
func TestEmptyIdempotencyKeyIsRefused(t *testing.T) {
	f := setup(t)
	stu := token(t, "school-a", "stu", time.Hour, false)
	var docs []string
	for range 2 {
		r := f.do("POST", "/v1/documents", stu, map[string]any{"content": "my essay"}, "Idempotency-Key", "")
		if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" || !strings.Contains(fmt.Sprint(r.body["message"]), "Idempotency-Key is empty") {
			docs = append(docs, fmt.Sprint(r.status, " ", r.body["doc"]))
		}
	}
	l := f.do("GET", "/v1/documents", stu, nil)
	if n := strings.Count(l.raw, `"id"`); n != 0 || len(docs) > 0 {
		t.Errorf("a create sent twice with an empty Idempotency-Key: answers %v, %d documents; want 400 invalid_request and none", docs, n)
	}
}

// TestEmptyIDIsInvalid: docs/api.md: a create's `id` is optional, and
// when given is 1-128 of [A-Za-z0-9._-]. `"id": ""` was taken for no id:
// a random document was created (and, retried, another). Now 400
// invalid_id.
func TestEmptyIDIsInvalid(t *testing.T) {
	f := setup(t)
	stu := token(t, "school-a", "stu", time.Hour, false)
	r := f.do("POST", "/v1/documents", stu, map[string]any{"id": "", "content": "my essay"})
	if r.status != http.StatusBadRequest || r.body["code"] != "invalid_id" {
		t.Errorf(`create with "id": "": %d %v, want 400 invalid_id`, r.status, r.body["doc"])
	}
}

// TestKeyedCreateRefusalIsRecorded: docs/api.md "Recorded refusals":
// refused creates are recorded when their body "names a valid id or, for
// an authenticated client, carries a valid Idempotency-Key
// (authentication failures included)" (I6). A create without an id but
// with a key, refused for its shape (a misspelled field) or for an
// expired token, left nothing on the document the key names: once the
// retry created it, its evidence showed the create only. The refusal is
// on that document's record now.
func TestKeyedCreateRefusalIsRecorded(t *testing.T) {
	f := setup(t)
	stu := token(t, "school-a", "stu", time.Hour, false)
	expired := token(t, "school-a", "stu", -time.Minute, false)
	for _, c := range []struct {
		name, tok, body string
		status          int
	}{
		{"misspelled field", stu, `{"content":"my essay","titel":"Essay"}`, http.StatusBadRequest},
		{"expired token", expired, `{"content":"my essay"}`, http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "retry-" + strings.ReplaceAll(c.name, " ", "-")
			if r := f.do("POST", "/v1/documents", c.tok, c.body, "Idempotency-Key", key); r.status != c.status {
				t.Fatalf("refused create: %d %s", r.status, r.raw)
			}
			// The retry, fixed, reaches the document the key names.
			r := f.do("POST", "/v1/documents", stu, `{"content":"my essay"}`, "Idempotency-Key", key)
			if r.status != http.StatusCreated {
				t.Fatalf("retried create: %d %s", r.status, r.raw)
			}
			doc := fmt.Sprint(r.body["doc"])
			ev := f.do("GET", "/v1/documents/"+doc+"/evidence", stu, nil)
			tl, _ := ev.body["timeline"].([]any)
			if len(tl) < 2 {
				t.Errorf("evidence of %s after a create refused (%s) and its retry: %d timeline entries, want the refusal too: %.400s", doc, c.name, len(tl), ev.raw)
			}
		})
	}
}

// TestStaleSaveMergeDoesNotDependOnAnUnrelatedEdit: docs/api.md (PUT,
// Yjs-authoritative stale save): "Edits to different places are both
// kept". A teacher appends a comment; the student, on the old base, fixes
// the last word: merged (the control, which passed before). With a heading
// the teacher also added at the top, far from the fix, the same save was
// conflict-preserved and her fix was not in the document: the word diff
// aligned the base's final "." with the teacher's last one, so the
// appended sentence sat between "ten" and ".", beside "ten" -> "TEN".
// merge.Three now tries the edits slid across equal tokens too.
func TestStaleSaveMergeDoesNotDependOnAnUnrelatedEdit(t *testing.T) {
	f := setup(t)
	atLocalFirst(t, f, "school-a")
	stu := token(t, "school-a", "stu", time.Hour, false)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	const base = "One two three four five six seven eight nine ten."
	const fix = "One two three four five six seven eight nine TEN."
	for _, c := range []struct{ doc, teacher, want string }{
		{"control", base + " Well done.", "One two three four five six seven eight nine TEN. Well done."},
		{"heading", "Counting. " + base + " Well done.", "Counting. One two three four five six seven eight nine TEN. Well done."},
	} {
		f.create(stu, c.doc, base)
		if r := f.do("PUT", "/v1/documents/"+c.doc, teacher, map[string]any{"content": c.teacher}, "If-Match", `"1"`); r.status != 200 {
			t.Fatalf("teacher's save: %d %s", r.status, r.raw)
		}
		r := f.do("PUT", "/v1/documents/"+c.doc, stu, map[string]any{"content": fix}, "If-Match", `"1"`)
		if r.status != 200 || r.body["outcome"] != "merged" || r.body["content"] != c.want {
			t.Errorf("%s: student's stale fix of the last word: %d outcome=%v content=%q, want merged %q", c.doc, r.status, r.body["outcome"], r.body["content"], c.want)
		}
	}
}
