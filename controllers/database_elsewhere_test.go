package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// otherDatabase is a second migrated database, as another environment's
// server (or an empty one) would be: its DSN, pool and data plane.
func (f *fixture) otherDatabase() (string, *pgxpool.Pool, *dataplane.Postgres) {
	f.t.Helper()
	ctx := context.Background()
	dsn := pgharness.ForTest(f.t)
	pool, err := pgxpool.New(ctx, dsn)
	f.g.Expect(err).NotTo(HaveOccurred())
	f.t.Cleanup(pool.Close)
	f.g.Expect(migrations.Up(ctx, pool)).To(Succeed())
	return dsn, pool, dataplane.NewPostgres(pool).WithClock(fakeClock.Now)
}

// controlRows describes every control row of a database (rollouts, their
// cohorts, stage changes, forgotten objects), to tell whether anything was
// written there.
func controlRows(ctx context.Context, pool *pgxpool.Pool) string {
	var b strings.Builder
	for _, q := range []string{
		`SELECT rollout || ' epoch ' || epoch || ' spec ' || spec_uid || '@' || spec_generation FROM rollouts ORDER BY 1`,
		`SELECT rollout || '/' || cohort || ' ' || stage || ' epoch ' || epoch FROM rollout_cohorts ORDER BY 1`,
		`SELECT rollout || '/' || cohort || ' -> ' || to_stage || ' epoch ' || epoch FROM stage_changes ORDER BY id`,
		`SELECT 'forgotten ' || rollout FROM forgotten_rollouts ORDER BY 1`,
	} {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			return err.Error()
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return err.Error()
			}
			fmt.Fprintln(&b, s)
		}
		rows.Close()
	}
	return b.String()
}

// TestARollbackToLegacyDeletionRefusesADatabaseSwappedUnderIt: a rollout
// with deletionPolicy RollbackToLegacy is deleted after its database
// Secret came to name another database (here another environment's, which
// serves a rollout of its own). The finalizer rolled back "every cohort"
// of a database that had none of this rollout's, recorded the object as
// forgotten there, and let the rollout go: its cohorts stayed at Verify in
// its own database with nobody left to judge or roll them back, while the
// person deleting it was told nothing. The deletion is refused now, saying
// what to do, and neither database is changed until the Secret names the
// rollout's database again.
func TestARollbackToLegacyDeletionRefusesADatabaseSwappedUnderIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("swapped", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	verify := f.walkToVerify("swapped", "pilot")

	// Another environment's database, serving a rollout of its own.
	other, otherPool, otherStore := f.otherDatabase()
	f.g.Expect(otherStore.RegisterRollout(ctx, "staging/demo", "staging-uid", 2)).To(Succeed())
	_, err := otherStore.FreezeCohort(ctx, dataplane.CohortKey{Rollout: "staging/demo", Cohort: "pilot"}, 0,
		dataplane.Selector{Tenants: []string{"pilot-school"}}, fakeClock.Now())
	f.g.Expect(err).NotTo(HaveOccurred())
	otherBefore := controlRows(ctx, otherPool)
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(other) })
	f.g.Eventually(func() string { return f.ready("swapped") }).Should(ContainSubstring("has no record of cohort pilot"))
	ownBefore := controlRows(ctx, f.pool)

	f.g.Expect(k8s.Delete(ctx, f.get("swapped"))).To(Succeed())
	blocked := "deletion blocked: the database has no record of cohort pilot, which status shows at Verify (epoch " + itoa(verify) + "): " +
		"the database Secret db may name another database than the one this rollout ran on, so nothing is rolled back there. " +
		"Point the Secret at that database again and the deletion rolls every cohort back to Legacy; " +
		"or set deletionPolicy: Retain to delete the rollout, every cohort keeping its stage"
	f.g.Eventually(func() string { return f.ready("swapped") }).Should(Equal("False/DatabaseRefused: " + blocked))
	f.g.Consistently(func() bool { return f.gone("swapped") }, "2s").Should(BeFalse(), "the deletion went ahead on another database")
	f.g.Expect(controlRows(ctx, otherPool)).To(Equal(otherBefore), "the other environment's database was written")
	f.g.Expect(controlRows(ctx, f.pool)).To(Equal(ownBefore), "the rollout's own database was written")
	f.g.Expect(f.get("swapped").Status.WaitingFor).To(Equal(blocked))
	f.g.Expect(f.cohortStatus("swapped", "pilot").Stage).To(Equal(persistencev1alpha1.StageVerify), "status shows the cohort where its database has it")
	f.g.Expect(f.events("swapped")).To(ContainElement("DatabaseRefused: " + blocked))

	// The Secret names the rollout's database again: the rollback is
	// carried out there, and the rollout goes once the shards observe it.
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(f.dsn) })
	f.waitStagePG("swapped", "pilot", persistencev1alpha1.StageLegacy)
	f.healthyShards("swapped")
	f.g.Eventually(func() bool { return f.gone("swapped") }).Should(BeTrue())
	f.g.Expect(controlRows(ctx, otherPool)).To(Equal(otherBefore), "the other environment's database was written")
}

// TestARollbackToLegacyDeletionOnAnEmptyServerLetsGoOnlyWithRetain: the
// Secret names an empty server (a new one, restored from nothing) when the
// rollout is deleted with RollbackToLegacy. The finalizer registered
// nothing but recorded the object as forgotten there and let the rollout
// go with its cohorts at Verify in its own database. It is refused now;
// switching to Retain, as the refusal says, lets it go and leaves both
// databases as they were.
func TestARollbackToLegacyDeletionOnAnEmptyServerLetsGoOnlyWithRetain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("emptied", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	verify := f.walkToVerify("emptied", "pilot")

	empty, emptyPool, _ := f.otherDatabase()
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(empty) })
	f.g.Expect(k8s.Delete(ctx, f.get("emptied"))).To(Succeed())
	f.g.Eventually(func() string { return f.ready("emptied") }).Should(HavePrefix("False/DatabaseRefused: deletion blocked: the database has no record of cohort pilot"))
	f.g.Consistently(func() bool { return f.gone("emptied") }, "2s").Should(BeFalse(), "the deletion went ahead on an empty database")
	f.g.Expect(controlRows(ctx, emptyPool)).To(BeEmpty(), "the empty database was written")

	f.update("emptied", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRetain
	})
	f.g.Eventually(func() bool { return f.gone("emptied") }).Should(BeTrue())
	f.g.Expect(controlRows(ctx, emptyPool)).To(BeEmpty(), "the empty database was written")
	states, err := f.store.Cohorts(ctx, f.ns+"/emptied")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(states["pilot"].Stage).To(Equal(string(persistencev1alpha1.StageVerify)))
	f.g.Expect(states["pilot"].Epoch).To(Equal(verify), "Retain keeps the cohort where it was")
}

// restoreTo plays a restore of the rollout's database from a backup taken
// when its cohort was at stage under epoch: the control rows go back to
// what they were then (no reports yet, no later audit trail).
func (f *fixture) restoreTo(name, cohort string, stage persistencev1alpha1.Stage, epoch int64) {
	f.t.Helper()
	ctx := context.Background()
	key := f.ns + "/" + name
	tx, err := f.pool.Begin(ctx)
	f.g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = tx.Rollback(ctx) }()
	for _, q := range []string{
		`UPDATE rollouts SET epoch = $2 WHERE rollout = $1`,
		`UPDATE rollout_cohorts SET stage = $3, epoch = $2 WHERE rollout = $1 AND cohort = $4`,
		`DELETE FROM stage_changes WHERE rollout = $1 AND epoch > $2`,
		`DELETE FROM cohort_soak_watch WHERE rollout = $1 AND $2 >= 0`,
		`DELETE FROM shard_cohort_reports WHERE rollout = $1 AND $2 >= 0`,
		`DELETE FROM shard_reports WHERE rollout = $1 AND $2 >= 0`,
	} {
		args := []any{key, epoch}
		if strings.Contains(q, "$3") {
			args = append(args, string(stage), cohort)
		}
		_, err := tx.Exec(ctx, q, args...)
		f.g.Expect(err).NotTo(HaveOccurred(), q)
	}
	f.g.Expect(tx.Commit(ctx)).To(Succeed())
}

// TestADatabaseRestoredFromAnOlderBackupIsRefusedUntilAcknowledged: the
// rollout's database is restored from a backup taken when its cohort was
// at DualWrite (epoch 1), while status shows it at Verify (epoch 3). The
// controller took the database as it found it and walked the cohort on
// from there, handing out epochs 2 and 3 again for other stages than the
// shards had observed under them: fencing, the barrier and the syncers'
// verification verdicts take an epoch to name one decision. Now nothing is
// decided there, and the rollout says why and what to run; once the
// platform team acknowledges the restore (an annotation naming the epoch),
// every cohort is stamped under a new epoch above it, at the stage the
// database has, and the rollout goes on from there.
func TestADatabaseRestoredFromAnOlderBackupIsRefusedUntilAcknowledged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("restored", "pilot"))).To(Succeed())
	dual := f.waitStage("restored", "pilot", persistencev1alpha1.StageDualWrite)
	f.healthyShards("restored")
	f.waitStage("restored", "pilot", persistencev1alpha1.StageBackfill)
	f.healthyShards("restored")
	verify := f.waitStage("restored", "pilot", persistencev1alpha1.StageVerify).Epoch
	f.healthyShards("restored")
	f.g.Eventually(func() string { return f.get("restored").Status.WaitingFor }).Should(HavePrefix("soak until "))
	versions := f.podTemplateAnnotation("restored")
	before := versions()

	f.restoreTo("restored", "pilot", persistencev1alpha1.StageDualWrite, dual.Epoch)
	why := "False/DataPlaneError: data plane: the database has cohort pilot at DualWrite (epoch " + itoa(dual.Epoch) + "), which status shows at Verify (epoch " + itoa(verify) + "): " +
		"it was restored from an older backup, or the Secret names another copy of it. Nothing is decided on it: its next epochs would be ones " +
		"the shards may have observed with other stages, and fencing takes epochs to only grow. If the Secret names the wrong database, point it at the right one; " +
		"to go on from the stages this database has (work written after its backup is not in it), run " +
		"`kubectl annotate persistencerollout restored persistence.yawp.dev/accept-restored-database=" + itoa(verify) + "`: " +
		"every cohort is stamped under a new epoch above " + itoa(verify) + ", soaks start again, and the rollout goes on (the gateway keeps its last template meanwhile)"
	// The shards, restarted on the restored database, report what they
	// observe there: nothing moves.
	f.healthyShards("restored")
	pilotPG := func() string {
		states, err := f.store.Cohorts(ctx, f.ns+"/restored")
		if err != nil {
			return err.Error()
		}
		return states["pilot"].Stage + " epoch " + itoa(states["pilot"].Epoch)
	}
	f.g.Consistently(pilotPG, "2s").Should(Equal("DualWrite epoch "+itoa(dual.Epoch)), "an epoch was handed out again")
	f.g.Eventually(func() string { return f.ready("restored") }).Should(Equal(why))
	f.g.Expect(f.cohortStatus("restored", "pilot").Stage).To(Equal(persistencev1alpha1.StageVerify))
	f.g.Expect(versions()).To(Equal(before))

	// Acknowledged: stamped above every epoch status showed, and on.
	f.update("restored", func(ro *persistencev1alpha1.PersistenceRollout) {
		if ro.Annotations == nil {
			ro.Annotations = map[string]string{}
		}
		ro.Annotations[AnnotationAcceptRestoredDatabase] = itoa(verify)
	})
	f.g.Eventually(func() string {
		c := f.cohortStatus("restored", "pilot")
		return string(c.Stage) + " epoch " + itoa(c.Epoch)
	}).Should(Equal("DualWrite epoch " + itoa(verify+1)))
	f.g.Expect(pilotPG()).To(Equal("DualWrite epoch " + itoa(verify+1)))
	f.g.Eventually(func() string { return f.ready("restored") }).ShouldNot(ContainSubstring("DataPlaneError"))
	history := f.get("restored").Status.History
	f.g.Expect(history).NotTo(BeEmpty())
	last := history[len(history)-1]
	f.g.Expect(last.Reason).To(Equal("DatabaseRestored"))
	f.g.Expect(last.Epoch).To(Equal(verify + 1))
	f.g.Expect(f.events("restored")).To(ContainElement("DatabaseRestored: cohort pilot stays at DualWrite under epoch " + itoa(verify+1) +
		", above epoch " + itoa(verify) + " that status showed before the database was restored; its soak starts again"))
	// The barrier waits for the new epoch, then the cohort moves on under
	// epochs that were never handed out.
	f.healthyShards("restored")
	f.g.Expect(f.waitStage("restored", "pilot", persistencev1alpha1.StageBackfill).Epoch).To(Equal(verify + 2))
}
