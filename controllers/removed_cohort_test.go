package controllers

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/placement"
)

// bucketRollout is a rollout of two bucket cohorts: pilot takes buckets
// [0, 50), rest [50, 100).
func (f *fixture) bucketRollout(name string) *persistencev1alpha1.PersistenceRollout {
	ro := f.rollout(name, "pilot", "rest")
	ro.Spec.Cohorts[0].Tenants, ro.Spec.Cohorts[0].Buckets = nil, &persistencev1alpha1.BucketRange{From: 0, To: 50}
	ro.Spec.Cohorts[1].Tenants, ro.Spec.Cohorts[1].Buckets = nil, &persistencev1alpha1.BucketRange{From: 50, To: 100}
	return ro
}

// schoolInBuckets returns a tenant ID of the form prefix-N whose bucket is
// in [from, to).
func schoolInBuckets(prefix string, from, to int) string {
	for i := 0; ; i++ {
		t := fmt.Sprintf("%s-%d", prefix, i)
		if b := placement.TenantBucket(t); b >= from && b < to {
			return t
		}
	}
}

// firstSave plays a shard's first save of a school, as the syncer does it:
// the save transaction registers the school (placing a school seen for the
// first time in a cohort) and reads the stage it commits under.
func (f *fixture) firstSave(name, tenant string) dataplane.SaveStage {
	f.t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, f.dsn)
	f.g.Expect(err).NotTo(HaveOccurred())
	defer pool.Close()
	tx, err := pool.Begin(ctx)
	f.g.Expect(err).NotTo(HaveOccurred())
	stages, err := dataplane.LockSaveStages(ctx, tx, f.ns+"/"+name, []string{tenant})
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(tx.Commit(ctx)).To(Succeed())
	return stages[tenant]
}

// cohortOf is the cohort a school belongs to in PostgreSQL ("": none).
func (f *fixture) cohortOf(tenant string) string {
	f.t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, f.dsn)
	f.g.Expect(err).NotTo(HaveOccurred())
	defer pool.Close()
	st, err := dataplane.ReadTenantStage(ctx, pool, tenant)
	f.g.Expect(err).NotTo(HaveOccurred())
	return st.Cohort
}

// seesSpec waits until status reports the current generation of the spec
// with exactly the given cohorts: the reconcile that wrote it has read the
// data plane under that spec.
func (f *fixture) seesSpec(name string, cohorts ...string) {
	f.t.Helper()
	f.g.Eventually(func() []string {
		ro := f.get(name)
		if ro.Status.ObservedGeneration != ro.Generation {
			return nil
		}
		var names []string
		for _, c := range ro.Status.Cohorts {
			names = append(names, c.Name)
		}
		return names
	}).Should(Equal(cohorts))
}

// TestRemovedBucketCohortTakesNoNewSchools: a bucket cohort's row stays in
// PostgreSQL when the cohort leaves the spec (its schools stay with it:
// memberships are never moved). A school seen for the first time must not
// join it any more: it used to, so a brand-new school landed in a cohort
// the spec no longer had (here one rolled back and dropped, as the CRD
// tells people to drop a cohort), instead of where the spec says: nowhere
// (Legacy) until a cohort of the spec takes it. Put back under its name,
// the cohort takes new schools again.
func TestRemovedBucketCohortTakesNoNewSchools(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old := schoolInBuckets("old", 0, 50)
	f.g.Expect(f.firstSave("drop", old).Cohort).To(Equal(""), "no cohort has started yet")
	f.g.Expect(k8s.Create(ctx, f.bucketRollout("drop"))).To(Succeed())
	f.walkToVerify("drop", "pilot")
	f.g.Expect(f.cohortOf(old)).To(Equal("pilot"), "pilot froze the school it selects")

	// Dropped the documented way: rolled back, then removed from the spec.
	f.update("drop", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	})
	f.waitStage("drop", "pilot", persistencev1alpha1.StageLegacy)
	f.update("drop", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts = ro.Spec.Cohorts[1:] })
	f.seesSpec("drop", "rest")

	fresh := schoolInBuckets("fresh", 0, 50)
	st := f.firstSave("drop", fresh)
	f.g.Expect(st.Cohort).To(Equal(""), "a new school joined cohort %s, which the spec no longer has", st.Cohort)
	f.g.Expect(st.Stage).To(Equal(dataplane.StageLegacy))
	f.g.Expect(f.cohortOf(old)).To(Equal("pilot"), "a frozen membership never moves")

	// Back under its name, pilot takes new schools again; the one seen
	// while it was away stays where it was placed.
	f.update("drop", func(ro *persistencev1alpha1.PersistenceRollout) {
		pilot := f.bucketRollout("drop").Spec.Cohorts[0]
		ro.Spec.Cohorts = append([]persistencev1alpha1.CohortSpec{pilot}, ro.Spec.Cohorts...)
	})
	f.seesSpec("drop", "pilot", "rest")
	later := schoolInBuckets("later", 0, 50)
	f.g.Expect(f.firstSave("drop", later).Cohort).To(Equal("pilot"))
	f.g.Expect(f.cohortOf(fresh)).To(Equal(""))
	f.g.Expect(f.cohortOf(old)).To(Equal("pilot"))
}

// TestRenamedBucketCohortTakesNewSchools: a bucket cohort rolled back and
// renamed keeps its schools under its old name, and the renamed cohort
// starts without them. A school seen for the first time afterwards belongs
// where the spec says, the renamed cohort, not the old name's row (both
// select the same buckets, at the same position).
func TestRenamedBucketCohortTakesNewSchools(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old := schoolInBuckets("old", 0, 50)
	f.firstSave("ren", old)
	f.g.Expect(k8s.Create(ctx, f.bucketRollout("ren"))).To(Succeed())
	f.walkToVerify("ren", "pilot")
	f.rollBackAndRename("ren", "pilot", "pilot-2")
	f.waitStage("ren", "pilot-2", persistencev1alpha1.StageDualWrite)

	fresh := schoolInBuckets("fresh", 0, 50)
	st := f.firstSave("ren", fresh)
	f.g.Expect(st.Cohort).To(Equal("pilot-2"), "a new school joined %q; the spec puts its bucket in pilot-2", st.Cohort)
	f.g.Expect(st.Stage).To(Equal(dataplane.StageDualWrite))
	f.g.Expect(f.cohortOf(old)).To(Equal("pilot"), "a frozen membership never moves")
}
