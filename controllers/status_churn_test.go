package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestStatusIsNotRewrittenForReportTimesAlone: every shard reports every
// few seconds, and status carried the oldest report's time, so the
// controller wrote status at every poll, forever (a finished rollout
// included): an etcd revision and a watch event each time, and
// `kubectl get -w` printed the same row again every 2 s. Report times
// alone now move status every 30 s; anything else still at once.
func TestStatusIsNotRewrittenForReportTimesAlone(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("steady", "pilot"))).To(Succeed())
	f.walkToVerify("steady", "pilot")
	// Counts taken age ago (reports are stamped by the data plane's
	// clock, which stands still here).
	reportAll := func(age time.Duration) {
		f.report("steady", 0, shardReport{backfill: true, countsAge: age})
		f.report("steady", 1, shardReport{backfill: true, countsAge: age})
	}
	reportedAt := func() time.Time {
		if at := f.cohortStatus("steady", "pilot").ReportedAt; at != nil {
			return at.Time
		}
		return time.Time{}
	}
	now := fakeClock.Now()
	reportAll(time.Minute)
	f.g.Eventually(reportedAt).Should(BeTemporally("==", now.Add(-time.Minute)))
	f.g.Expect(f.cohortStatus("steady", "pilot").Stage).To(Equal(persistencev1alpha1.StageVerify))
	rv := f.get("steady").ResourceVersion

	for _, age := range []time.Duration{50 * time.Second, 40 * time.Second} {
		reportAll(age)
		time.Sleep(500 * time.Millisecond) // five polls
	}
	ro := f.get("steady")
	f.g.Expect(ro.ResourceVersion).To(Equal(rv), "status rewritten for report times 20 s newer")
	f.g.Expect(reportedAt()).To(BeTemporally("==", now.Add(-time.Minute)))

	reportAll(0)
	f.g.Eventually(reportedAt).Should(BeTemporally("==", now), "report times a minute newer")
	f.g.Expect(f.get("steady").ResourceVersion).NotTo(Equal(rv))

	// Anything else is written at once, with the report time then current.
	f.report("steady", 0, shardReport{backfill: true, unverified: 1})
	f.g.Eventually(func() int64 { return f.cohortStatus("steady", "pilot").Verified }).Should(Equal(int64(9)))
}
