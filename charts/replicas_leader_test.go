package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeveralReplicasWithoutLeaderElectionAreRefused: leader election is
// what keeps one manager acting (docs/operations.md, "Two leaders").
// replicaCount 2 with leaderElection.enabled false is refused with a
// message, as other combinations that cannot work are; before, the chart
// rendered two managers that both acted on every rollout.
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
