package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestRolloutDeleteWithASmallTimeoutSaysWhatItWaitsFor: --timeout=0s or
// a negative one is wrong usage (exit 2), and nothing is deleted. Before,
// the timeout also bounded the first read and the delete request, and
// yawpctl exited 1 with nothing but "context deadline exceeded" (the
// chart's hook would pass such a value on; it now refuses it too).
func TestRolloutDeleteWithASmallTimeoutSaysWhatItWaitsFor(t *testing.T) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		t.Skip("KUBEBUILDER_ASSETS not set")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = persistencev1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	u, err := env.AddUser(envtest.User{Name: "platform-team", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "schools"}}); err != nil {
		t.Fatal(err)
	}

	for i, timeout := range []string{"0s", "-1s"} {
		name := []string{"demo", "demo2"}[i]
		ro := &persistencev1alpha1.PersistenceRollout{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "schools",
				// As the operator puts it: the rollout stays until it has
				// carried out the deletionPolicy (it does not run here).
				Finalizers: []string{"persistence.yawp.dev/deletion-policy"}},
			Spec: persistencev1alpha1.PersistenceRolloutSpec{
				Gateway:  persistencev1alpha1.GatewaySpec{Image: "persistence-operator:dev", Shards: 2},
				Gates:    persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: 120e9}},
				Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "demo-database", Key: "dsn"}},
				Cohorts: []persistencev1alpha1.CohortSpec{
					{Name: "pilot", Tenants: []string{"school-1"}, Soak: metav1.Duration{Duration: 10e9}}},
			},
		}
		if err := c.Create(ctx, ro); err != nil {
			t.Fatal(err)
		}
		args := []string{"rollout", "delete", name, "-n", "schools", "--timeout=" + timeout}
		code, stderr := runYawpctl(t, []string{"HOME=" + t.TempDir(), "KUBECONFIG=" + kc}, args...)
		if code == exitUsage {
			continue // refused as out of range: fine
		}
		var got persistencev1alpha1.PersistenceRollout
		if err := c.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			t.Fatal(err)
		}
		if got.DeletionTimestamp == nil || !strings.Contains(stderr, "waits for") {
			t.Errorf("yawpctl %q exited %d, the rollout deletion requested: %v, and said:\n%s\nwant exit %d (a timeout out of range), or the deletion requested and what it waits for",
				args, code, got.DeletionTimestamp != nil, stderr, exitUsage)
		}
	}
}
