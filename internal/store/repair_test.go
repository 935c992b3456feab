package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// outOfBand changes a legacy row the way a writer bypassing the gateway
// would (no revision row, no ledger entry), optionally bumping revision.
func (e *env) outOfBand(doc, content string, bump bool) {
	e.t.Helper()
	q := `UPDATE documents SET content = $2 WHERE doc_id = $1`
	if bump {
		q = `UPDATE documents SET content = $2, revision = revision + 1 WHERE doc_id = $1`
	}
	if _, err := e.pool.Exec(e.t.Context(), q, doc, content); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) revisionText(doc string, rev int64) (string, string) {
	e.t.Helper()
	var c, by string
	if err := e.pool.QueryRow(e.t.Context(), `SELECT content, saved_by FROM document_revisions WHERE doc_id = $1 AND revision = $2`, doc, rev).Scan(&c, &by); err != nil {
		e.t.Fatalf("revision %d of %s: %v", rev, doc, err)
	}
	return c, by
}

func (e *env) yjsText(doc string) string {
	e.t.Helper()
	res, err := e.eng.VerifyDocs(e.t.Context(), []string{doc})
	if err != nil || len(res) != 1 {
		e.t.Fatalf("verify %s: %v %v", doc, res, err)
	}
	if res[0].Verdict != VerifyMatch {
		e.t.Fatalf("%s: representations differ: %s", doc, res[0].Detail)
	}
	d, err := e.eng.Read(e.t.Context(), "t1", doc)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.Content
}

// A save reaching a cached copy older than its legacy row (a write made
// outside the gateway in between) never overwrites that write unseen: the
// row's content is captured as its own revision first, the representations
// are repaired, and only then is the save applied, all in one commit.
func TestSaveOverOutOfBandWriteKeepsIt(t *testing.T) {
	for _, stage := range []string{dataplane.StageLegacy, dataplane.StageVerify, dataplane.StageLocalFirst} {
		t.Run(stage, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", stage, "t1")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta"})
			// The document is now cached; a writer changes the row behind it.
			e.outOfBand("d", "alpha beta gamma", false)
			res := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta delta", BaseRevision: 1})
			// Revision 2 is the captured out-of-band text; the save was
			// based on revision 1, so it is a stale-base save now.
			got, by := e.revisionText("d", 2)
			if got != "alpha beta gamma" || by != userOutside {
				t.Fatalf("revision 2 = %q by %q, want the out-of-band text captured", got, by)
			}
			if res.Revision != 3 {
				t.Fatalf("save committed as revision %d, want 3", res.Revision)
			}
			switch stage {
			case dataplane.StageLocalFirst:
				// Yjs-authoritative: three-way merged, both changes kept.
				if res.Outcome != OutcomeMerged || *res.Content != "alpha beta gamma delta" && *res.Content != "alpha beta delta gamma" {
					t.Fatalf("outcome %s content %q, want both changes merged", res.Outcome, *res.Content)
				}
			default:
				// Legacy-authoritative: the save wins as the legacy store
				// would, and the captured revision stays readable.
				if res.Outcome != OutcomeOverwrittenPreserved || res.SupersededRevision != 2 {
					t.Fatalf("outcome %s superseded %d, want overwritten-preserved of revision 2", res.Outcome, res.SupersededRevision)
				}
			}
			var repaired int
			for _, en := range e.entries("d") {
				if en.Kind == ledger.KindRepaired {
					repaired++
					if en.LegacySHA256 != ledger.SHA256Hex([]byte("alpha beta gamma")) || en.Revision != 2 {
						t.Fatalf("repair entry %+v", en)
					}
				}
			}
			if repaired != 1 {
				t.Fatalf("%d repair entries, want 1", repaired)
			}
			if stage != dataplane.StageLegacy {
				if txt := e.yjsText("d"); txt != *res.Content {
					t.Fatalf("Yjs text %q, legacy %q", txt, *res.Content)
				}
			}
			// A divergence of representations only where there are two: a
			// legacy-only document's outside change is just captured.
			want := 1
			if stage == dataplane.StageLegacy {
				want = 0
			}
			if n := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND kind = $1 AND resolved_at IS NOT NULL`, DivergenceOutOfBand); n != want {
				t.Fatalf("%d resolved divergences, want %d", n, want)
			}
		})
	}
}

// Verification finds a legacy row changed outside the gateway; the repair
// merges that change into the authoritative Yjs side as an edit, so the
// clients' own edits stay, and resolves the recorded divergence.
func TestVerificationRepairsOutOfBandWrite(t *testing.T) {
	e := setup(t)
	st := e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "one two"})
	// A local-first client edits, then the legacy row is changed outside.
	u := e.clientEdit("t1", "d", 7, " three")
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: u})
	e.outOfBand("d", "zero one two three", true)

	res, err := e.eng.VerifyDocs(t.Context(), []string{"d"})
	if err != nil || res[0].Verdict != VerifyMismatch {
		t.Fatalf("verification %+v %v, want a mismatch", res, err)
	}
	if err := e.eng.RecordDivergence(t.Context(), "d", DivergenceOutOfBand, "c", st.Epoch, "test"); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM divergences WHERE resolved_at IS NULL`); n != 1 {
		t.Fatalf("%d open divergences, want 1", n)
	}
	rep, err := e.eng.Repair(t.Context(), "d", "verification")
	if err != nil || rep.Outcome != OutcomeRepaired {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	// The legacy change (a word at the start) is merged into the Yjs side
	// as an edit, so the client's own edit stays with it.
	if txt := e.yjsText("d"); txt != "zero one two three" {
		t.Fatalf("after repair the text is %q", txt)
	}
	if n := e.count(`SELECT count(*) FROM divergences WHERE resolved_at IS NULL`); n != 0 {
		t.Fatalf("%d open divergences after the repair", n)
	}
	// Repairing again changes nothing.
	if rep, err := e.eng.Repair(t.Context(), "d", "verification"); err != nil || rep.Outcome != OutcomeConsistent {
		t.Fatalf("second repair: %+v %v", rep, err)
	}
	// The client that made " three" continues from its state: its next
	// edit lands after the repaired text.
	u2 := e.clientEdit("t1", "d", 7, " four")
	r2 := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: u2})
	if r2.Outcome != OutcomeSaved || e.yjsText("d") != "zero one two three four" {
		t.Fatalf("after the repair the client's edit gave %q (%s)", e.yjsText("d"), r2.Outcome)
	}
	counts, err := e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if c := counts["c"]; c.Found != 1 || c.Open != 0 || len(c.Samples) != 1 || c.Samples[0] != "d" {
		t.Fatalf("cohort counts %+v, want found 1 (d), open 0", c)
	}
}

// A client whose copy was made without the server's document (its text
// inserted into a fresh Y.Doc) is not CRDT-merged, which would duplicate
// the text: its text is merged on text, its copy preserved, and it is told
// to reload. Replaying the same update changes nothing.
func TestForeignHistoryIsMergedOnTextAndPreserved(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "The cat sat."})
	// Meanwhile the server's copy moves on.
	u := e.clientEdit("t1", "d", 5, " It purred.")
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: u})

	// The foreign copy: the legacy text typed into a fresh document, then
	// edited at the start.
	f := yjs.NewDoc(yjs.Options{ClientID: 99})
	var fu [][]byte
	f.OnUpdate(func(b []byte) { fu = append(fu, b) })
	tx := f.GetText(contract.YjsTextName)
	if err := tx.Insert(0, "The cat sat.", nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Insert(0, "Today: ", nil); err != nil {
		t.Fatal(err)
	}
	full := f.EncodeStateAsUpdate(nil)
	_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", Update: full})
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeForeignHistory {
		t.Fatalf("foreign update: %v, want %s", err, CodeForeignHistory)
	}
	want := "Today: The cat sat. It purred."
	if got := e.yjsText("d"); got != want {
		t.Fatalf("text %q, want %q (merged on text, not duplicated)", got, want)
	}
	var pid int64
	var kept string
	if err := e.pool.QueryRow(t.Context(), `SELECT preserved_id, content FROM preserved_content WHERE doc_id = 'd'`).Scan(&pid, &kept); err != nil {
		t.Fatal(err)
	}
	if kept != "Today: The cat sat." || !strings.Contains(se.Message, "/preserved/") {
		t.Fatalf("preserved %q, message %q", kept, se.Message)
	}
	ledgerLen := len(e.entries("d"))
	_, err = e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", Update: full})
	if !errors.As(err, &se) || se.Code != CodeForeignHistory {
		t.Fatalf("replayed foreign update: %v", err)
	}
	if n := len(e.entries("d")); n != ledgerLen || e.yjsText("d") != want || e.count(`SELECT count(*) FROM preserved_content`) != 1 {
		t.Fatalf("a replay changed something: ledger %d -> %d", ledgerLen, n)
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Tenant: "t1", Doc: "d", Client: 99})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictOverwrittenPreserved {
		t.Fatalf("evidence for the foreign client: %s, want %s", ev.Verdict, VerdictOverwrittenPreserved)
	}
	// An ordinary client that started from the server's state still
	// inserts at the start without being taken for a foreign one.
	sync := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t1", User: "w", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	o := yjs.NewDoc(yjs.Options{ClientID: 6})
	if err := o.ApplyUpdate(sync.Update); err != nil {
		t.Fatal(err)
	}
	sv := o.StateVector()
	if err := o.GetText(contract.YjsTextName).Insert(0, "Note: ", nil); err != nil {
		t.Fatal(err)
	}
	r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "w", Update: o.EncodeStateAsUpdate(sv)})
	if r.Outcome != OutcomeSaved || e.yjsText("d") != "Note: "+want {
		t.Fatalf("an insert at the start by a synced client: %s, text %q", r.Outcome, e.yjsText("d"))
	}
}

// Operations a client announces and the server lacks are an open gap
// until an update brings them; a gap older than the threshold counts.
func TestClientGapsOpenAndClose(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "x"})
	c := e.announceUnsent("t1", "d", 42)
	counts, err := e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if counts["c"].Gaps != 1 {
		t.Fatalf("gaps %+v, want 1 open past a zero threshold", counts["c"])
	}
	if counts, _ := e.dp.CohortDivergences(t.Context(), rollout, 0, 3600e9, 5); counts["c"].Gaps != 0 {
		t.Fatalf("a gap younger than the threshold counted: %+v", counts["c"])
	}
	// A new engine (restart) still knows the gap and closes it when the
	// operations arrive.
	e.eng.Close()
	eng, err := Open(t.Context(), e.eng.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	e.eng = eng
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: c.EncodeStateAsUpdate(nil)})
	counts, _ = e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5)
	if counts["c"].Gaps != 0 {
		t.Fatalf("gap still open after the update: %+v", counts["c"])
	}
	if n := e.count(`SELECT count(*) FROM client_gaps WHERE closed_at IS NOT NULL AND client = 42`); n != 1 {
		t.Fatalf("%d closed gaps, want 1", n)
	}
}

// A revision made by a Yjs update is kept by reference to the Yjs log (no
// second copy of the text): it still reads back as its text, and a
// stale-base legacy save on it still three-way merges.
func TestYjsRevisionsByReference(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "one"})
	var last Result
	for _, w := range []string{" two", " three", " four"} {
		last = e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: e.clientEdit("t1", "d", 9, w)})
	}
	if last.Revision != 4 {
		t.Fatalf("revision %d after three Yjs edits, want 4", last.Revision)
	}
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'd' AND content IS NULL AND yjs_seq IS NOT NULL AND content_sha256 IS NOT NULL`); n != 3 {
		t.Fatalf("%d revisions by reference, want 3", n)
	}
	for rev, want := range map[int64]string{1: "one", 2: "one two", 3: "one two three", 4: "one two three four"} {
		r, err := e.eng.ReadRevision(t.Context(), "t1", "d", rev)
		if err != nil || r.Content != want {
			t.Fatalf("revision %d: %q %v, want %q", rev, r.Content, err, want)
		}
	}
	// A cold load (the latest revision is by reference) compares the row with the latest revision by its hash:
	// nothing is taken for an outside change.
	e.eng.cache.evict("d")
	if rep, err := e.eng.Repair(t.Context(), "d", "test"); err != nil || rep.Outcome != OutcomeConsistent {
		t.Fatalf("repair of a consistent document: %+v %v", rep, err)
	}
	// A legacy client that read revision 2 saves on it.
	res := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "old", Content: "zero one two", BaseRevision: 2})
	if res.Outcome != OutcomeMerged || *res.Content != "zero one two three four" {
		t.Fatalf("stale save on a by-reference revision: %s %q", res.Outcome, *res.Content)
	}
}

// Text typed into an empty page before the first sync arrived also
// inserts at the start of an empty text, but is no copy of the document:
// it is an ordinary concurrent edit, CRDT-merged, not refused, even when
// it shares most of its words with the document or starts like it.
func TestEarlyEditIsNotForeign(t *testing.T) {
	essay := "The fox and the dog went out. It was the end of the day and the fox was tired."
	for _, typed := range []string{"Hi! ", "the fox and the dog were tired.", "The fox and the dog were tired, so they slept."} {
		t.Run(typed, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", dataplane.StageLocalFirst, "t1")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: essay})
			c := yjs.NewDoc(yjs.Options{ClientID: 77})
			if err := c.GetText(contract.YjsTextName).Insert(0, typed, nil); err != nil {
				t.Fatal(err)
			}
			res, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", Update: c.EncodeStateAsUpdate(nil)})
			if err != nil || res.Outcome != OutcomeSaved {
				t.Fatalf("early edit: %+v, %v", res, err)
			}
			if got := e.yjsText("d"); got != typed+essay && got != essay+typed {
				t.Fatalf("text %q", got)
			}
			if n := e.count(`SELECT count(*) FROM preserved_content`); n != 0 {
				t.Fatalf("%d preserved copies of an ordinary edit", n)
			}
		})
	}
}

// A foreign copy that merges "cleanly" but would leave little of the
// document (it had the document's opening and little else) does not
// replace it: the document keeps its text, the copy is preserved.
func TestForeignCopyNeverReplacesTheDocument(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	essay := "Rivers. Rivers flow to the sea, carrying silt and stones from the mountains to the plains below."
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: essay})
	// A copy holding the document's first 40 bytes verbatim and a short
	// line of its own.
	f := yjs.NewDoc(yjs.Options{ClientID: 99})
	if err := f.GetText(contract.YjsTextName).Insert(0, essay[:40]+" (draft)", nil); err != nil {
		t.Fatal(err)
	}
	_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", Update: f.EncodeStateAsUpdate(nil)})
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeForeignHistory || !strings.Contains(se.Message, "keeps its text") {
		t.Fatalf("foreign copy: %v", err)
	}
	if got := e.yjsText("d"); got != essay {
		t.Fatalf("the document became %q", got)
	}
	if n := e.count(`SELECT count(*) FROM preserved_content WHERE content = $1`, essay[:40]+" (draft)"); n != 1 {
		t.Fatalf("the copy was not preserved")
	}
}

func TestResembles(t *testing.T) {
	essay := "The fox and the dog went out. It was the end of the day and the fox was tired."
	for _, c := range []struct {
		copy, text string
		want       bool
	}{
		{"Today: The cat sat.", "The cat sat.", true},                    // holds all of a short text
		{essay + " Then it rained.", essay, true},                        // holds all of it
		{essay[:60] + "!" + essay[61:], essay, true},                     // one character changed
		{"Intro. " + essay[10:] + " More.", essay, true},                 // most of it verbatim
		{"the fox and the dog were tired.", essay, false},                // shared words only
		{"The fox and the dog were tired, so they slept.", essay, false}, // same start, then its own
		{"Hi! ", essay, false},
		{"My essay about big rivers and lakes.", "My essay about rivers and lakes.", true}, // short, one word added
		{"Rivers flow! Lakes rest! Seas rise! Rain falls!", "Rivers flow. Lakes rest. Seas rise. Rain falls.", true},
		{"Hi", "Hi", false}, // too short to tell
		{"", essay, false},
	} {
		if got := resembles(c.copy, c.text); got != c.want {
			t.Errorf("resembles(%q, %q) = %v", c.copy, c.text, got)
		}
	}
}

// TestShortForeignCopyIsNotDuplicated: a client that put a short
// document's text into a fresh Y.Doc (a foreign copy) and edited it a
// little sends it: it is resolved as a foreign copy, merged on text, not
// CRDT-merged into a document holding its text twice.
func TestShortForeignCopyIsNotDuplicated(t *testing.T) {
	for _, c := range []struct{ doc, copy string }{
		{"My essay about rivers and lakes.", "My essay about big rivers and lakes."},
		{"Rivers flow. Lakes rest. Seas rise. Rain falls. Snow melts. Ice forms.",
			"Rivers flow! Lakes rest! Seas rise! Rain falls! Snow melts! Ice forms!"},
	} {
		t.Run(c.copy, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", dataplane.StageLocalFirst, "t1")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: c.doc})
			f := yjs.NewDoc(yjs.Options{ClientID: 99})
			if err := f.GetText(contract.YjsTextName).Insert(0, c.copy, nil); err != nil {
				t.Fatal(err)
			}
			_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", Update: f.EncodeStateAsUpdate(nil)})
			var se *Error
			if !errors.As(err, &se) || se.Code != CodeForeignHistory {
				t.Errorf("foreign copy: %v, want %s", err, CodeForeignHistory)
			}
			if got := e.yjsText("d"); got != c.copy {
				t.Errorf("text %q, want the copy's edit merged in once: %q", got, c.copy)
			}
		})
	}
}

// TestAReplacedSyncerRecordsNoDivergence: a verification pass still
// running in a syncer its successor had replaced recorded divergences for
// the shard it no longer wrote, and the successor's reports counted them
// against the cohort's gates. It records nothing once the shard's lease
// is another's.
func TestAReplacedSyncerRecordsNoDivergence(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageVerify, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "a"})
	// A successor takes the shard (as Open does after the advisory lock).
	if _, err := e.pool.Exec(ctx, `UPDATE shard_leases SET epoch = epoch + 1 WHERE shard = 0`); err != nil {
		t.Fatal(err)
	}
	err := e.eng.RecordDivergence(ctx, "d", DivergenceOutOfBand, "c", 1, "verification: texts differ")
	if AsError(err).Code != CodeFenced {
		t.Fatalf("recording after the takeover: %v; want fenced", err)
	}
	if n := e.count(`SELECT count(*) FROM divergences`); n != 0 {
		t.Fatalf("%d divergences recorded by a replaced syncer", n)
	}
}

// TestAGapOfADeletedDocumentDoesNotHoldTheCohort: a client's gap on a
// document the legacy application then deleted (the deletion standing)
// can never close, since no editor can sync into it any more, and it held
// the cohort at its evidence-gap gate for good. It no longer counts; it
// stays on record.
func TestAGapOfADeletedDocumentDoesNotHoldTheCohort(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "x"})
	e.announceUnsent("t1", "d", 42)
	if counts, _ := e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5); counts["c"].Gaps != 1 {
		t.Fatalf("gaps %+v, want the open one", counts["c"])
	}
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if counts, _ := e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5); counts["c"].Gaps != 0 {
		t.Fatalf("gaps %+v after the document was deleted, want none counted", counts["c"])
	}
	if n := e.count(`SELECT count(*) FROM client_gaps WHERE closed_at IS NULL AND client = 42`); n != 1 {
		t.Fatalf("%d open gaps on record, want the one", n)
	}
}

// announceUnsent makes a client that synced tenant's doc, typed "yz" and
// announced its state vector, cut off before sending them: an open gap.
func (e *env) announceUnsent(tenant, doc string, client uint64) *yjs.Doc {
	e.t.Helper()
	c := e.replicasOf(tenant, doc, client)[0]
	if err := c.GetText(contract.YjsTextName).Insert(1, "yz", nil); err != nil {
		e.t.Fatal(err)
	}
	e.submit(Request{Kind: KindSync1, Doc: doc, Tenant: tenant, User: "u", StateVector: c.EncodeStateVector()})
	return c
}
