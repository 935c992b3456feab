package controllers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/rolloutctl"
)

// TestApplyingAnUnchangedManifestChangesNothing: the platform team (or
// their GitOps tool) applies the same manifest again and again. The CRD
// defaulted attempt and intent inside each cohort, so the stored list
// never matched the manifest's and every `kubectl apply` was a change
// ("configured"), a write the controller then reconciled. Applying the
// unchanged sample is now "unchanged", and a retry made with yawpctl is
// not undone by the server (a manifest that omits attempt asks for
// nothing: the controller keeps the attempt it is on).
func TestApplyingAnUnchangedManifestChangesNothing(t *testing.T) {
	f := newFixture(t)
	apply := f.sampleApplier()
	f.g.Expect(apply()).To(HaveSuffix(" created"))
	// The controller has added its finalizer meanwhile.
	f.g.Eventually(func() []string { return f.get("demo").Finalizers }).Should(ContainElement(Finalizer))
	f.g.Expect(apply()).To(HaveSuffix(" unchanged"))
	ro := f.get("demo")
	for _, c := range ro.Spec.Cohorts {
		f.g.Expect(c.Attempt).To(BeZero(), "cohort %s: attempt stored although the manifest omits it", c.Name)
		f.g.Expect(c.Intent).To(BeEmpty(), "cohort %s: intent stored although the manifest omits it", c.Name)
	}

	// An approval of a later attempt than the one asked for is still
	// refused when attempt is omitted (it means 1).
	_, err := rolloutctl.Apply(t.Context(), k8s, client.ObjectKeyFromObject(ro), func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		ro.Spec.Cohorts[0].ApprovedAttempt = 2
		return "", nil
	})
	f.g.Expect(err).To(MatchError(ContainSubstring("approvedAttempt cannot be ahead of attempt")))
	_, err = rolloutctl.Apply(t.Context(), k8s, client.ObjectKeyFromObject(ro), func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		ro.Spec.Cohorts[0].ApprovedAttempt = 1
		return "", nil
	})
	f.g.Expect(err).NotTo(HaveOccurred())
}

// TestAYawpctlEditChangesOnlyWhatItSays: `yawpctl rollout` edits sent the
// whole rollout back with an Update, as Go writes it: the manifest's "1m"
// and "10m" came back "1m0s" and "10m0s" and "requireApproval: false"
// vanished, so after any approve, hold or pause the stored cohorts were no
// longer the manifest's. Now an edit is a JSON patch of the fields it
// changed, under yawpctl's own name in managedFields, so a server-side
// apply of the manifest (kubectl apply --server-side, or a GitOps tool
// using it) keeps it; and a rollout changed between the read and the write
// is read again, not overwritten.
func TestAYawpctlEditChangesOnlyWhatItSays(t *testing.T) {
	f := newFixture(t)
	apply := f.sampleApplier("--server-side")
	f.g.Expect(apply()).To(HaveSuffix(" serverside-applied"))
	key := client.ObjectKey{Namespace: f.ns, Name: "demo"}
	spec := func() map[string]any {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(persistencev1alpha1.GroupVersion.WithKind("PersistenceRollout"))
		f.g.Expect(k8s.Get(t.Context(), key, u)).To(Succeed())
		s, _, _ := unstructured.NestedMap(u.Object, "spec")
		return s
	}
	want := spec()

	// Another writer pauses the rollout after yawpctl read it and before
	// yawpctl wrote: the write is refused and the edit decided again on
	// what is there now.
	calls := 0
	msg, err := rolloutctl.Apply(t.Context(), k8s, key, func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		calls++
		if calls == 1 {
			f.g.Expect(k8s.Patch(t.Context(), ro.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":true}}`)))).To(Succeed())
		}
		return rolloutctl.SetIntent("pilot", persistencev1alpha1.IntentHold)(ro)
	})
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(msg).To(Equal("set the intent of cohort pilot to Hold"))
	f.g.Expect(calls).To(BeNumerically(">=", 2), "the write made on a stale read was not refused")

	cohorts := want["cohorts"].([]any)
	cohorts[0].(map[string]any)["intent"] = "Hold"
	want["paused"] = true
	f.g.Expect(spec()).To(Equal(want), "the spec differs from the manifest's in more than the intent yawpctl set and the pause")

	// yawpctl's change is its own in managedFields, so the manifest's
	// next server-side apply, which does not mention intent, keeps it.
	ro := f.get("demo")
	var owners []string
	for _, m := range ro.ManagedFields {
		owners = append(owners, m.Manager)
	}
	f.g.Expect(owners).To(ContainElement(rolloutctl.FieldOwner))
	f.g.Expect(apply()).To(HaveSuffix(" serverside-applied"))
	f.g.Expect(spec()).To(Equal(want))
}

// sampleApplier writes the sample rollout, in the fixture's namespace, to
// a file and returns what applies it with the real kubectl (with flags)
// and answers kubectl's output.
func (f *fixture) sampleApplier(flags ...string) func() string {
	sample, err := os.ReadFile(filepath.Join("..", "config", "samples", "persistence_v1alpha1_persistencerollout.yaml"))
	f.g.Expect(err).NotTo(HaveOccurred())
	manifest := filepath.Join(f.t.TempDir(), "rollout.yaml")
	f.g.Expect(os.WriteFile(manifest, []byte(strings.ReplaceAll(string(sample), "namespace: default", "namespace: "+f.ns)), 0o600)).To(Succeed())
	return func() string {
		args := append(append([]string{"--kubeconfig", kubeconfig, "apply"}, flags...), "-f", manifest)
		out, err := exec.Command(kubectlBinary(), args...).CombinedOutput()
		f.g.Expect(err).NotTo(HaveOccurred(), string(out))
		return strings.TrimSpace(string(out))
	}
}
