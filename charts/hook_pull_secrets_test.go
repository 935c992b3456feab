package charts

import (
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

// TestUninstallHookPullsWithSecretsOfItsNamespace: the pre-delete hook
// Job (rollout.keepOnUninstall false) runs in the rollout's namespace, so
// it pulls with the Secrets there, as the gateway does
// (rollout.gateway.imagePullSecrets, defaulting to the operator's). Before,
// it named the operator's, which values.yaml places in the release's
// namespace: from a private registry its pod could not pull the image,
// and `helm uninstall` waited for a Job that never started.
func TestUninstallHookPullsWithSecretsOfItsNamespace(t *testing.T) {
	objs := helmTemplate(t, "-f", "testdata/rollout-values.yaml",
		"--set", "rollout.keepOnUninstall=false",
		"--set", "rollout.namespace=schools",
		"--set", "imagePullSecrets[0].name=operator-registry",
		"--set", "rollout.gateway.imagePullSecrets[0].name=schools-registry")
	var job batchv1.Job
	objs.one(t, "Job", releaseName+"-rollout-delete", &job)
	inNamespace := map[string][]string{
		releaseNS: {"operator-registry"},
		"schools": {"schools-registry"},
	}[job.Namespace]
	for _, s := range job.Spec.Template.Spec.ImagePullSecrets {
		if !slices.Contains(inNamespace, s.Name) {
			t.Errorf("the uninstall hook Job runs in namespace %s and pulls its image with Secret %q, which the values place in another namespace (%s has %q)",
				job.Namespace, s.Name, job.Namespace, inNamespace)
		}
	}
	if len(job.Spec.Template.Spec.ImagePullSecrets) == 0 {
		t.Errorf("the uninstall hook Job in namespace %s pulls the operator image from a private registry without any pull secret", job.Namespace)
	}
}
