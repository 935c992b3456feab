package controllers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
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
	sample, err := os.ReadFile(filepath.Join("..", "config", "samples", "persistence_v1alpha1_persistencerollout.yaml"))
	f.g.Expect(err).NotTo(HaveOccurred())
	manifest := filepath.Join(t.TempDir(), "rollout.yaml")
	f.g.Expect(os.WriteFile(manifest, []byte(strings.ReplaceAll(string(sample), "namespace: default", "namespace: "+f.ns)), 0o600)).To(Succeed())
	apply := func() string {
		out, err := exec.Command(kubectlBinary(), "--kubeconfig", kubeconfig, "apply", "-f", manifest).CombinedOutput()
		f.g.Expect(err).NotTo(HaveOccurred(), string(out))
		return strings.TrimSpace(string(out))
	}
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
	_, err = rolloutctl.Apply(t.Context(), k8s, client.ObjectKeyFromObject(ro), func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
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
