package loadgen

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestAuditFailsASaveCommittedTwice: the audit said "every acknowledged
// save present" and counted a save whose request was committed twice (a
// retry not recognised as one, merged in again) as present once. A key
// on two commit entries of the document's ledger now fails the audit,
// naming both revisions. (The evidence is built here; the audit of a real
// system is loadgen_test's.)
func TestAuditFailsASaveCommittedTwice(t *testing.T) {
	entry := func(rev int64, key string) store.TimelineEntry {
		return store.TimelineEntry{Entry: ledger.Entry{Kind: ledger.KindCommitted, Revision: rev, IdempotencyKey: key, ContentSHA256: "sha"}}
	}
	da := &docAcks{legacy: []LegacyAck{{Doc: "d", Key: "k1", Revision: 2, ContentSHA256: "sha"}}}
	for _, c := range []struct {
		name     string
		timeline []store.TimelineEntry
		failures int
	}{
		{"once", []store.TimelineEntry{entry(1, "k0"), entry(2, "k1")}, 0},
		{"twice", []store.TimelineEntry{entry(2, "k1"), entry(3, "k1")}, 1},
	} {
		a := &auditor{rep: &Report{}}
		checkEvidence(a, "d", store.Evidence{Chain: store.VerifyReport{OK: true}, Timeline: c.timeline}, da)
		if a.rep.FailureCount != c.failures {
			t.Errorf("%s: %d failures (%+v), want %d", c.name, a.rep.FailureCount, a.rep.Failures, c.failures)
		}
		if c.failures > 0 && (len(a.rep.Failures) == 0 || !strings.Contains(a.rep.Failures[0].Detail, "committed 2 times (revisions [2 3])")) {
			t.Errorf("%s: failures %+v", c.name, a.rep.Failures)
		}
	}
}
