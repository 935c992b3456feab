package charts

import (
	"bufio"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/metricnames"
)

// The Prometheus Operator's kinds (monitoring.coreos.com/v1) are not
// installed in envtest and the module does not depend on their Go types, so
// these tests decode the rendered YAML into the small structs below, which
// name every field the chart renders (decoding refuses unknown ones).

const (
	monitoringValues = "testdata/monitoring-values.yaml"
	runbookFile      = "../docs/operations.md"
)

type metricKind string

const (
	counter   metricKind = "counter"
	gauge     metricKind = "gauge"
	histogram metricKind = "histogram"
)

// exportedMetrics is the metrics contract the alerts are written against:
// the table of docs/operations.md (which internal/metricnames checks
// against the processes' Go collectors), the Go and process collectors'
// metrics the alerts use, and up, which Prometheus adds to every target.
func exportedMetrics(t *testing.T) map[string]metricKind {
	t.Helper()
	doc, err := metricnames.Runbook(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]metricKind{"process_start_time_seconds": gauge, "go_goroutines": gauge, "up": gauge}
	for _, ms := range doc {
		for _, m := range ms {
			out[m.Name] = metricKind(metricnames.Kind(m.Name))
		}
	}
	return out
}

// theAlerts are the alerts the platform team gets; each needs a runbook
// section in docs/operations.md.
var theAlerts = []string{
	"PersistenceRolloutDegraded",
	"PersistenceRolloutNotReady",
	"PersistenceRolloutGateRollback",
	"PersistenceRolloutRollbackAbandoned",
	"PersistenceRolloutSchoolsLeftBehind",
	"PersistenceOperatorDown",
	"YawpSyncerDown",
	"YawpGatewayDown",
	"YawpSyncerReportsFailing",
	"YawpSyncerShardReportStalled",
	"YawpGatewayServerErrors",
	"YawpGatewaySyncCommitSlow",
	"YawpGatewaySyncFailures",
	"YawpGatewayUnconfirmedSavesLost",
	"YawpGatewayNearConnectionLimit",
}

type scrapeEndpoint struct {
	Port            string `json:"port"`
	Path            string `json:"path"`
	Scheme          string `json:"scheme"`
	Interval        string `json:"interval,omitempty"`
	ScrapeTimeout   string `json:"scrapeTimeout,omitempty"`
	HonorLabels     bool   `json:"honorLabels,omitempty"`
	BearerTokenFile string `json:"bearerTokenFile,omitempty"`
	TLSConfig       *struct {
		InsecureSkipVerify bool `json:"insecureSkipVerify"`
	} `json:"tlsConfig,omitempty"`
	Authorization *struct {
		Type        string `json:"type"`
		Credentials struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"credentials"`
	} `json:"authorization,omitempty"`
	Relabelings []struct {
		Action       string   `json:"action"`
		SourceLabels []string `json:"sourceLabels"`
		TargetLabel  string   `json:"targetLabel"`
	} `json:"relabelings,omitempty"`
}

type namespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		NamespaceSelector namespaceSelector    `json:"namespaceSelector"`
		Selector          metav1.LabelSelector `json:"selector"`
		Endpoints         []scrapeEndpoint     `json:"endpoints"`
	} `json:"spec"`
}

type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel            string               `json:"jobLabel"`
		NamespaceSelector   namespaceSelector    `json:"namespaceSelector"`
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []scrapeEndpoint     `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func (pr *prometheusRule) alerts() map[string]alertRule {
	out := map[string]alertRule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

func TestChartMonitoringIsOptIn(t *testing.T) {
	objs := helmTemplate(t)
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		if n := len(objs.ofKind(kind)); n != 0 {
			t.Errorf("default values render %d %s: a cluster without the Prometheus Operator's CRDs would refuse the install", n, kind)
		}
	}
	for _, o := range objs.ofKind("ClusterRole") {
		if strings.HasSuffix(o.name(), "-metrics-reader") {
			t.Errorf("default values (metrics.secure false) render ClusterRole %s", o.name())
		}
	}
}

func TestChartServiceMonitorScrapesTheMetricsService(t *testing.T) {
	tests := []struct {
		name string
		args []string
		// wantScheme is the ServiceMonitor's; wantAuth how it authenticates
		// with metrics.secure: "file" (Prometheus's own token) or "secret".
		wantScheme, wantAuth string
	}{
		{"plain HTTP", []string{"--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.labels.release=prom", "--set", "monitoring.serviceMonitor.interval=15s"}, "http", ""},
		{"secure, Prometheus's own token", []string{"-f", monitoringValues}, "https", "file"},
		{"secure, a token Secret", []string{"-f", monitoringValues,
			"--set", "monitoring.serviceMonitor.bearerTokenSecret.name=prom-token", "--set", "monitoring.serviceMonitor.bearerTokenSecret.key=token"}, "https", "secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, tc.args...)
			var sm serviceMonitor
			objs.one(t, "ServiceMonitor", "", &sm)
			var svc corev1.Service
			objs.one(t, "Service", "", &svc)
			var dep appsv1.Deployment
			objs.one(t, "Deployment", "", &dep)

			if sm.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("ServiceMonitor apiVersion = %q", sm.APIVersion)
			}
			if sm.Namespace != releaseNS || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{svc.Namespace}) {
				t.Errorf("ServiceMonitor in %q looks in namespaces %q; the metrics Service is in %q", sm.Namespace, sm.Spec.NamespaceSelector.MatchNames, svc.Namespace)
			}
			if got := sm.Labels["release"]; got != "prom" && got != "kube-prometheus-stack" {
				t.Errorf("ServiceMonitor labels %v lack the values' release label", sm.Labels)
			}
			assertSelects(t, "ServiceMonitor", sm.Spec.Selector, svc.Labels, "the metrics Service")

			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(sm.Spec.Endpoints))
			}
			ep := sm.Spec.Endpoints[0]
			if len(svc.Spec.Ports) != 1 || ep.Port != svc.Spec.Ports[0].Name {
				t.Errorf("ServiceMonitor scrapes port %q; the metrics Service's ports are %v", ep.Port, svc.Spec.Ports)
			}
			if ep.Path != contract.PathMetrics || ep.Scheme != tc.wantScheme {
				t.Errorf("ServiceMonitor scrapes %s %s, want %s %s", ep.Scheme, ep.Path, tc.wantScheme, contract.PathMetrics)
			}
			if ep.Interval != "15s" {
				t.Errorf("ServiceMonitor interval = %q, want the values' 15s", ep.Interval)
			}
			// The rollout metrics' namespace label is the rollout's, and
			// must not be replaced by the operator's.
			if !ep.HonorLabels {
				t.Error("ServiceMonitor does not honour the metrics' labels: the rollout's namespace label would become exported_namespace")
			}

			secure := slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--metrics-secure")
			if secure != (tc.wantScheme == "https") {
				t.Errorf("manager --metrics-secure is %v but the ServiceMonitor scrapes %s", secure, ep.Scheme)
			}
			switch tc.wantAuth {
			case "":
				if ep.TLSConfig != nil || ep.BearerTokenFile != "" || ep.Authorization != nil {
					t.Errorf("plain HTTP endpoint carries TLS or credentials: %+v", ep)
				}
			case "file":
				if ep.BearerTokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" || ep.Authorization != nil {
					t.Errorf("secure endpoint does not present Prometheus's service account token: %+v", ep)
				}
			case "secret":
				if ep.BearerTokenFile != "" || ep.Authorization == nil || ep.Authorization.Type != "Bearer" ||
					ep.Authorization.Credentials.Name != "prom-token" || ep.Authorization.Credentials.Key != "token" {
					t.Errorf("secure endpoint does not present the token of Secret prom-token: %+v", ep)
				}
			}
			if secure && (ep.TLSConfig == nil || !ep.TLSConfig.InsecureSkipVerify) {
				t.Error("secure endpoint verifies the manager's self-signed certificate; the scrape would fail")
			}

			// With --metrics-secure the manager asks the API server whether
			// the scraper may GET /metrics: the readers must be allowed.
			readers := objs.ofKind("ClusterRole")
			readers = slices.DeleteFunc(readers, func(o object) bool { return !strings.HasSuffix(o.name(), "-metrics-reader") })
			if !secure {
				if len(readers) != 0 {
					t.Errorf("metrics.secure is false, yet a metrics-reader ClusterRole is rendered")
				}
				return
			}
			var role rbacv1.ClusterRole
			objs.one(t, "ClusterRole", releaseName+"-metrics-reader", &role)
			want := []rbacv1.PolicyRule{{NonResourceURLs: []string{contract.PathMetrics}, Verbs: []string{"get"}}}
			if !reflect.DeepEqual(role.Rules, want) {
				t.Errorf("metrics-reader rules = %+v, want exactly %+v", role.Rules, want)
			}
			var binding rbacv1.ClusterRoleBinding
			objs.one(t, "ClusterRoleBinding", releaseName+"-metrics-reader", &binding)
			assertBinds(t, binding.RoleRef, binding.Subjects, "ClusterRole", role.Name, "kube-prometheus-stack-prometheus", "monitoring")
		})
	}
}

func TestChartPodMonitorScrapesEveryGatewayPod(t *testing.T) {
	objs := helmTemplate(t, "-f", monitoringValues)
	var pm podMonitor
	objs.one(t, "PodMonitor", "", &pm)

	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Namespace != releaseNS {
		t.Errorf("PodMonitor is %s in %q", pm.APIVersion, pm.Namespace)
	}
	if pm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PodMonitor labels %v lack the values' release label", pm.Labels)
	}
	if !pm.Spec.NamespaceSelector.Any || len(pm.Spec.NamespaceSelector.MatchNames) != 0 {
		t.Errorf("PodMonitor namespaceSelector = %+v, want any: the operator runs gateways in every namespace", pm.Spec.NamespaceSelector)
	}

	// It selects the gateway pods of every rollout, and nothing else: the
	// labels the operator puts on them, none of them per rollout, and at
	// least the two that say "a gateway pod this operator runs".
	assertSelects(t, "PodMonitor", pm.Spec.Selector, contract.GatewayPodLabels, "the operator's gateway pods")
	for _, k := range []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/component"} {
		if _, ok := pm.Spec.Selector.MatchLabels[k]; !ok {
			t.Errorf("PodMonitor selector %v does not select on %s", pm.Spec.Selector.MatchLabels, k)
		}
	}
	// The gateway alerts select the pods' up series by job="yawp-gateway".
	if got := contract.GatewayPodLabels[pm.Spec.JobLabel]; got != "yawp-gateway" {
		t.Errorf("PodMonitor jobLabel %q gives job %q, want yawp-gateway (what the alerts select)", pm.Spec.JobLabel, got)
	}

	var ports []string
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		ports = append(ports, ep.Port)
		if ep.Path != contract.PathMetrics || ep.Scheme != "http" || ep.Interval != "20s" {
			t.Errorf("endpoint %s scrapes %s %s every %q, want http %s every 20s", ep.Port, ep.Scheme, ep.Path, ep.Interval, contract.PathMetrics)
		}
		targets := map[string]string{}
		for _, r := range ep.Relabelings {
			if r.Action == "replace" && len(r.SourceLabels) == 1 {
				targets[r.TargetLabel] = r.SourceLabels[0]
			}
		}
		for label, source := range map[string]string{
			"rollout":   "__meta_kubernetes_pod_label_app_kubernetes_io_instance",
			"container": "__meta_kubernetes_pod_container_name",
			"shard":     "__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index",
		} {
			if targets[label] != source {
				t.Errorf("endpoint %s does not label its series %s from %s (relabelings %+v)", ep.Port, label, source, ep.Relabelings)
			}
		}
	}
	if want := []string{contract.MetricsPortName, contract.SyncerMetricsPortName}; !slices.Equal(ports, want) {
		t.Errorf("PodMonitor scrapes ports %q, want the gateway's and the syncer's %q", ports, want)
	}

	t.Run("restricted to namespaces", func(t *testing.T) {
		var pm podMonitor
		helmTemplate(t, "-f", monitoringValues, "--set", "monitoring.podMonitor.namespaces={school-a,school-b}").one(t, "PodMonitor", "", &pm)
		if want := (namespaceSelector{MatchNames: []string{"school-a", "school-b"}}); !reflect.DeepEqual(pm.Spec.NamespaceSelector, want) {
			t.Errorf("PodMonitor namespaceSelector = %+v, want %+v", pm.Spec.NamespaceSelector, want)
		}
	})
}

func TestChartAlertsHaveRunbooks(t *testing.T) {
	objs := helmTemplate(t, "-f", monitoringValues)
	var pr prometheusRule
	objs.one(t, "PrometheusRule", "", &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Namespace != releaseNS || pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule is %s in %q with labels %v", pr.APIVersion, pr.Namespace, pr.Labels)
	}
	alerts := pr.alerts()
	if got := slices.Sorted(maps.Keys(alerts)); !slices.Equal(got, slices.Sorted(slices.Values(theAlerts))) {
		t.Errorf("alerts = %q, want %q", got, theAlerts)
	}

	headings, links := readRunbook(t)
	const base = "https://runbooks.example.org/persistence-operator/operations.md#"
	for name, a := range alerts {
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("alert %s has no %s annotation", name, k)
			}
		}
		if a.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity label", name)
		}
		if a.Labels["team"] != "platform" {
			t.Errorf("alert %s labels %v lack the values' additionalLabels team=platform", name, a.Labels)
		}
		if a.For == "" {
			t.Errorf("alert %s has no for", name)
		}
		anchor, ok := strings.CutPrefix(a.Annotations["runbook_url"], base)
		switch {
		case !ok:
			t.Errorf("alert %s runbook_url %q is not under monitoring.runbookBaseURL", name, a.Annotations["runbook_url"])
		case !headings[anchor]:
			t.Errorf("alert %s runbook_url points at #%s, which is no heading of %s", name, anchor, runbookFile)
		}
	}
	// The runbook's own links between sections must land too.
	for _, l := range links {
		if !headings[l] {
			t.Errorf("%s links to #%s, which is no heading of it", runbookFile, l)
		}
	}
}

func TestChartAlertSettingsComeFromValues(t *testing.T) {
	objs := helmTemplate(t,
		"--set", "monitoring.prometheusRule.enabled=true",
		"--set", "monitoring.prometheusRule.alerts.YawpSyncerDown.enabled=false",
		"--set", "monitoring.prometheusRule.alerts.YawpGatewayServerErrors.threshold=0.2",
		"--set", "monitoring.prometheusRule.alerts.YawpGatewayServerErrors.for=30m",
		"--set", "monitoring.prometheusRule.alerts.PersistenceRolloutDegraded.severity=critical",
		// an alert's own severity wins over one in additionalLabels
		"--set", "monitoring.prometheusRule.additionalLabels.severity=info",
	)
	var pr prometheusRule
	objs.one(t, "PrometheusRule", "", &pr)
	alerts := pr.alerts()
	if _, ok := alerts["YawpSyncerDown"]; ok {
		t.Error("YawpSyncerDown is rendered although disabled")
	}
	a := alerts["YawpGatewayServerErrors"]
	if a.For != "30m" || !strings.HasSuffix(strings.TrimSpace(a.Expr), "> 0.2") {
		t.Errorf("YawpGatewayServerErrors for %q, expr %q; want for 30m and threshold 0.2", a.For, a.Expr)
	}
	if a.Labels["severity"] != "critical" {
		t.Errorf("YawpGatewayServerErrors severity = %q, want its own (critical) over additionalLabels' info", a.Labels["severity"])
	}
	if got := alerts["PersistenceRolloutDegraded"].Labels["severity"]; got != "critical" {
		t.Errorf("PersistenceRolloutDegraded severity = %q, want the override critical", got)
	}
	if got := alerts["YawpGatewaySyncCommitSlow"].Labels["severity"]; got != "warning" {
		t.Errorf("YawpGatewaySyncCommitSlow severity = %q, want its default warning", got)
	}
}

// TestChartAlertsUseExportedMetrics: an alert on a metric nobody exports
// never fires, and nothing says so. Every series an alert reads must be in
// the contract, histograms must be read through their buckets with
// histogram_quantile summing by le, and the up series must be those of the
// chart's scrape jobs.
func TestChartAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	objs := helmTemplate(t, "-f", monitoringValues)
	var pr prometheusRule
	objs.one(t, "PrometheusRule", "", &pr)
	var svc corev1.Service
	objs.one(t, "Service", "", &svc)

	upJob := regexp.MustCompile(`up\{[^}]*job="([^"]+)"`)
	for name, a := range pr.alerts() {
		names := metricNames(a.Expr)
		if len(names) == 0 {
			t.Errorf("alert %s reads no metric: %q", name, a.Expr)
		}
		for _, n := range names {
			base, kind := n, exported[n]
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && exported[b] == histogram {
					base, kind = b, histogram
				}
			}
			switch {
			case kind == "":
				t.Errorf("alert %s reads %s, which is not an exported metric", name, n)
			case kind == histogram && base == n:
				t.Errorf("alert %s reads histogram %s without a _bucket/_sum/_count suffix", name, n)
			}
		}
		if strings.Contains(a.Expr, "histogram_quantile") &&
			!regexp.MustCompile(`histogram_quantile\(\s*0\.\d+,\s*sum by \([^)]*\ble\b`).MatchString(a.Expr) {
			t.Errorf("alert %s takes a histogram_quantile not over sum by (le, ...): %q", name, a.Expr)
		}
		for _, m := range upJob.FindAllStringSubmatch(a.Expr, -1) {
			// A ServiceMonitor's job is its Service's name; the
			// PodMonitor's comes from the pods' app.kubernetes.io/name.
			if m[1] != svc.Name && m[1] != contract.GatewayPodLabels["app.kubernetes.io/name"] {
				t.Errorf("alert %s reads up of job %q, which none of the chart's monitors scrapes as", name, m[1])
			}
		}
	}
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`max by (namespace, rollout) (persistence_rollout_condition{type="Degraded"}) == 1`:             {"persistence_rollout_condition"},
		`histogram_quantile(0.99, sum by (le, rollout) (rate(a_seconds_bucket{x=~"5.."}[5m]))) > 1e-05`: {"a_seconds_bucket"},
		`(x_total > 0) unless on (pod) (x_total offset 15m) and up{job="j"} == 0`:                       {"up", "x_total"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// metricNames returns the metric names a PromQL expression reads, sorted
// and without duplicates. It knows enough PromQL for alert expressions:
// label matchers, ranges, strings and grouping label lists are dropped, a
// name followed by "(" is a function or an aggregation, and the rest of the
// identifiers are metrics unless they are keywords.
func metricNames(expr string) []string {
	for _, re := range []string{`"(\\.|[^"\\])*"`, `\{[^}]*\}`, `\[[^\]]*\]`, `\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	keywords := []string{"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
	seen := map[string]bool{}
	ident := regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*`)
	for _, loc := range ident.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") || slices.Contains(keywords, strings.ToLower(word)) {
			continue
		}
		seen[word] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// assertSelects checks that a label selector selects an object carrying
// labels: match labels only, each of them on the object.
func assertSelects(t *testing.T, who string, sel metav1.LabelSelector, labels map[string]string, what string) {
	t.Helper()
	if len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) != 0 {
		t.Errorf("%s selector = %+v, want match labels only", who, sel)
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			t.Errorf("%s selects %s=%s, which %s do not carry (%v)", who, k, v, what, labels)
		}
	}
}

// readRunbook returns the anchors of docs/operations.md's headings, as
// GitHub makes them, and the anchors its in-page links point at.
func readRunbook(t *testing.T) (headings map[string]bool, links []string) {
	t.Helper()
	f, err := os.Open(runbookFile)
	if err != nil {
		t.Fatalf("the runbook the alerts link to: %v", err)
	}
	defer func() { _ = f.Close() }()
	headings = map[string]bool{}
	link := regexp.MustCompile(`\]\(#([^)]+)\)`)
	inCode := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			headings[githubAnchor(strings.TrimLeft(h, "#"))] = true
		}
		for _, m := range link.FindAllStringSubmatch(line, -1) {
			links = append(links, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return headings, links
}

// githubAnchor is the anchor GitHub gives a Markdown heading: lower case,
// punctuation other than "-" and "_" dropped, spaces turned into "-".
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGithubAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		" PersistenceRolloutDegraded":             "persistencerolloutdegraded",
		" Profiling the gateway and the syncer":   "profiling-the-gateway-and-the-syncer",
		" `metrics.secure`: HTTPS, tokens (beta)": "metricssecure-https-tokens-beta",
	} {
		if got := githubAnchor(heading); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", heading, got, want)
		}
	}
}
