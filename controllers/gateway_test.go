package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/contract"
)

// TestProbesTolerateStartup: the gateway and the syncer listen (and so
// answer /healthz) only after the schema migrations, which may wait 30
// minutes for the migration lock and build an index over the whole save
// history. The kubelet must not kill them meanwhile, or a long migration is
// cut short at every start and never finishes; once started, a hung
// process is still found within 30 s.
func TestProbesTolerateStartup(t *testing.T) {
	ro := &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{
			Gateway:  persistencev1alpha1.GatewaySpec{Image: "img", Shards: 2},
			Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "db", Key: "dsn"}},
		},
	}
	budget := func(p *corev1ac.ProbeApplyConfiguration) time.Duration {
		if p == nil {
			return 0
		}
		get := func(v *int32, def int32) int32 {
			if v == nil {
				return def
			}
			return *v
		}
		return time.Duration(get(p.InitialDelaySeconds, 0)+get(p.PeriodSeconds, 10)*get(p.FailureThreshold, 3)) * time.Second
	}
	for _, c := range gatewayStatefulSet(ro, true).Spec.Template.Spec.Containers {
		if c.StartupProbe == nil {
			t.Errorf("%s: no startup probe: killed by its liveness probe %s after start if not listening yet", *c.Name, budget(c.LivenessProbe))
			continue
		}
		if b := budget(c.StartupProbe); b < 30*time.Minute {
			t.Errorf("%s: startup allowed %s, migrations may take 30m", *c.Name, b)
		}
		if b := budget(c.LivenessProbe); b > time.Minute {
			t.Errorf("%s: a hung process is found only after %s", *c.Name, b)
		}
	}
}

// TestContainersLearnOnlyARealMemoryLimit: the syncer sizes its
// collector and its document cache to the memory limit it is told
// (gotune), and the gateway its Go heap's soft limit; without one they
// keep the default collector (the syncer a 512 MiB cache). A container
// without a memory limit must not be told one: the kubelet answers a
// resourceFieldRef to limits.memory with the node's allocatable memory,
// and a syncer told that caches a third of the node.
func TestContainersLearnOnlyARealMemoryLimit(t *testing.T) {
	limitEnv := func(res corev1.ResourceRequirements, container string) *corev1ac.EnvVarApplyConfiguration {
		ro := &persistencev1alpha1.PersistenceRollout{
			ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ns"},
			Spec: persistencev1alpha1.PersistenceRolloutSpec{
				Gateway:  persistencev1alpha1.GatewaySpec{Image: "img", Shards: 2, Resources: res},
				Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "db", Key: "dsn"}},
			},
		}
		for _, c := range gatewayStatefulSet(ro, true).Spec.Template.Spec.Containers {
			if *c.Name != container {
				continue
			}
			for i := range c.Env {
				if *c.Env[i].Name == contract.EnvMemoryLimit {
					return &c.Env[i]
				}
			}
		}
		return nil
	}
	for _, container := range []string{contract.ContainerSyncer, contract.ContainerGateway} {
		for name, res := range map[string]corev1.ResourceRequirements{
			"no resources":     {},
			"requests only":    {Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
			"a cpu limit only": {Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
		} {
			if e := limitEnv(res, container); e != nil {
				t.Errorf("%s: the %s is told a memory limit (%s): the kubelet fills it in with the node's allocatable memory", name, container, *e.Name)
			}
		}
		e := limitEnv(corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}, container)
		if e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || *e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" ||
			e.ValueFrom.ResourceFieldRef.ContainerName != nil {
			t.Errorf("with a memory limit the %s is not told its own: %+v", container, e)
		}
	}
}

// TestGatewayPodsGetImagePullSecrets: a gateway image in a private registry
// needs pull secrets on the pods, or every gateway pod stays in
// ImagePullBackOff. The StatefulSet carries spec.gateway.imagePullSecrets,
// follows edits of them, and drops them when they are removed.
func TestGatewayPodsGetImagePullSecrets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("private", "pilot")
	ro.Spec.Gateway.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry-a"}, {Name: "registry-b"}}
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())

	pullSecrets := func() []string {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "private-gateway"}, &sts); err != nil {
			return []string{err.Error()}
		}
		names := []string{}
		for _, s := range sts.Spec.Template.Spec.ImagePullSecrets {
			names = append(names, s.Name)
		}
		return names
	}
	f.g.Eventually(pullSecrets).Should(Equal([]string{"registry-a", "registry-b"}))

	f.update("private", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Gateway.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry-c"}}
	})
	f.g.Eventually(pullSecrets).Should(Equal([]string{"registry-c"}))

	f.update("private", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Gateway.ImagePullSecrets = nil })
	f.g.Eventually(pullSecrets).Should(BeEmpty())
}
