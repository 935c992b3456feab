package charts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The alerts' PromQL is evaluated by Prometheus itself: promtool (from
// Prometheus; make deps installs it) checks the rendered rule groups and
// runs testdata/alerts-promtool.yaml, the unit tests that say, for each
// alert, which series make it fire, with which labels and annotations, and
// which leave it quiet.

const promtoolTests = "testdata/alerts-promtool.yaml"

// promtoolBinary returns $PROMTOOL or the promtool on PATH.
func promtoolBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not on PATH (-short)")
		}
		t.Fatalf("promtool not on PATH: %v\nrun: make deps   (or hack/ensure-prometheus.sh, or set PROMTOOL)", err)
	}
	return p
}

// renderedRuleFile writes the rule groups of the PrometheusRule the
// monitoring values render, as a Prometheus rule file, to dir/rules.yaml.
func renderedRuleFile(t *testing.T, dir string) {
	t.Helper()
	objs := helmTemplate(t, "-f", monitoringValues)
	pr := objs.one(t, "PrometheusRule", "", nil)
	groups, ok := pr.path("spec", "groups").([]any)
	if !ok || len(groups) == 0 {
		t.Fatalf("PrometheusRule has no spec.groups")
	}
	// JSON is YAML; promtool reads it as it reads any rule file.
	b, err := json.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestChartAlertsPassPromtool(t *testing.T) {
	promtool := promtoolBinary(t)
	dir := t.TempDir()
	renderedRuleFile(t, dir)
	tests, err := os.ReadFile(promtoolTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts-test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", "rules.yaml"},
		{"test", "rules", "alerts-test.yaml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryAlertHasAPromtoolCase: an alert without a case where it fires
// is an alert nobody has seen fire; a case for an alert the chart no
// longer has tests nothing (promtool passes a case expecting no alerts of
// an unknown name).
func TestEveryAlertHasAPromtoolCase(t *testing.T) {
	b, err := os.ReadFile(promtoolTests)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				AlertName string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, g := range file.Tests {
		for _, c := range g.AlertRuleTest {
			if !slices.Contains(theAlerts, c.AlertName) {
				t.Errorf("%s: test %q has a case for %q, which is no alert of the chart", promtoolTests, g.Name, c.AlertName)
			}
			if len(c.ExpAlerts) > 0 {
				fires[c.AlertName] = true
			} else {
				quiet[c.AlertName] = true
			}
		}
	}
	for _, a := range theAlerts {
		if !fires[a] {
			t.Errorf("%s has no case where %s fires", promtoolTests, a)
		}
		if !quiet[a] {
			t.Errorf("%s has no case where %s stays quiet", promtoolTests, a)
		}
	}
}
