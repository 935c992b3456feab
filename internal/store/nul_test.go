package store

import (
	"errors"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestNulInYjsTextIsKept: U+0000 is valid Yjs and valid UTF-8, and a real
// client may paste it, but PostgreSQL's text cannot hold it. The update is
// saved and logged exactly; every text column keeps U+FFFD in its place,
// the representations verify as equal, and the document stays writable
// through snapshots, in every stage that writes Yjs, and after a restart.
func TestNulInYjsTextIsKept(t *testing.T) {
	for _, stage := range []string{dataplane.StageDualWrite, dataplane.StageLocalFirst, dataplane.StageLegacyRetired} {
		t.Run(stage, func(t *testing.T) {
			e := setup(t)
			e.restartWith(Config{SnapshotEvery: 3})
			e.cohort("c", stage, "t")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "hello"})
			before := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd'`)
			for i, text := range []string{"a\x00b", "c", "d", "e", "f"} {
				u := e.clientEdit("t", "d", uint64(10+i), text)
				res, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: u})
				if err != nil || res.Outcome != OutcomeSaved {
					t.Fatalf("update %d (%q): %+v, %v", i, text, res, err)
				}
			}
			if after := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd'`); after < before+5 {
				t.Errorf("5 updates left %d ledger entries", after-before)
			}
			if n := e.count(`SELECT count(*) FROM yjs_snapshots WHERE doc_id = 'd' AND upto_seq >= 3`); n != 1 {
				t.Errorf("no snapshot was written after the update holding U+0000")
			}
			e.restart()
			d, err := e.eng.Read(t.Context(), "t", "d")
			if err != nil {
				t.Fatal(err)
			}
			if want := "hello"; len(d.Content) != len(want)+len("a\uFFFDbcdef") {
				t.Errorf("text after a restart: %q", d.Content)
			}
			for _, r := range d.Content {
				if r == 0 {
					t.Fatalf("text holds U+0000: %q", d.Content)
				}
			}
			if stage == dataplane.StageLegacyRetired {
				return // the legacy row is no longer written
			}
			if vr, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || len(vr) != 1 || vr[0].Verdict != VerifyMatch {
				t.Errorf("verification: %+v, %v", vr, err)
			}
			// A legacy save of the text as read replaces U+0000 in Yjs too.
			e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "w", Content: d.Content + "!", BaseRevision: d.Revision})
			if vr, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || len(vr) != 1 || vr[0].Verdict != VerifyMatch {
				t.Errorf("verification after a legacy save: %+v, %v", vr, err)
			}
		})
	}
}

// TestNulInLegacySaveIsRefused: the legacy API's content and title may not
// hold U+0000: a 400 that is recorded, not a database error answered as
// "unavailable, retry".
func TestNulInLegacySaveIsRefused(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "hello"})
	for _, r := range []Request{
		{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "x\x00y", BaseRevision: 1, IdempotencyKey: "k1"},
		{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "xy", Title: ptr("a\x00"), BaseRevision: 1},
		{Kind: KindCreate, Doc: "d2", Tenant: "t", User: "u", Content: "\x00"},
	} {
		_, err := e.eng.Submit(t.Context(), r)
		var se *Error
		if !errors.As(err, &se) || se.Status != 400 || se.Code != CodeInvalidRequest {
			t.Errorf("%s %s with U+0000: %v; want a 400 %s", r.Kind, r.Doc, err, CodeInvalidRequest)
		}
	}
	if after := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd' AND kind = 'rejected'`); after != 2 {
		t.Errorf("%d refusals recorded for d, want 2", after)
	}
	if d, err := e.eng.Read(t.Context(), "t", "d"); err != nil || d.Content != "hello" || d.Revision != 1 {
		t.Errorf("document changed: %+v, %v", d, err)
	}
}
