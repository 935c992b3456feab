package charts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestHelmUpgradeOverAnOlderCRDIsRefusedNotPruned: helm installs crds/ at
// the first install only and never upgrades them. A platform team that
// runs `helm upgrade` with rollout.database.serviceDsn (the syncers'
// restricted role, new in this version) over a release whose CRD predates
// spec.database.serviceSecretRef got a rollout from which the API server
// had dropped the field without a word: the syncers kept the owner's DSN,
// which may disable the ledger's append-only trigger, while the values said
// otherwise. The upgrade is refused instead, saying to apply the CRD.
func TestHelmUpgradeOverAnOlderCRDIsRefusedNotPruned(t *testing.T) {
	helm, kubectl := helmBinary(t), kubectlBinary(t)
	env := &envtest.Environment{BinaryAssetsDirectory: envtestAssets(t)}
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
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
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

	// The release installed, its CRD then as the earlier release left it:
	// without serviceSecretRef.
	b, err := os.ReadFile(chartCRDFile)
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	for _, v := range crd["spec"].(map[string]any)["versions"].([]any) {
		db := dig(t, v, "schema", "openAPIV3Schema", "properties", "spec", "properties", "database", "properties")
		delete(db, "serviceSecretRef")
	}
	delete(dig(t, crd, "metadata", "annotations"), crdRevisionKey) // CRDs then had none
	old, err := yaml.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	oldCRD := filepath.Join(dir, "old-crd.yaml")
	if err := os.WriteFile(oldCRD, old, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := []string{"--namespace", releaseNS}
	values := []string{"-f", "testdata/rollout-values.yaml"}
	must(helm, append(append([]string{"install", releaseName, chart, "--create-namespace"}, ns...), values...)...)
	must(kubectl, "replace", "-f", oldCRD)
	must(kubectl, "wait", "--for=condition=Established", "--timeout=60s", "crd/persistencerollouts.persistence.yawp.dev")

	out, err := do(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...),
		"--set", "rollout.database.serviceDsn=postgres://yawp_syncer@db/yawp")...)
	ref := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "jsonpath={.spec.database.serviceSecretRef}")
	switch {
	case err == nil && ref == "":
		t.Fatalf("helm upgrade with serviceDsn over the earlier CRD succeeded and the rollout has no serviceSecretRef: the syncers keep the owner's DSN\n%s", out)
	case err != nil && !strings.Contains(out, "kubectl apply"):
		t.Errorf("the refused upgrade does not say how to bring the CRD up to date:\n%s", out)
	}

	// A CRD whose revision annotation is below the chart's is refused on
	// that alone (here the chart's own schema, annotated 1): the check
	// follows every change of the schema, not one field.
	var lower map[string]any
	if err := yaml.Unmarshal(b, &lower); err != nil {
		t.Fatal(err)
	}
	dig(t, lower, "metadata", "annotations")[crdRevisionKey] = "1"
	raw, err := yaml.Marshal(lower)
	if err != nil {
		t.Fatal(err)
	}
	lowerCRD := filepath.Join(dir, "lower-crd.yaml")
	if err := os.WriteFile(lowerCRD, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	must(kubectl, "replace", "-f", lowerCRD)
	out, err = do(helm, append(append([]string{"upgrade", releaseName, chart}, ns...), values...)...)
	var ours map[string]any
	if err := yaml.Unmarshal(b, &ours); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("(revision 1) is older than this chart's (revision %s)", dig(t, ours, "metadata", "annotations")[crdRevisionKey])
	if err == nil || !strings.Contains(out, want) {
		t.Errorf("helm upgrade over a CRD of a lower revision: err %v\n%s", err, out)
	}

	// A CRD from before the annotation that has serviceSecretRef counts as
	// revision 2 (older than the chart's since spec.gateway.maxConnections),
	// and one annotated above the chart's (a newer CRD applied by hand,
	// then this chart: a downgrade) is taken as it is.
	for _, c := range []struct {
		name    string
		edit    func(map[string]any)
		refused string // what the refusal says; "": the upgrade goes through
	}{
		{"unannotated", func(m map[string]any) { delete(dig(t, m, "metadata", "annotations"), crdRevisionKey) },
			fmt.Sprintf("(revision 2) is older than this chart's (revision %s)", dig(t, ours, "metadata", "annotations")[crdRevisionKey])},
		{"newer", func(m map[string]any) { dig(t, m, "metadata", "annotations")[crdRevisionKey] = "99" }, ""},
	} {
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		c.edit(m)
		raw, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, c.name+"-crd.yaml")
		if err := os.WriteFile(f, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		must(kubectl, "replace", "-f", f)
		out, err := do(helm, append(append([]string{"upgrade", releaseName, chart}, ns...), values...)...)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("helm upgrade over the %s CRD: %v\n%s", c.name, err, out)
		case c.refused != "" && (err == nil || !strings.Contains(out, c.refused)):
			t.Errorf("helm upgrade over the %s CRD: err %v, want a refusal saying %q\n%s", c.name, err, c.refused, out)
		}
	}

	// With the chart's CRD applied, the same upgrade goes through.
	must(kubectl, "apply", "--server-side", "--force-conflicts", "-f", chartCRDFile)
	must(kubectl, "wait", "--for=condition=Established", "--timeout=60s", "crd/persistencerollouts.persistence.yawp.dev")
	must(helm, append(append(append([]string{"upgrade", releaseName, chart}, ns...), values...),
		"--set", "rollout.database.serviceDsn=postgres://yawp_syncer@db/yawp")...)
	if ref := must(kubectl, "get", "persistencerollout", "demo", "-n", releaseNS, "-o", "jsonpath={.spec.database.serviceSecretRef.key}"); ref != "service-dsn" {
		t.Errorf("after the CRD is applied: serviceSecretRef.key = %q, want service-dsn", ref)
	}
}

func dig(t *testing.T, v any, path ...string) map[string]any {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("CRD: no %s", p)
		}
		v = m[p]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("CRD: %v is no object", path)
	}
	return m
}
