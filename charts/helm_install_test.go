package charts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// envtestAssets finds kube-apiserver and etcd: KUBEBUILDER_ASSETS (make
// test sets it) or what make envtest built.
func envtestAssets(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	out, err := exec.Command("../hack/build-envtest.sh", "--print-dir").Output()
	dir := strings.TrimSpace(string(out))
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "kube-apiserver"))
	}
	if err != nil {
		if testing.Short() {
			t.Skip("envtest binaries not built (-short)")
		}
		t.Fatalf("envtest binaries: %v (run make envtest, or set KUBEBUILDER_ASSETS)", err)
	}
	return dir
}

// TestHelmInstallUpgradeUninstall runs the chart the way the platform team
// does, with the real helm against a real API server (envtest's
// kube-apiserver and etcd; no kubelet, so nothing runs): every object it
// renders must pass the API server's own validation, the CRD's CEL rules
// included, which helm template and the schema checks above cannot
// promise.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helm, kubectl := helmBinary(t), kubectlBinary(t)
	env := &envtest.Environment{
		BinaryAssetsDirectory: envtestAssets(t),
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: []string{"testdata/monitoring-crds.yaml"}},
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "platform-team", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	do := func(bin string, args ...string) (string, error) {
		t.Helper()
		return runWith(t, kubeconfig, bin, args...)
	}
	must := func(bin string, args ...string) string {
		t.Helper()
		out, err := do(bin, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	values := []string{"-f", "testdata/rollout-values.yaml", "-f", "testdata/monitoring-values.yaml"}
	ns := []string{"--namespace", releaseNS}

	// One helm install: the CRD (from crds/), the operator, its RBAC and
	// Services, the monitors and alerts, the database Secret and a
	// rollout of three cohorts, all accepted by the API server.
	must(helm, append(append([]string{"install", releaseName, chart, "--create-namespace"}, ns...), values...)...)
	must(kubectl, "wait", "--for=condition=Established", "--timeout=60s", "crd/persistencerollouts.persistence.yawp.dev")
	if got := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "jsonpath={.spec.cohorts[*].name} {.spec.gateway.shards} {.spec.strategy}"); got != "pilot grade-schools rest 3 DualWriteFirst" {
		t.Errorf("installed rollout: %q", got)
	}
	for _, kind := range []string{"deployment", "serviceaccount", "service", "secret", "servicemonitor", "podmonitor", "prometheusrule"} {
		if out := must(kubectl, "get", kind, "-n", releaseNS, "-l", "app.kubernetes.io/instance="+releaseName, "-o", "name"); out == "" {
			t.Errorf("helm install made no %s labelled with the release", kind)
		}
	}
	for _, kind := range []string{"clusterrole", "clusterrolebinding"} {
		if out := must(kubectl, "get", kind, "-l", "app.kubernetes.io/instance="+releaseName, "-o", "name"); out == "" {
			t.Errorf("helm install made no %s labelled with the release", kind)
		}
	}

	// An upgrade with a changed setting changes what it renders.
	must(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...),
		"--set", "monitoring.prometheusRule.alerts.YawpGatewayServerErrors.threshold=0.2")...)
	if rules := must(kubectl, "get", "prometheusrule", "-n", releaseNS, "-o", "yaml"); !strings.Contains(rules, "> 0.2") {
		t.Errorf("the upgraded PrometheusRule lacks the new threshold:\n%s", rules)
	}

	// An upgrade the rollout's rules refuse fails with the API server's
	// message, and changes nothing: documents are placed by shard count.
	out, err := do(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...), "--set", "rollout.gateway.shards=4")...)
	if err == nil || !strings.Contains(out, "shards cannot change after creation") {
		t.Errorf("upgrade to 4 shards: err %v, output:\n%s\nwant it refused: shards cannot change after creation", err, out)
	}
	if got := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "jsonpath={.spec.gateway.shards}"); got != "3" {
		t.Errorf("shards after the refused upgrade: %s, want 3", got)
	}

	// Each shard's syncer work, from values, is what the API server stores;
	// an interval the CRD's rule refuses fails the upgrade with its message.
	must(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...),
		"--set", "rollout.gateway.syncer.backfillRate=50", "--set", "rollout.gateway.syncer.fullVerificationInterval=5m",
		"--set", "rollout.gateway.syncer.evidenceGapAfter=30m")...)
	if got := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "jsonpath={.spec.gateway.syncer}"); got != `{"backfillRate":50,"evidenceGapAfter":"30m","fullVerificationInterval":"5m"}` {
		t.Errorf("the rollout's spec.gateway.syncer after an upgrade setting it: %s", got)
	}
	out, err = do(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...), "--set", "rollout.gateway.syncer.fullVerificationInterval=500ms")...)
	if err == nil || !strings.Contains(out, "fullVerificationInterval must be at least 1s") {
		t.Errorf("upgrade to a full verification every 500ms: err %v, output:\n%s\nwant it refused by the CRD's rule", err, out)
	}

	// A second release whose cohorts overlap is refused at install, with
	// the CRD's message.
	out, err = do(helm, "install", "second", chart, "--namespace", "second", "--create-namespace", "--skip-crds",
		"--set", "rollout.enabled=true", "--set", "rollout.database.dsn=postgres://x@db/x",
		"--set", "rollout.cohorts[0].name=a", "--set", "rollout.cohorts[0].buckets.from=0", "--set", "rollout.cohorts[0].buckets.to=60", "--set", "rollout.cohorts[0].soak=1m",
		"--set", "rollout.cohorts[1].name=b", "--set", "rollout.cohorts[1].buckets.from=50", "--set", "rollout.cohorts[1].buckets.to=100", "--set", "rollout.cohorts[1].soak=1m")
	if err == nil || !strings.Contains(out, "overlap") {
		t.Errorf("install with overlapping bucket ranges: err %v, output:\n%s\nwant it refused by the CRD's rule", err, out)
	}

	// helm uninstall removes the operator but keeps the rollout (its
	// stages live on in PostgreSQL; helm.sh/resource-policy: keep) and the
	// CRD (helm never deletes what crds/ installed).
	must(helm, append([]string{"uninstall", releaseName, "--wait", "--timeout", "60s"}, ns...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := must(kubectl, "get", "deployment,service,servicemonitor,podmonitor,prometheusrule", "-n", releaseNS, "-l", "app.kubernetes.io/instance="+releaseName, "-o", "name")
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after helm uninstall these remain:\n%s", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "name"); got != "persistencerollout.persistence.yawp.dev/demo" {
		t.Errorf("after helm uninstall the rollout is %q, want it kept", got)
	}
	if _, err := do(kubectl, "get", "crd", "persistencerollouts.persistence.yawp.dev"); err != nil {
		t.Errorf("after helm uninstall the CRD is gone: %v", err)
	}
}
