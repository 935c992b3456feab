package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestARolloutRefusedItsDatabaseGetsNoGateway: one database serves one
// rollout (RegisterRollout refuses a second). The refused rollout was
// reported DataPlaneError, but its gateway StatefulSet was applied all the
// same: its syncers, given the same DSN, would have written the documents
// of the first rollout's shards, placed and fenced by another rollout's
// epochs. It gets no gateway objects, and its status says why; once the
// database is free (the first rollout deleted with RollbackToLegacy, which
// forgets it there) it registers and gets its gateway.
func TestARolloutRefusedItsDatabaseGetsNoGateway(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first := f.rollout("first", "pilot")
	first.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, first)).To(Succeed())
	f.waitStage("first", "pilot", persistencev1alpha1.StageDualWrite)

	// A second rollout names the same database Secret.
	f.g.Expect(k8s.Create(ctx, f.rollout("second", "other"))).To(Succeed())
	f.g.Eventually(func() string { return f.ready("second") }).Should(ContainSubstring("serves another rollout"))
	gatewayObjects := func(name string) []string {
		var found []string
		for _, o := range []struct {
			obj  client.Object
			name string
		}{
			{&appsv1.StatefulSet{}, name + "-gateway"}, {&corev1.Service{}, name + "-gateway"},
			{&corev1.Service{}, name + "-gateway-headless"}, {&policyv1.PodDisruptionBudget{}, name + "-gateway"},
		} {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: o.name}, o.obj)
			if err == nil {
				found = append(found, o.name)
			} else if !apierrors.IsNotFound(err) {
				found = append(found, err.Error())
			}
		}
		return found
	}
	f.g.Consistently(func() []string { return gatewayObjects("second") }, "1500ms").Should(BeEmpty(),
		"a rollout refused its database gets no gateway: two would write the same documents")
	f.g.Expect(gatewayObjects("first")).To(HaveLen(4), "the rollout the database serves keeps its gateway")
	why := "register rollout " + f.ns + "/second: the database already serves rollout " + f.ns + "/first: dataplane: database serves another rollout; " +
		"this rollout gets no gateway while the database serves another (two gateways would write the same documents): " +
		"point spec.database at a database of its own"
	f.g.Eventually(func() string { return f.ready("second") }).Should(Equal("False/DataPlaneError: data plane: " + why))
	f.g.Expect(f.get("second").Status.WaitingFor).To(Equal("the data plane: " + why))
	f.g.Expect(f.get("second").Status.Cohorts).To(BeEmpty(), "nothing of the refused rollout was started")

	// The first rollout goes (no shard reports: no barrier to wait for),
	// and the database is forgotten by it: the second takes it.
	f.g.Expect(k8s.Delete(ctx, f.get("first"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("first") }).Should(BeTrue())
	f.waitStage("second", "other", persistencev1alpha1.StageDualWrite)
	f.g.Eventually(func() []string { return gatewayObjects("second") }).Should(HaveLen(4))
	f.g.Expect(f.ready("second")).NotTo(ContainSubstring("DataPlaneError"))
}
