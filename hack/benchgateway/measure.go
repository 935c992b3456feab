package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// phase is one load phase (rate 0: closed loop), over every load
// generator process.
type phase struct {
	Rate          float64
	Sent          int
	SentPerSec    float64
	UpdatesPerSec float64
	Samples       int
	P50Ms         float64
	P99Ms         float64
	MaxMs         float64
	// LoadgenCPU is the load generators' CPU use over the warm-up and
	// window, in percent of one core (summed over the processes), and
	// LoadgenMaxCPU the busiest process's.
	LoadgenCPU, LoadgenMaxCPU float64
}

// result is one server's measurement: the load generators' results
// merged, plus the driver's memory and CPU samples.
type result struct {
	Sent, Observed, Lost, Diverged, Reconnects int
	ConnectMs                                  float64
	Phases                                     []phase
	TextBytes                                  int

	BaseKiB, OpenKiB, LoadedKiB int64
	// CPU seconds used during the phases (LoadSecs of wall time) by the
	// server processes, PostgreSQL and the load generators.
	ServerCPU, PostgresCPU, LoadgenCPU, LoadSecs float64
	ProcCPU                                      map[string]float64 // by process name
}

// lgResult is one load generator's "result" line.
type lgResult struct {
	Sent       int       `json:"sent"`
	Observed   int       `json:"observed"`
	Lost       int       `json:"lost"`
	Diverged   int       `json:"diverged"`
	Reconnects int       `json:"reconnects"`
	ConnectMs  float64   `json:"connectMs"`
	TextBytes  int       `json:"textBytes"`
	Phases     []lgPhase `json:"phases"`
}

type lgPhase struct {
	Rate          float64   `json:"rate"`
	Sent          int       `json:"sent"`
	SentPerSec    float64   `json:"sentPerSec"`
	UpdatesPerSec float64   `json:"updatesPerSec"`
	Lat           []float64 `json:"lat"`
	CPUPercent    float64   `json:"loadgenCpuPercent"`
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(math.Floor(p*float64(len(sorted)-1)+0.5)))]
}

// merge adds the load generators' results up; latency percentiles come
// from all their samples together.
func merge(parts []lgResult, phases int) (result, error) {
	var r result
	r.Phases = make([]phase, phases)
	lat := make([][]float64, phases)
	for _, p := range parts {
		if len(p.Phases) != phases {
			return r, fmt.Errorf("a load generator reported %d phases, expected %d", len(p.Phases), phases)
		}
		r.Sent += p.Sent
		r.Observed += p.Observed
		r.Lost += p.Lost
		r.Diverged += p.Diverged
		r.Reconnects += p.Reconnects
		r.ConnectMs = max(r.ConnectMs, p.ConnectMs)
		r.TextBytes += p.TextBytes
		for i, ph := range p.Phases {
			m := &r.Phases[i]
			m.Rate = ph.Rate
			m.Sent += ph.Sent
			m.SentPerSec += ph.SentPerSec
			m.UpdatesPerSec += ph.UpdatesPerSec
			m.LoadgenCPU += ph.CPUPercent
			m.LoadgenMaxCPU = max(m.LoadgenMaxCPU, ph.CPUPercent)
			lat[i] = append(lat[i], ph.Lat...)
		}
	}
	for i := range r.Phases {
		s := lat[i]
		slices.Sort(s)
		r.Phases[i].Samples = len(s)
		r.Phases[i].P50Ms, r.Phases[i].P99Ms = percentile(s, 0.5), percentile(s, 0.99)
		r.Phases[i].MaxMs = math.NaN()
		if len(s) > 0 {
			r.Phases[i].MaxMs = s[len(s)-1]
		}
	}
	return r, nil
}

// shares deals the documents (indexes) out to n load generators.
func shares(docs, n int) [][]int {
	out := make([][]int, n)
	for d := range docs {
		out[d%n] = append(out[d%n], d)
	}
	return out
}

// loadgens are the load generator processes of one measurement, each with
// a share of the documents, driven in lockstep.
type loadgens []*loadgen

func (ls loadgens) expect(ctx context.Context, want string, timeout time.Duration) ([]map[string]any, error) {
	deadline := time.Now().Add(timeout)
	var out []map[string]any
	for _, l := range ls {
		m, err := l.expect(ctx, want, max(time.Until(deadline), time.Second))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (ls loadgens) proceed() error {
	for _, l := range ls {
		if err := l.proceed(); err != nil {
			return err
		}
	}
	return nil
}

func (ls loadgens) stop() {
	for _, l := range ls {
		l.stop()
	}
}

func (ls loadgens) cpuTicks() int64 {
	var t int64
	for _, l := range ls {
		v, _ := cpuTicks(l.cmd.Process.Pid)
		t += v
	}
	return t
}

// server is one side of the comparison: its processes (whose RSS and CPU
// are measured), PostgreSQL's postmaster if it uses one, the load
// generator configuration for a share of the documents, and an optional
// check run while the documents are open after the load.
type server struct {
	name   string
	procs  []*proc
	pgPID  int
	cfgFor func(docs []int) map[string]any
	check  func() error

	ls                 loadgens
	base, open, loaded int64
	serverCPU          []int64 // ticks, per proc
	pgCPU, genCPU      int64
	loadTime           time.Duration
}

// cpu returns the CPU ticks of the server's processes, PostgreSQL and its
// load generators.
func (s *server) cpu() (procs []int64, pg, gen int64) {
	for _, p := range s.procs {
		t, _ := cpuTicks(p.pid())
		procs = append(procs, t)
	}
	if s.pgPID != 0 {
		pg = familyTicks(s.pgPID)
	}
	return procs, pg, s.ls.cpuTicks()
}

// runPhase lets the server's load generators run their next phase and
// adds the CPU time it took.
func (s *server) runPhase(ctx context.Context, o options) error {
	p0, pg0, g0 := s.cpu()
	t0 := time.Now()
	if err := s.ls.proceed(); err != nil {
		return err
	}
	if _, err := s.ls.expect(ctx, "phase", o.warmup+o.duration+2*time.Minute); err != nil {
		return err
	}
	p1, pg1, g1 := s.cpu()
	s.loadTime += time.Since(t0)
	if s.serverCPU == nil {
		s.serverCPU = make([]int64, len(s.procs))
	}
	for i := range p1 {
		s.serverCPU[i] += p1[i] - p0[i]
	}
	s.pgCPU += pg1 - pg0
	s.genCPU += g1 - g0
	return nil
}

// measure runs the same load against every server, interleaved phase by
// phase (the servers alternate which goes first) so that a change in the
// machine's background load falls on both. Each server has o.procs load
// generators (the documents dealt out among them), all connected from the
// start; one server's load runs while the other's clients idle. RSS of
// each server's processes is sampled before any client, with the
// documents open, and after the load; CPU time during its own phases.
func measure(ctx context.Context, o options, script string, servers []*server) ([]result, error) {
	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rss := func(into func(s *server) *int64) error {
		if err := sleep(o.settle); err != nil {
			return err
		}
		for _, s := range servers {
			v, err := totalRSS(s.procs...)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			*into(s) = v
		}
		return nil
	}
	if err := rss(func(s *server) *int64 { return &s.base }); err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range servers {
			s.ls.stop()
		}
	}()
	for _, s := range servers {
		for _, share := range shares(o.docs, o.procs) {
			l, err := startLoadgen(o.node, script, s.cfgFor(share))
			if err != nil {
				return nil, err
			}
			s.ls = append(s.ls, l)
		}
	}
	for _, s := range servers {
		if _, err := s.ls.expect(ctx, "open", 3*time.Minute); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if err := rss(func(s *server) *int64 { return &s.open }); err != nil {
		return nil, err
	}
	for i, rate := range o.phases() {
		for k := range servers {
			s := servers[(i+k)%len(servers)]
			fmt.Fprintf(os.Stderr, "benchgateway: %s, %s\n", s.name, phaseName(rate, o.docs*o.writers))
			if err := s.runPhase(ctx, o); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	for _, s := range servers {
		if err := s.ls.proceed(); err != nil {
			return nil, err
		}
		if _, err := s.ls.expect(ctx, "loaded", time.Minute); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if err := rss(func(s *server) *int64 { return &s.loaded }); err != nil {
		return nil, err
	}
	var out []result
	for _, s := range servers {
		if s.check != nil {
			if err := s.check(); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		if err := s.ls.proceed(); err != nil {
			return nil, err
		}
		ms, err := s.ls.expect(ctx, "result", time.Minute)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		parts := make([]lgResult, len(ms))
		for i, m := range ms {
			raw, _ := json.Marshal(m)
			if err := json.Unmarshal(raw, &parts[i]); err != nil {
				return nil, fmt.Errorf("%s: a load generator's result: %w", s.name, err)
			}
		}
		r, err := merge(parts, len(o.phases()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		r.BaseKiB, r.OpenKiB, r.LoadedKiB, r.LoadSecs = s.base, s.open, s.loaded, s.loadTime.Seconds()
		r.PostgresCPU, r.LoadgenCPU = float64(s.pgCPU)/userHZ, float64(s.genCPU)/userHZ
		r.ProcCPU = map[string]float64{}
		for i, p := range s.procs {
			secs := float64(s.serverCPU[i]) / userHZ
			r.ServerCPU += secs
			r.ProcCPU[p.name] = secs
		}
		out = append(out, r)
	}
	return out, nil
}
