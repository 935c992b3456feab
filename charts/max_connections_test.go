package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartRendersMaxConnectionsAsAWholeNumberOrNotAtAll:
// rollout.gateway.maxConnections 0 leaves spec.gateway.maxConnections out
// (no bound; the CRD's minimum is 1), and any other value is rendered as
// the whole number it is. From a values file helm reads numbers as
// floats, and a million rendered as 1e+06, a float where the CRD wants an
// integer.
func TestChartRendersMaxConnectionsAsAWholeNumberOrNotAtAll(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		value, want string
	}{{"0", ""}, {"500", "maxConnections: 500\n"}, {"1000000", "maxConnections: 1000000\n"}} {
		values := filepath.Join(t.TempDir(), "values.yaml")
		body := "rollout:\n  enabled: true\n  database:\n    existingSecret: pg-dsn\n  gateway:\n    maxConnections: " + tc.value + "\n"
		if err := os.WriteFile(values, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, helm, "template", releaseName, chart, "--namespace", releaseNS, "--kube-version", kubeVersion, "-f", values)
		if err != nil {
			t.Fatalf("helm template with maxConnections %s: %v\n%s", tc.value, err, out)
		}
		var got string
		for _, line := range strings.SplitAfter(out, "\n") {
			if strings.Contains(line, "maxConnections:") {
				got += strings.TrimSpace(line) + "\n"
			}
		}
		if got != tc.want {
			t.Errorf("maxConnections %s rendered %q, want %q", tc.value, got, tc.want)
		}
	}
	ro := helmTemplate(t, "--set", "rollout.enabled=true", "--set", "rollout.database.existingSecret=pg-dsn", "--set", "rollout.gateway.maxConnections=500").one(t, "PersistenceRollout", "", nil)
	validateAgainstCRD(t, ro)
}
