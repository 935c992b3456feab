package controllers

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// syncersTold is the rollout object UID the gateway template gives its
// syncers, and the database's record of the object serving the rollout.
func (f *fixture) syncersTold(name string) (template, database string) {
	f.t.Helper()
	ctx := context.Background()
	var sts appsv1.StatefulSet
	f.g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name + "-gateway"}, &sts)).To(Succeed())
	for _, e := range sts.Spec.Template.Spec.Containers[1].Env {
		if e.Name == contract.EnvRolloutUID {
			template = e.Value
		}
	}
	_, database, err := dataplane.RegisteredAs(ctx, f.pool, f.ns+"/"+name)
	f.g.Expect(err).NotTo(HaveOccurred())
	return template, database
}

// TestARolloutCreatedAgainIsServedByItsNewObject: a rollout deleted with
// Retain (its gateway keeps serving) and created again takes the
// database over once its template, naming the new object, is applied:
// its syncers take their shards, the old object's take none from then on.
//
// Created again with another shard count, it is refused and its gateway
// kept as it is, serving under the old object: the database must go on
// naming that one, or an old pod that restarts (a crash, an eviction, a
// node drain) takes no shard. A review found the new object recorded at
// registration, before the refusal.
func TestARolloutCreatedAgainIsServedByItsNewObject(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("reuid", "pilot"))).To(Succeed())
	f.walkToVerify("reuid", "pilot")
	oldUID := string(f.get("reuid").UID)
	f.g.Eventually(func() string { _, db := f.syncersTold("reuid"); return db }).Should(Equal(oldUID))
	f.g.Expect(k8s.Delete(ctx, f.get("reuid"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("reuid") }).Should(BeTrue())

	refused := f.rollout("reuid", "pilot")
	refused.Spec.Gateway.Shards = 1
	f.g.Expect(k8s.Create(ctx, refused)).To(Succeed())
	f.g.Eventually(func() string {
		c := condition(f.get("reuid"), persistencev1alpha1.ConditionDegraded)
		if c == nil {
			return ""
		}
		return c.Message
	}).Should(ContainSubstring("shard count differs"))
	tmpl, db := f.syncersTold("reuid")
	if tmpl != oldUID || db != oldUID {
		t.Errorf("refused: the kept gateway's syncers are told %s, the database names %s; want both the old object %s", tmpl, db, oldUID)
	}

	f.g.Expect(k8s.Delete(ctx, f.get("reuid"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("reuid") }).Should(BeTrue())
	f.g.Expect(k8s.Create(ctx, f.rollout("reuid", "pilot"))).To(Succeed())
	newUID := string(f.get("reuid").UID)
	f.g.Eventually(func() string {
		tmpl, db := f.syncersTold("reuid")
		return fmt.Sprint(tmpl, " ", db)
	}).Should(Equal(newUID+" "+newUID), "created again with its shard count: served by the new object")
}
