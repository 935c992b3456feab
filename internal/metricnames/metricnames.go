// Package metricnames ties together the three places a metric's name
// lives: the Go collectors that export it, the table of docs/operations.md
// that tells the platform team about it, and the chart's alerts that read
// it. Its test checks the collectors against the table; the chart's test
// checks the alerts against the table (Runbook).
package metricnames

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric is one metric family: its name and labels (sorted), variable or
// constant (a family split over constant label values, such as the
// syncer's group-commit phases, reads as one labelled family).
type Metric struct {
	Name   string
	Labels []string
}

func (m Metric) String() string {
	if len(m.Labels) == 0 {
		return m.Name
	}
	return m.Name + "{" + strings.Join(m.Labels, ",") + "}"
}

// Kind is what a name says a metric is, by the project's convention:
// counters end in _total, histograms (always of seconds) in _seconds,
// everything else is a gauge.
func Kind(name string) string {
	switch {
	case strings.HasSuffix(name, "_total"):
		return "counter"
	case strings.HasSuffix(name, "_seconds"):
		return "histogram"
	}
	return "gauge"
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	descConst  = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
	constName  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// Describe lists the metric families cs export, from their descriptors
// (nothing is collected). A family described more than once (a counter
// per constant label) is listed once.
func Describe(cs ...prometheus.Collector) ([]Metric, error) {
	ch := make(chan *prometheus.Desc, 16)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	seen := map[string]bool{}
	var out []Metric
	for d := range ch {
		// prometheus.Desc keeps its name private; its String form is
		// the documented way to read it.
		s := d.String()
		n := descName.FindStringSubmatch(s)
		if n == nil {
			return nil, fmt.Errorf("descriptor without a name: %s", s)
		}
		if seen[n[1]] {
			continue
		}
		seen[n[1]] = true
		m := Metric{Name: n[1]}
		if l := descLabels.FindStringSubmatch(s); l != nil && l[1] != "" {
			for _, v := range strings.Split(l[1], ",") {
				m.Labels = append(m.Labels, strings.TrimSpace(v))
			}
		}
		if l := descConst.FindStringSubmatch(s); l != nil {
			for _, c := range constName.FindAllStringSubmatch(l[1], -1) {
				m.Labels = append(m.Labels, c[1])
			}
		}
		slices.Sort(m.Labels)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Metric) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

var (
	tableRow = regexp.MustCompile(`^\| *([a-z]+) *\| (.*)\|$`)
	// A metric name in backticks (every name here has an underscore, which
	// tells it from a label value written the same way).
	inTicks = regexp.MustCompile("`([a-z:]+_[a-z_:]*)(\\{([a-z_,]*)\\})?`")
)

// Runbook reads the "What is exported" table of docs/operations.md: the
// metrics of each process ("operator", "gateway", "syncer") as written
// there, `name{label,label}` in backticks.
func Runbook(path string) (map[string][]Metric, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]Metric{}
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "### What is exported":
			in = true
			continue
		case in && strings.HasPrefix(line, "#"):
			in = false
		}
		if !in {
			continue
		}
		row := tableRow.FindStringSubmatch(line)
		if row == nil || row[1] == "where" {
			continue
		}
		for _, m := range inTicks.FindAllStringSubmatch(row[2], -1) {
			mt := Metric{Name: m[1]}
			if m[3] != "" {
				mt.Labels = strings.Split(m[3], ",")
				slices.Sort(mt.Labels)
			}
			out[row[1]] = append(out[row[1]], mt)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no \"### What is exported\" table", path)
	}
	for p := range out {
		slices.SortFunc(out[p], func(a, b Metric) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, nil
}
