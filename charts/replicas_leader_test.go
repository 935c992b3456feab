package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeveralReplicasWithoutLeaderElectionAreRefused: values.yaml says
// of replicaCount "Only the leader acts; more replicas only shorten a
// fail-over. Keep leaderElection.enabled when above 1", and
// docs/operations.md ("Two leaders") that leader election is what keeps
// one manager acting. With replicaCount 2 and leaderElection.enabled
// false the chart renders, lints and installs two managers that both act
// on every rollout (no --leader-elect), without a word. The chart refuses
// other combinations that cannot work (a ServiceMonitor without metrics)
// with a message; this one should be refused the same way.
func TestSeveralReplicasWithoutLeaderElectionAreRefused(t *testing.T) {
	helm := helmBinary(t)
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, []byte("replicaCount: 2\nleaderElection:\n  enabled: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, helm, "template", releaseName, chart, "--namespace", releaseNS, "--kube-version", kubeVersion, "-f", file)
	if err == nil {
		dep := parseObjects(t, out).one(t, "Deployment", "", nil)
		args, _ := dep.path("spec", "template", "spec", "containers").([]any)[0].(map[string]any)["args"].([]any)
		t.Fatalf("helm template accepted replicaCount 2 with leaderElection.enabled false: %v replicas, manager args %v (no --leader-elect)",
			dep.path("spec", "replicas"), args)
	}
	if !strings.Contains(out, "leaderElection") {
		t.Errorf("helm refused it without naming leaderElection:\n%s", out)
	}
}
