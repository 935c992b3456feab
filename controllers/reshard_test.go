package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestRecreatedWithOtherShardCountDoesNotReshardTheGateway: deleted with
// Retain, a rollout's stages and gateway stay, and one created again under
// the same name adopts them. The CRD's "shards cannot change" rule compares
// with the old object, so a new one may name another count. The data plane
// refuses it (Degraded, DataPlaneError), but the gateway StatefulSet was
// applied before the data plane was read: scaled to the new count with the
// new YAWP_SHARDS, routing documents by a count they were not placed with.
// The gateway must stay as it is while the recorded count differs.
func TestRecreatedWithOtherShardCountDoesNotReshardTheGateway(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("reshard", "pilot"))).To(Succeed())
	f.walkToVerify("reshard", "pilot")
	f.g.Expect(k8s.Delete(ctx, f.get("reshard"))).To(Succeed())
	f.g.Eventually(func() bool {
		return f.gone("reshard")
	}).Should(BeTrue())

	ro := f.rollout("reshard", "pilot")
	ro.Spec.Gateway.Shards = 1
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.g.Eventually(func() string {
		c := condition(f.get("reshard"), persistencev1alpha1.ConditionDegraded)
		if c == nil {
			return ""
		}
		return c.Reason + ": " + c.Message
	}).Should(ContainSubstring("shard count differs"))
	var sts appsv1.StatefulSet
	f.g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "reshard-gateway"}, &sts)).To(Succeed())
	var env string
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "YAWP_SHARDS" {
			env = e.Value
		}
	}
	f.g.Expect(*sts.Spec.Replicas).To(Equal(int32(2)), "the adopted gateway was scaled to the new shard count (YAWP_SHARDS=%s) although the data plane refuses it", env)
}
