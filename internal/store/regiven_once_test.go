package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestADocumentGivenToAnotherSchoolStartsAnewOnce: after the repair started t2's
// own Yjs generation, reloading the document (a restart) and touching it
// again must not start yet another one; verification and the ledger
// chain hold.
func TestADocumentGivenToAnotherSchoolStartsAnewOnce(t *testing.T) {
	for _, stage := range []string{dataplane.StageLocalFirst, dataplane.StageDualWrite} {
		t.Run(stage, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", stage, "t", "t2")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
			e.regive(true)
			e.opensAs("t2", "Bob's text.")
			gen := e.count(`SELECT max(generation) FROM yjs_updates WHERE doc_id = 'd'`)
			want := "Bob's text."
			for i := 0; i < 2; i++ {
				e.restart()
				e.opensAs("t2", want)
				want = "Bob's text " + string(rune('a'+i))
				e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: want})
			}
			if g := e.count(`SELECT max(generation) FROM yjs_updates WHERE doc_id = 'd'`); g != gen {
				t.Errorf("generation %d after reloads, %d after the first repair", g, gen)
			}
			if v, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || len(v) != 1 || v[0].Verdict != VerifyMatch {
				t.Errorf("verify: %+v %v", v, err)
			}
			if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
				t.Errorf("ledger: %+v %v", rep, err)
			}
			ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t2"})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Verdict != VerdictSynced || !ev.Chain.OK {
				t.Errorf("evidence for t2: %s, chain ok %v: %s", ev.Verdict, ev.Chain.OK, ev.Proof.Summary)
			}
		})
	}
}
