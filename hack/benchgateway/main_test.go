package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestParseFlags: defaults are the documented run; bad flags are refused
// with a message naming the flag.
func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.docs != 20 || o.writers != 3 || o.rate != 5 || !o.max || o.duration != 15*time.Second || o.stage != "LocalFirst" {
		t.Fatalf("defaults %+v", o)
	}
	if ph := o.phases(); len(ph) != 2 || ph[0] != 5 || ph[1] != 0 {
		t.Fatalf("phases %v: want the fixed rate, then the closed loop", ph)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-docs", "0"}, "-docs must be"},
		{[]string{"-writers", "-1"}, "-writers must be"},
		{[]string{"-rate", "-5"}, "-rate must be"},
		{[]string{"-rate", "NaN"}, "-rate must be"},
		{[]string{"-duration", "10ms"}, "-duration must be"},
		{[]string{"-warmup", "-1s"}, "-warmup must not"},
		{[]string{"-rate", "0", "-max=false"}, "nothing to measure"},
		{[]string{"-procs", "0"}, "-procs must be"},
		{[]string{"-docs", "2", "-procs", "3"}, "-procs must be"},
		{[]string{"-docs", "x"}, "invalid value"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-stage", "Verify"}, "-stage must be"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestReport: the table has both rows, the ratio row and the durability
// line; ratios are ours/Hocuspocus and n/a when a side has no number.
func TestReport(t *testing.T) {
	o, _ := parseFlags([]string{"-docs", "2", "-writers", "1", "-rate", "10", "-duration", "2s"}, io.Discard)
	r := report{opts: o, hpVersion: "3.4.4",
		oursRes: result{Phases: []phase{{Rate: 10, UpdatesPerSec: 20, P50Ms: 4, P99Ms: 10}, {UpdatesPerSec: 40}},
			BaseKiB: 1000, OpenKiB: 1100, LoadedKiB: 1200, TextBytes: 7},
		hpRes: result{Phases: []phase{{Rate: 10, UpdatesPerSec: 20, P50Ms: 2, P99Ms: 5}, {UpdatesPerSec: 20}},
			BaseKiB: 5000, OpenKiB: 5100, LoadedKiB: 5400},
		committedBytes: 7}
	var b strings.Builder
	r.print(&b)
	out := b.String()
	for _, want := range []string{
		"| ratio ours/Hocuspocus | | 2.00 | 2.00 | 2.00 | 0.50 |",
		"**no**: in memory only, not durable",
		"yes: committed to PostgreSQL",
		"keeps documents only in its process memory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("unexpected warning:\n%s", out)
	}
	if got := ratio(1, 0); got != "n/a" {
		t.Errorf("ratio(1, 0) = %s", got)
	}
}

// TestMerge: the processes' counts add up and the percentiles come from
// all samples together.
func TestMerge(t *testing.T) {
	a := lgResult{Sent: 3, Observed: 3, ConnectMs: 10, TextBytes: 5,
		Phases: []lgPhase{{Rate: 0, Sent: 3, UpdatesPerSec: 100, Lat: []float64{1, 2, 3}, CPUPercent: 40}}}
	b := lgResult{Sent: 2, Observed: 2, ConnectMs: 30, TextBytes: 7,
		Phases: []lgPhase{{Rate: 0, Sent: 2, UpdatesPerSec: 50, Lat: []float64{10, 20}, CPUPercent: 60}}}
	r, err := merge([]lgResult{a, b}, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Phases[0]
	if r.Sent != 5 || r.TextBytes != 12 || r.ConnectMs != 30 || p.UpdatesPerSec != 150 || p.Samples != 5 ||
		p.P50Ms != 3 || p.MaxMs != 20 || p.LoadgenCPU != 100 || p.LoadgenMaxCPU != 60 {
		t.Fatalf("merged %+v, phase %+v", r, p)
	}
	if _, err := merge([]lgResult{a, {}}, 1); err == nil {
		t.Fatal("a result without the phases was merged")
	}
	if got := shares(5, 2); len(got[0]) != 3 || len(got[1]) != 2 {
		t.Fatalf("shares(5, 2) = %v", got)
	}
}
