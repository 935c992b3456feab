package controllers

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestADatabaseSwappedMidRolloutIsRefused: the database Secret of a
// rollout on its way is edited to name another database (a DSN pasted from
// the wrong environment, a new server restored from nothing). The
// controller took the empty database for a new rollout: it froze the
// cohorts there again from Legacy, while status had shown them at Verify a
// moment before, and rolled the gateway pods onto it, where the students'
// documents are not. Now the rollout refuses a database that has no record
// of cohorts status shows started: nothing is written there, the gateway
// keeps its template, and the rollout says why until the Secret names its
// database again.
func TestADatabaseSwappedMidRolloutIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("moved", "pilot"))).To(Succeed())
	verify := f.walkToVerify("moved", "pilot")
	versions := f.podTemplateAnnotation("moved")
	f.g.Eventually(versions).ShouldNot(BeEmpty())
	before := versions()

	other := pgharness.ForTest(t)
	pool, err := pgxpool.New(ctx, other)
	f.g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(pool.Close)
	f.g.Expect(migrations.Up(ctx, pool)).To(Succeed())
	otherStore := dataplane.NewPostgres(pool)
	otherCohorts := func() map[string]dataplane.CohortState {
		states, err := otherStore.Cohorts(ctx, f.ns+"/moved")
		if err != nil {
			return map[string]dataplane.CohortState{"error": {Stage: err.Error()}}
		}
		return states
	}
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(other) })

	f.g.Consistently(otherCohorts, "2s").Should(BeEmpty(), "the rollout started over in the other database")
	f.g.Expect(versions()).To(Equal(before), "the gateway pods are not rolled onto the other database")
	f.g.Expect(f.cohortStatus("moved", "pilot").Stage).To(Equal(persistencev1alpha1.StageVerify))
	f.g.Eventually(func() string { return f.ready("moved") }).Should(Equal("False/DataPlaneError: data plane: the database has no record of cohort pilot, " +
		"which status shows at Verify (epoch " + itoa(verify) + "): the database Secret db may name another database than the one this rollout ran on. " +
		"Point it at that database again; to start the rollout over on this one, delete the rollout with deletionPolicy: Retain and create it again " +
		"(the gateway keeps its last template meanwhile)"))

	// The Secret names the rollout's database again: it carries on.
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(f.dsn) })
	f.g.Eventually(func() string { return f.ready("moved") }).ShouldNot(ContainSubstring("DataPlaneError"))
	f.g.Expect(f.cohortStatus("moved", "pilot").Stage).To(Equal(persistencev1alpha1.StageVerify))
	f.g.Expect(f.cohortStatus("moved", "pilot").Epoch).To(Equal(verify))
}
