package metricnames

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yawp/persistence-operator/controllers"
	"github.com/yawp/persistence-operator/internal/gateway"
	"github.com/yawp/persistence-operator/internal/syncer"
)

const runbook = "../../docs/operations.md"

// TestRunbookListsWhatEachProcessExports: the table the platform team
// reads (and the chart's alerts are checked against) names exactly the
// metrics, with exactly the labels, that each process registers; a metric
// added, renamed or relabelled in Go without the table fails here.
func TestRunbookListsWhatEachProcessExports(t *testing.T) {
	doc, err := Runbook(runbook)
	if err != nil {
		t.Fatal(err)
	}
	for process, cs := range map[string][]prometheus.Collector{
		"operator": controllers.Collectors(),
		"gateway":  gateway.NewMetrics().Collectors(),
		"syncer":   syncer.MetricCollectors(),
	} {
		got, err := Describe(cs...)
		if err != nil {
			t.Fatal(err)
		}
		want := doc[process]
		if !slices.EqualFunc(got, want, func(a, b Metric) bool { return a.String() == b.String() }) {
			t.Errorf("%s: the Go collectors export\n  %v\nthe runbook's table lists\n  %v", process, got, want)
		}
		for _, m := range got {
			if !validName(m.Name) {
				t.Errorf("%s: %s is not a valid metric name", process, m.Name)
			}
		}
	}
}

// TestNamesSayTheirKind: the chart's test tells histograms (which an alert
// must read through _bucket, _sum or _count) from the rest by name alone;
// every collector whose type can be told keeps to that convention.
func TestNamesSayTheirKind(t *testing.T) {
	var all []prometheus.Collector
	all = append(all, controllers.Collectors()...)
	all = append(all, gateway.NewMetrics().Collectors()...)
	all = append(all, syncer.MetricCollectors()...)
	checked := 0
	for _, c := range all {
		var kind string
		switch c.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			kind = "histogram"
		case *prometheus.GaugeVec, prometheus.Gauge: // before Counter: a Gauge has a Counter's methods too
			kind = "gauge"
		case *prometheus.CounterVec, prometheus.Counter:
			kind = "counter"
		default:
			continue // a CounterFunc or GaugeFunc: its type is not visible
		}
		ms, err := Describe(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			checked++
			if Kind(m.Name) != kind {
				t.Errorf("%s is a %s, but its name says %s", m.Name, kind, Kind(m.Name))
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d collectors had a visible type", checked)
	}
}

func validName(n string) bool {
	for i, r := range n {
		ok := r == '_' || r == ':' || 'a' <= r && r <= 'z' || i > 0 && '0' <= r && r <= '9'
		if !ok {
			return false
		}
	}
	return n != ""
}
