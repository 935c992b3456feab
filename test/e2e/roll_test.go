package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/contract"
)

// A change of the gateway's pod template (here the syncer's backfill
// rate) reaches the processes as a StatefulSet's RollingUpdate brings it
// to pods: the highest ordinal first, one pod at a time, while the rollout
// says it waits for the rolling update. make dev runs the same stand-in, so
// what the platform team tries there behaves as in a cluster.
func TestATemplateChangeRollsTheGatewayPods(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(90 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx := context.Background()
	ns, _ := rolloutNamespace(g, "e2e-roll", "e2e_roll")
	ro := rolloutIn(ns.Name, "roll", persistencev1alpha1.CohortSpec{Name: "all",
		Buckets: &persistencev1alpha1.BucketRange{From: 0, To: 100}, Soak: metav1.Duration{Duration: time.Hour}})
	ro.Spec.Paused = true
	g.Expect(env.Client.Create(ctx, ro)).To(Succeed())

	ready := func() string {
		var cur persistencev1alpha1.PersistenceRollout
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, persistencev1alpha1.ConditionReady)
		if c == nil {
			return ""
		}
		return c.Message
	}
	g.Eventually(ready).Should(HavePrefix("2/2 gateway pods ready, 2/2 shards report"))
	g.Expect(ready()).NotTo(ContainSubstring("waiting"))
	var sts appsv1.StatefulSet
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "roll-gateway"}, &sts)).To(Succeed())
	before := sts.Status.UpdateRevision
	g.Expect(sts.Status.CurrentRevision).To(Equal(before))

	pids := func() [2]int {
		var out [2]int
		for i := range out {
			out[i], _ = env.ContainerPID(ns.Name, fmt.Sprintf("roll-gateway-%d", i), contract.ContainerSyncer)
		}
		return out
	}
	old := pids()
	g.Expect(old[0]).NotTo(BeZero())
	g.Expect(old[1]).NotTo(BeZero())

	updateSpec(g, ro, func(r *persistencev1alpha1.PersistenceRollout) {
		r.Spec.Gateway.Syncer.BackfillRate = ptrTo(int32(123))
		r.Spec.Gateway.MaxConnections = ptrTo(int32(700))
		r.Spec.Gateway.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	})

	// Watch the processes and the rollout until both pods run new syncers.
	var order []int
	sawWaiting := false
	replaced := [2]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for (!replaced[0] || !replaced[1]) && time.Now().Before(deadline) {
		now := pids()
		for i := range now {
			if !replaced[i] && now[i] != old[i] {
				replaced[i] = true
				order = append(order, i)
				if i == 0 {
					// One pod at a time: pod 1 was back, running its
					// new syncer, when pod 0 went down.
					g.Expect(now[1]).NotTo(BeZero(), "pod 1 runs again before pod 0 is replaced")
					g.Expect(now[1]).NotTo(Equal(old[1]), "pod 1 was replaced before pod 0")
				}
			}
		}
		if strings.Contains(ready(), "during the rolling update to revision") {
			sawWaiting = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.Expect(order).To(Equal([]int{1, 0}), "the highest ordinal first")
	g.Expect(sawWaiting).To(BeTrue(), "the rollout's Ready condition said it waits for the rolling update")

	// Done: the StatefulSet reports every pod on the new revision, the
	// rollout no longer waits, and each syncer runs with the new setting.
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(&sts), &sts)
		return fmt.Sprintf("updated=%d current=%t moved=%t", sts.Status.UpdatedReplicas,
			sts.Status.CurrentRevision == sts.Status.UpdateRevision, sts.Status.UpdateRevision != before)
	}).Should(Equal("updated=2 current=true moved=true"))
	g.Eventually(ready).Should(HavePrefix("2/2 gateway pods ready, 2/2 shards report"))
	g.Expect(ready()).NotTo(ContainSubstring("waiting"))
	environ := func(pid int) [][]byte {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		g.Expect(err).NotTo(HaveOccurred())
		return bytes.Split(b, []byte{0})
	}
	for i, pid := range pids() {
		g.Expect(environ(pid)).To(ContainElements([]byte(contract.EnvBackfillRate+"=123"), []byte(contract.EnvMemoryLimit+"=268435456")),
			"syncer of pod %d", i)
		gw, _ := env.ContainerPID(ns.Name, fmt.Sprintf("roll-gateway-%d", i), contract.ContainerGateway)
		g.Expect(gw).NotTo(BeZero())
		// Its own memory limit (a soft limit for its heap) and the bound
		// on its connections.
		g.Expect(environ(gw)).To(ContainElements([]byte(contract.EnvMemoryLimit+"=268435456"), []byte(contract.EnvSyncMaxConns+"=700")),
			"gateway of pod %d", i)
	}

	// Its pods stop with it.
	g.Expect(env.Client.Delete(ctx, ro)).To(Succeed())
	g.Eventually(func() bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro) != nil
	}).Should(BeTrue())
}
