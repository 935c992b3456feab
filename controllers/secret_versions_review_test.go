package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

func (f *fixture) podTemplateAnnotation(name string) func() string {
	return func() string {
		var sts appsv1.StatefulSet
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name + "-gateway"}, &sts); err != nil {
			return ""
		}
		return sts.Spec.Template.Annotations[AnnotationSecretVersions]
	}
}

// TestADeletedTokenSecretDoesNotRollShardsOntoPodsThatCannotStart: the
// token Secret is deleted (by mistake, or "kubectl delete secret && kubectl
// create secret" to rotate it). The running pods hold the key in their
// environment and keep serving; a pod created from a template naming a
// Secret that does not exist never starts (CreateContainerConfigError).
// Rolling the pods onto "tokens@absent" takes a shard down for as long as
// the Secret is missing: the template must stay as it was, as it does for a
// missing serviceSecretRef.
func TestADeletedTokenSecretDoesNotRollShardsOntoPodsThatCannotStart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tokens := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tokens", Namespace: f.ns}, Data: map[string][]byte{"key": []byte("first-key-0123456789abcdef")}}
	f.g.Expect(k8s.Create(ctx, tokens)).To(Succeed())
	ro := f.rollout("tokdel", "pilot")
	ro.Spec.Gateway.TokenSecretRef = &persistencev1alpha1.SecretKeyRef{Name: "tokens", Key: "key"}
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	versions := f.podTemplateAnnotation("tokdel")
	f.g.Eventually(versions).Should(ContainSubstring("tokens"))
	before := versions()

	f.g.Expect(k8s.Delete(ctx, tokens)).To(Succeed())
	f.g.Consistently(versions, "2s").Should(Equal(before), "pods are not rolled onto a Secret that does not exist")
}

// TestRelabelingASecretDoesNotRollTheGateway: a label or annotation on the
// database Secret (a backup tool, a secrets syncer stamping its last sync,
// kubectl label) changes its resourceVersion but not a byte the pods read.
// Every gateway pod restarted for it, and a tool that stamps the Secret
// periodically kept the gateway rolling (and every soak restarting).
func TestRelabelingASecretDoesNotRollTheGateway(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("relabel", "pilot"))).To(Succeed())
	versions := f.podTemplateAnnotation("relabel")
	f.g.Eventually(versions).ShouldNot(BeEmpty())
	before := versions()

	f.g.Eventually(func() error {
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "db"}, &s); err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations["backup.example.com/last-run"] = "2026-11-27T14:00:00Z"
		return k8s.Update(ctx, &s)
	}).Should(Succeed())
	f.g.Consistently(versions, "2s").Should(Equal(before), "an annotation on the Secret is no new password")
}
