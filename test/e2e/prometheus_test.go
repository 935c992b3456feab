package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/devenv"
)

// A real Prometheus (Debian's prometheus package; make deps installs it)
// scrapes the whole system while the tests run: the manager's /metrics as
// the chart's ServiceMonitor does (job persistence-operator-metrics,
// honorLabels), and both containers of every gateway pod as its PodMonitor
// does (job yawp-gateway; namespace, pod, container, rollout and shard
// labels), discovered from the environment's StatefulSets. It evaluates
// the chart's PrometheusRule, rendered by helm with the monitoring values
// of the chart's tests, every second. The tests ask its HTTP API what a
// platform team's Prometheus would show.

const (
	managerMetricsAddr = "127.0.0.1:27990"
	prometheusAddr     = "127.0.0.1:27991"
	// The release the rules are rendered for; PersistenceOperatorDown
	// selects the operator's up series by its job and namespace.
	promRelease   = "persistence-operator"
	promReleaseNS = "persistence-operator-system"
)

// prom is the Prometheus TestMain started.
var prom *promServer

type promServer struct {
	base    string
	targets string // file_sd file of the gateway pods
	log     string
}

// startPrometheus renders the chart's rules, writes the scrape
// configuration, starts Prometheus in dir and waits until it is ready. It
// keeps the gateway pods' target file current until ctx ends.
func startPrometheus(ctx context.Context, dir string, e *devenv.Env) (*promServer, func(), error) {
	bin := os.Getenv("PROMETHEUS")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("prometheus"); err != nil {
			return nil, nil, fmt.Errorf("prometheus not on PATH (run make deps, or hack/ensure-prometheus.sh, or set PROMETHEUS): %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := renderRules(ctx, filepath.Join(dir, "rules.yaml")); err != nil {
		return nil, nil, err
	}
	p := &promServer{base: "http://" + prometheusAddr, targets: filepath.Join(dir, "gateway-pods.json"), log: filepath.Join(dir, "prometheus.log")}
	if err := p.writeTargets(nil); err != nil {
		return nil, nil, err
	}
	config := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
		"rule_files": []string{"rules.yaml"},
		"scrape_configs": []any{
			map[string]any{
				"job_name":     promRelease + "-metrics",
				"honor_labels": true,
				"static_configs": []any{map[string]any{
					"targets": []string{managerMetricsAddr},
					"labels":  map[string]string{"namespace": promReleaseNS, "pod": promRelease + "-manager"},
				}},
			},
			map[string]any{
				"job_name":        "yawp-gateway",
				"file_sd_configs": []any{map[string]any{"files": []string{p.targets}, "refresh_interval": "1s"}},
			},
		},
	}
	b, err := yaml.Marshal(config)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), b, 0o644); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(p.log)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+prometheusAddr,
		"--log.level=warn")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, nil, fmt.Errorf("start prometheus: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(p.log)
			return nil, nil, fmt.Errorf("prometheus exited:\n%s", b)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			b, _ := os.ReadFile(p.log)
			return nil, nil, fmt.Errorf("prometheus not ready after 30s:\n%s", b)
		}
	}
	go p.discover(ctx, e)
	return p, stop, nil
}

// renderRules writes the rule groups of the chart's PrometheusRule, as
// helm renders them with the chart tests' monitoring values, to path.
func renderRules(ctx context.Context, path string) error {
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = "../../bin/helm"
	}
	out, err := exec.CommandContext(ctx, helm, "template", promRelease, "../../charts/persistence-operator",
		"--namespace", promReleaseNS, "-f", "../../charts/testdata/monitoring-values.yaml",
		"--show-only", "templates/prometheusrule.yaml").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return fmt.Errorf("render the chart's PrometheusRule with %s (run make helm, or set HELM): %w", helm, err)
	}
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &pr); err != nil {
		return err
	}
	if len(pr.Spec.Groups) == 0 {
		return errors.New("the rendered PrometheusRule has no groups")
	}
	b, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// discover keeps the gateway pods' target file equal to the environment's
// pods, as the PodMonitor's service discovery would.
func (p *promServer) discover(ctx context.Context, e *devenv.Env) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		if ts, err := e.ScrapeTargets(ctx); err == nil {
			_ = p.writeTargets(ts)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writeTargets replaces the target file (atomically, only on a change).
func (p *promServer) writeTargets(ts []devenv.ScrapeTarget) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := []group{}
	for _, t := range ts {
		groups = append(groups, group{Targets: []string{t.Addr}, Labels: t.Labels})
	}
	slices.SortFunc(groups, func(a, b group) int {
		switch {
		case a.Targets[0] < b.Targets[0]:
			return -1
		case a.Targets[0] > b.Targets[0]:
			return 1
		}
		return 0
	})
	b, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(p.targets); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp := p.targets + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.targets)
}

// api GETs one of Prometheus's /api/v1 endpoints and decodes its data.
func (p *promServer) api(path string, query url.Values, data any) error {
	u := p.base + "/api/v1/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", path, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// sample is one series of an instant query's answer.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant PromQL query.
func (p *promServer) query(q string) ([]sample, error) {
	var data struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	return data.Result, nil
}

// promTarget is one active scrape target.
type promTarget struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

func (p *promServer) activeTargets() ([]promTarget, error) {
	var data struct {
		Active []promTarget `json:"activeTargets"`
	}
	err := p.api("targets", url.Values{"state": {"active"}}, &data)
	return data.Active, err
}

// promRule is one alerting rule's state.
type promRule struct {
	Name           string  `json:"name"`
	Health         string  `json:"health"`
	LastError      string  `json:"lastError"`
	LastEvaluation string  `json:"lastEvaluation"`
	EvaluationTime float64 `json:"evaluationTime"`
}

func (p *promServer) rules() ([]promRule, error) {
	var data struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("rules", nil, &data); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// promAlert is one pending or firing alert.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

func (a promAlert) String() string {
	return fmt.Sprintf("%s %s %v", a.Labels["alertname"], a.State, a.Labels)
}

// alerts returns the pending and firing alerts whose labels include
// every label of match.
func (p *promServer) alerts(match map[string]string) ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.api("alerts", nil, &data); err != nil {
		return nil, err
	}
	var out []promAlert
outer:
	for _, a := range data.Alerts {
		for k, v := range match {
			if a.Labels[k] != v {
				continue outer
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// TestPrometheusSeesAHealthyRollout: what the platform team's Prometheus
// shows while a rollout goes to Complete on real processes. Every target
// answers (each process's /metrics parses), the series the alerts read are
// there with the labels they select and join on, every alert evaluates
// without error on them, and none is pending or firing.
func TestPrometheusSeesAHealthyRollout(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	ctx := context.Background()
	ns, _ := rolloutNamespace(g, "e2e-prom", "prom")
	ro := rolloutIn(ns.Name, "watched", persistencev1alpha1.CohortSpec{Name: "all", Tenants: []string{"school-p"}, Soak: metav1.Duration{Duration: time.Second}})
	ro.Spec.Gateway.MaxConnections = ptr.To[int32](500) // reaches the gateways' env, and their metrics
	g.Expect(env.Client.Create(ctx, ro)).To(Succeed())
	var gw string
	g.Eventually(func() (err error) { gw, err = env.GatewayURL(ctx, ns.Name, "watched-gateway", 0); return err }).Should(Succeed())
	// The team's traffic reaches pods once they are ready (a Service
	// routes to ready pods only): a save sent earlier could meet a syncer
	// still starting, whose 503 would rightly count toward
	// YawpGatewayServerErrors.
	var cur persistencev1alpha1.PersistenceRollout
	g.Eventually(func() bool {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		return meta.IsStatusConditionTrue(cur.Status.Conditions, persistencev1alpha1.ConditionReady)
	}).Should(BeTrue())
	erin := token(t, "school-p", "erin")
	g.Eventually(func() (int, error) {
		return call(http.MethodPost, gw+"/v1/documents", erin, map[string]string{"content": "lab report"}, nil,
			contract.HeaderIdempotencyKey, "prom-create")
	}).Should(BeElementOf(http.StatusCreated, http.StatusOK))
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		if len(cur.Status.Cohorts) == 0 {
			return "no cohorts yet"
		}
		return fmt.Sprintf("%s ready=%t", cur.Status.Cohorts[0].Stage, meta.IsStatusConditionTrue(cur.Status.Conditions, persistencev1alpha1.ConditionReady))
	}).Should(Equal("Complete ready=true"))

	// Both containers of both pods, and the operator, are scraped.
	g.Eventually(func() ([]string, error) {
		ts, err := prom.activeTargets()
		var got []string
		for _, t := range ts {
			if t.Labels["namespace"] == ns.Name || t.Labels["job"] == promRelease+"-metrics" {
				got = append(got, fmt.Sprintf("%s %s/%s %s %s", t.Labels["job"], t.Labels["pod"], t.Labels["container"], t.Health, t.LastError))
			}
		}
		slices.Sort(got)
		return got, err
	}).Should(Equal([]string{
		"persistence-operator-metrics persistence-operator-manager/ up ",
		"yawp-gateway watched-gateway-0/gateway up ",
		"yawp-gateway watched-gateway-0/syncer up ",
		"yawp-gateway watched-gateway-1/gateway up ",
		"yawp-gateway watched-gateway-1/syncer up ",
	}))

	// The series the alerts read, with the labels they select and join on:
	// the operator's keep the rollout's namespace (honorLabels).
	sel := fmt.Sprintf(`namespace=%q, rollout="watched"`, ns.Name)
	for q, want := range map[string]int{
		`persistence_rollout_condition{` + sel + `, type="Ready"} == 1`:                        1,
		`persistence_rollout_condition{` + sel + `, type="Degraded"} == 0`:                     1,
		`persistence_rollout_cohorts{` + sel + `, stage="Complete"} == 1`:                      1,
		`persistence_rollout_schools_outside_cohorts{` + sel + `} == 0`:                        1,
		`sum by (pod) (increase(yawp_syncer_reports_total{` + sel + `}[10s])) > 0`:             2,
		`sum by (pod) (yawp_syncer_report_errors_total{` + sel + `}) == 0`:                     2,
		`sum by (pod) (yawp_gateway_http_requests_total{` + sel + `, code=~"2.."}) > 0`:        1,
		`up{job="yawp-gateway", ` + sel + `} == 1`:                                             4,
		`up{job="persistence-operator-metrics", namespace="persistence-operator-system"} == 1`: 1,
		`count by (pod) (yawp_gateway_sync_connections{` + sel + `})`:                          2,
		`yawp_gateway_sync_connections_limit{` + sel + `} == 500`:                              2,
		`yawp_gateway_sync_forwarded_connections{` + sel + `} == 0`:                            2,
		`count by (pod) (yawp_syncer_group_commit_seconds_total{` + sel + `, phase="commit"})`: 2,
	} {
		g.Eventually(func() ([]sample, error) { return prom.query(q) }).Should(HaveLen(want), q)
	}

	// Every alert evaluates on these series without an error (a join that
	// matches many-to-many, say, would fail only on real data).
	g.Eventually(func() ([]string, error) {
		rs, err := prom.rules()
		var bad []string
		for _, r := range rs {
			if r.Health != "ok" || r.LastError != "" {
				bad = append(bad, fmt.Sprintf("%s: health %q %s", r.Name, r.Health, r.LastError))
			}
		}
		if len(rs) != 15 {
			bad = append(bad, fmt.Sprintf("%d rules loaded, want 15", len(rs)))
		}
		return bad, err
	}).Should(BeEmpty())

	// A healthy, complete rollout pages nobody: no alert about it, its
	// pods or the operator is pending or firing, and none starts.
	quiet := func() ([]promAlert, error) {
		var all []promAlert
		for _, m := range []map[string]string{{"namespace": ns.Name}, {"rollout": "watched"}, {"namespace": promReleaseNS}} {
			as, err := prom.alerts(m)
			if err != nil {
				return nil, err
			}
			all = append(all, as...)
		}
		return all, nil
	}
	g.Eventually(quiet).Should(BeEmpty())
	g.Consistently(quiet, 5*time.Second, 500*time.Millisecond).Should(BeEmpty())
}
