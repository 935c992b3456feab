package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func cohortSpec(name string) persistencev1alpha1.CohortSpec {
	return persistencev1alpha1.CohortSpec{Name: name, Tenants: []string{name + "-school"},
		Soak: metav1.Duration{Duration: time.Minute}, Attempt: 1, Intent: persistencev1alpha1.IntentProceed}
}

func state(stage string, epoch int64) *dataplane.CohortState {
	return &dataplane.CohortState{Stage: stage, Epoch: epoch, Attempt: 1, StageSince: t0, SoakStartedAt: t0, SoakSeenAt: watchedThroughout}
}

// watchedThroughout stands for a controller that saw every report these
// tests play (a seen time after all of them).
var watchedThroughout = t0.Add(1000 * time.Hour)

// healthy: both shards observed the epoch and reported fresh, clean counts.
func healthy(_ int64) summary {
	return summary{shards: 2, observed: 2, fresh: 2, backfillDone: 2, documents: 10, backfilled: 10, verified: 10, checked: 10, covered: 2}
}

func TestPlanCohortTransitions(t *testing.T) {
	gates := persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: time.Minute}}
	withSoakDone := t0.Add(2 * time.Minute)
	tests := []struct {
		name     string
		spec     func(*persistencev1alpha1.CohortSpec)
		rollout  func(*persistencev1alpha1.PersistenceRolloutSpec)
		state    *dataplane.CohortState
		sum      summary
		now      time.Time
		mayStart bool
		mayFlip  bool
		// want
		kind    actionKind
		stage   persistencev1alpha1.Stage
		outcome persistencev1alpha1.Outcome
		wait    string // substring of waitingFor, when no action
		failing string // substring of the failure reported, if any
	}{
		{name: "not started, allowed: freeze", mayStart: true, kind: actFreeze, stage: persistencev1alpha1.StageLegacy},
		{name: "not started, earlier cohort running", mayStart: false, wait: "earlier cohorts"},
		{name: "not started, paused", mayStart: true, rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) { s.Paused = true }, wait: "unpause"},
		{name: "frozen at Legacy: dual-write", state: state("Legacy", 1), mayStart: true, kind: actSetStage, stage: persistencev1alpha1.StageDualWrite},
		{name: "DualWrite waits at the barrier", state: state("DualWrite", 2), sum: summary{shards: 2, observed: 1}, wait: "1/2 shards to observe epoch 2"},
		{name: "DualWrite barrier passed: backfill", state: state("DualWrite", 2), sum: healthy(2), kind: actSetStage, stage: persistencev1alpha1.StageBackfill},
		{name: "Backfill still running", state: state("Backfill", 3), sum: summary{shards: 2, observed: 2, fresh: 2, backfillDone: 1, documents: 10, backfilled: 6}, wait: "backfill to complete on 1/2 shards (6/10 documents)"},
		{name: "Backfill done: verify", state: state("Backfill", 3), sum: healthy(3), kind: actSetStage, stage: persistencev1alpha1.StageVerify},
		{name: "Verify soaking", state: state("Verify", 4), sum: healthy(4), now: t0.Add(30 * time.Second), mayFlip: true, wait: "soak until 2026-11-26T09:01:00Z"},
		{name: "Verify stale reports restart the soak", state: state("Verify", 4), sum: summary{shards: 2, observed: 2, fresh: 1}, now: withSoakDone, mayFlip: true, kind: actRestartSoak, stage: persistencev1alpha1.StageVerify},
		{name: "Verify soaked: flip", state: state("Verify", 4), sum: healthy(4), now: withSoakDone, mayFlip: true, kind: actSetStage, stage: persistencev1alpha1.StageLocalFirst},
		{name: "Verify soaked but earlier cohort not flipped", state: state("Verify", 4), sum: healthy(4), now: withSoakDone, mayFlip: false, wait: "earlier cohorts to complete before the flip"},
		{name: "Verify soaked, approval required", state: state("Verify", 4), sum: healthy(4), now: withSoakDone, mayFlip: true,
			spec: func(c *persistencev1alpha1.CohortSpec) { c.RequireApproval = true },
			wait: "approval of the flip of cohort pilot to local-first: set approvedAttempt: 1 on it (yawpctl rollout approve)"},
		{name: "Verify soaking, paused, approval required", state: state("Verify", 4), sum: healthy(4), now: t0.Add(30 * time.Second), mayFlip: true,
			spec:    func(c *persistencev1alpha1.CohortSpec) { c.RequireApproval = true },
			rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) { s.Paused = true },
			wait:    "unpause; the flip of cohort pilot to local-first then waits for approval: set approvedAttempt: 1 on it (yawpctl rollout approve)"},
		{name: "Verify soaked, approved", state: state("Verify", 4), sum: healthy(4), now: withSoakDone, mayFlip: true,
			spec: func(c *persistencev1alpha1.CohortSpec) { c.RequireApproval, c.ApprovedAttempt = true, 1 }, kind: actSetStage, stage: persistencev1alpha1.StageLocalFirst},
		{name: "LocalFirst post-flip soak passed: complete", state: state("LocalFirst", 5), sum: healthy(5), now: withSoakDone, kind: actSetStage, stage: persistencev1alpha1.StageComplete},
		{name: "Complete, stopLegacyWrites opted in", state: state("Complete", 6), sum: healthy(6), spec: func(c *persistencev1alpha1.CohortSpec) { c.StopLegacyWrites = true },
			kind: actSetStage, stage: persistencev1alpha1.StageLegacyRetired},
		{name: "Complete, stopLegacyWrites, paused", state: state("Complete", 6), sum: healthy(6), spec: func(c *persistencev1alpha1.CohortSpec) { c.StopLegacyWrites = true },
			rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) { s.Paused = true },
			wait:    "unpause to stop legacy writes for cohort pilot, the point of no return (yawpctl rollout resume)"},
		{name: "Complete, stopLegacyWrites, held", state: state("Complete", 6), sum: healthy(6),
			spec: func(c *persistencev1alpha1.CohortSpec) {
				c.StopLegacyWrites, c.Intent = true, persistencev1alpha1.IntentHold
			},
			wait: "intent Hold on cohort pilot to become Proceed to stop legacy writes, the point of no return (yawpctl rollout proceed)"},
		{name: "Complete, stopLegacyWrites, a gate fails", state: state("Complete", 6), sum: func() summary { s := healthy(6); s.mismatched = 3; return s }(),
			spec: func(c *persistencev1alpha1.CohortSpec) { c.StopLegacyWrites = true }, wait: "gates to hold before legacy writes stop"},
		{name: "Complete, stopLegacyWrites, no shard observed Complete", state: state("Complete", 6), sum: summary{shards: 2},
			spec: func(c *persistencev1alpha1.CohortSpec) { c.StopLegacyWrites = true }, wait: "0/2 shards to observe epoch 6 before legacy writes stop"},
		{name: "Complete, stopLegacyWrites, stale reports", state: state("Complete", 6), sum: summary{shards: 2, observed: 2, fresh: 1},
			spec: func(c *persistencev1alpha1.CohortSpec) { c.StopLegacyWrites = true }, wait: "fresh reports from 1/2 shards before legacy writes stop"},
		{name: "gate fails: automatic rollback", state: state("Verify", 4), sum: func() summary { s := healthy(4); s.mismatched = 1; return s }(),
			kind: actSetStage, stage: persistencev1alpha1.StageLegacy, outcome: persistencev1alpha1.OutcomeRolledBack},
		{name: "gate fails on the fresh shards while another is silent: rollback", state: state("Verify", 4),
			sum:  summary{shards: 2, observed: 2, fresh: 1, documents: 5, verified: 5, mismatched: 2, checked: 5, covered: 1},
			kind: actSetStage, stage: persistencev1alpha1.StageLegacy, outcome: persistencev1alpha1.OutcomeRolledBack, failing: "2 mismatched documents"},
		{name: "Complete: open divergences are reported, not acted on", state: state("Complete", 6), sum: func() summary { s := healthy(6); s.divergences = 2; return s }(),
			failing: "after completion: 2 open divergences"},
		{name: "LegacyRetired: a failing gate is reported", state: state("LegacyRetired", 8), sum: func() summary { s := healthy(8); s.divergences = 1; return s }(),
			failing: "after completion: 1 open divergences"},
		{name: "gate fails: manual halt", state: state("Backfill", 3), sum: func() summary { s := healthy(3); s.gaps = 2; return s }(),
			rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) {
				s.RollbackPolicy = persistencev1alpha1.RollbackManual
			},
			kind: actHalt, stage: persistencev1alpha1.StageBackfill, outcome: persistencev1alpha1.OutcomeHalted},
		{name: "gate fails while paused: reported, not acted on but the soak starts again", state: state("Verify", 4), sum: func() summary { s := healthy(4); s.divergences = 1; return s }(),
			rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) { s.Paused = true }, kind: actRestartSoak, stage: persistencev1alpha1.StageVerify},
		{name: "rolled back: waits for a new attempt", state: func() *dataplane.CohortState { s := state("Legacy", 7); s.Outcome = "RolledBack"; return s }(),
			mayStart: true, wait: "set attempt: 2 to try again"},
		{name: "rolled back, attempt raised: dual-write again", state: func() *dataplane.CohortState { s := state("Legacy", 7); s.Outcome = "RolledBack"; return s }(),
			spec: func(c *persistencev1alpha1.CohortSpec) { c.Attempt = 2 }, mayStart: true, kind: actSetStage, stage: persistencev1alpha1.StageDualWrite},
		{name: "halted, attempt raised: resume at the same stage", state: func() *dataplane.CohortState { s := state("Verify", 7); s.Outcome = "Halted"; return s }(),
			spec: func(c *persistencev1alpha1.CohortSpec) { c.Attempt = 2 }, mayStart: true, kind: actSetStage, stage: persistencev1alpha1.StageVerify},
		{name: "intent Rollback acts even while paused", state: state("LocalFirst", 5),
			spec:    func(c *persistencev1alpha1.CohortSpec) { c.Intent = persistencev1alpha1.IntentRollback },
			rollout: func(s *persistencev1alpha1.PersistenceRolloutSpec) { s.Paused = true },
			kind:    actSetStage, stage: persistencev1alpha1.StageLegacy, outcome: persistencev1alpha1.OutcomeRolledBack},
		{name: "intent Hold", state: state("DualWrite", 2), sum: healthy(2), spec: func(c *persistencev1alpha1.CohortSpec) { c.Intent = persistencev1alpha1.IntentHold }, wait: "intent Hold"},
		{name: "LegacyRetired refuses rollback", state: state("LegacyRetired", 8), spec: func(c *persistencev1alpha1.CohortSpec) { c.Intent = persistencev1alpha1.IntentRollback }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := cohortSpec("pilot")
			if tc.spec != nil {
				tc.spec(&spec)
			}
			rs := persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyPerCohort,
				RollbackPolicy: persistencev1alpha1.RollbackAutomatic, Gates: gates}
			if tc.rollout != nil {
				tc.rollout(&rs)
			}
			now := tc.now
			if now.IsZero() {
				now = t0.Add(time.Second)
			}
			sum := tc.sum
			if sum.shards == 0 {
				sum.shards = 2
			}
			cp := planCohort(planInput{now: now, spec: rs}, cohortInput{spec: spec, state: tc.state, sum: sum}, tc.mayStart, tc.mayFlip)
			if tc.failing != "" && !strings.Contains(cp.failing, tc.failing) {
				t.Fatalf("failing = %q, want %q", cp.failing, tc.failing)
			}
			if tc.kind == 0 {
				if cp.act != nil {
					t.Fatalf("want no action, got %+v", *cp.act)
				}
				if !strings.Contains(cp.waitingFor, tc.wait) {
					t.Fatalf("waitingFor = %q, want it to contain %q", cp.waitingFor, tc.wait)
				}
				return
			}
			if cp.act == nil {
				t.Fatalf("want action %v to %s, got none (waiting for %q)", tc.kind, tc.stage, cp.waitingFor)
			}
			if cp.act.kind != tc.kind || cp.act.stage != tc.stage || cp.act.outcome != tc.outcome {
				t.Fatalf("got action kind=%v stage=%s outcome=%q, want kind=%v stage=%s outcome=%q",
					cp.act.kind, cp.act.stage, cp.act.outcome, tc.kind, tc.stage, tc.outcome)
			}
			if tc.state != nil && cp.act.expectEpoch != tc.state.Epoch {
				t.Fatalf("action expects epoch %d, cohort is at %d", cp.act.expectEpoch, tc.state.Epoch)
			}
		})
	}
}

func TestPlanStrategies(t *testing.T) {
	gates := persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: time.Minute}}
	three := []persistencev1alpha1.CohortSpec{cohortSpec("a"), cohortSpec("b"), cohortSpec("c")}
	t.Run("PerCohort starts one cohort at a time", func(t *testing.T) {
		out := plan(planInput{now: t0, spec: persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyPerCohort, Gates: gates, Cohorts: three},
			cohorts: []cohortInput{{spec: three[0], sum: summary{shards: 2}}, {spec: three[1], index: 1, sum: summary{shards: 2}}, {spec: three[2], index: 2, sum: summary{shards: 2}}}})
		if len(out.actions) != 1 || out.actions[0].cohort != "a" || out.current != 0 {
			t.Fatalf("want only cohort a to start, got %+v (current %d)", out.actions, out.current)
		}
	})
	t.Run("DualWriteFirst starts every cohort", func(t *testing.T) {
		out := plan(planInput{now: t0, spec: persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyDualWriteFirst, Gates: gates, Cohorts: three},
			cohorts: []cohortInput{{spec: three[0], sum: summary{shards: 2}}, {spec: three[1], index: 1, sum: summary{shards: 2}}, {spec: three[2], index: 2, sum: summary{shards: 2}}}})
		if len(out.actions) != 3 {
			t.Fatalf("want all three cohorts to start, got %+v", out.actions)
		}
	})
	t.Run("DualWriteFirst flips in order", func(t *testing.T) {
		done := t0.Add(time.Hour)
		out := plan(planInput{now: done, spec: persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyDualWriteFirst, Gates: gates, Cohorts: three},
			cohorts: []cohortInput{
				{spec: three[0], state: state("Verify", 4), sum: healthy(4)},
				{spec: three[1], index: 1, state: state("Verify", 5), sum: healthy(5)},
				{spec: three[2], index: 2, state: state("Verify", 6), sum: healthy(6)},
			}})
		if len(out.actions) != 1 || out.actions[0].cohort != "a" || out.actions[0].stage != persistencev1alpha1.StageLocalFirst {
			t.Fatalf("want only cohort a to flip, got %+v", out.actions)
		}
		if !strings.Contains(out.cohorts[1].waitingFor, "before the flip") {
			t.Fatalf("cohort b should wait for a, waits for %q", out.cohorts[1].waitingFor)
		}
		// Decided on a's soak: a soak restarted meanwhile refuses it.
		if !out.actions[0].expectSoak.Equal(t0) {
			t.Errorf("the flip does not carry the soak start it was decided on: %v", out.actions[0].expectSoak)
		}
	})
	t.Run("a removed cohort on its way holds back starts and flips", func(t *testing.T) {
		for _, strategy := range []persistencev1alpha1.Strategy{persistencev1alpha1.StrategyPerCohort, persistencev1alpha1.StrategyDualWriteFirst} {
			out := plan(planInput{now: t0.Add(time.Hour), spec: persistencev1alpha1.PersistenceRolloutSpec{Strategy: strategy, Gates: gates, Cohorts: three[1:]},
				cohorts: []cohortInput{{spec: three[1], state: state("Verify", 5), sum: healthy(5)}, {spec: three[2], index: 1, sum: summary{shards: 2}}},
				removed: []string{"a"}})
			for _, a := range out.actions {
				if a.kind == actFreeze && strategy == persistencev1alpha1.StrategyPerCohort || a.stage == persistencev1alpha1.StageLocalFirst {
					t.Errorf("%s: %+v went ahead of removed cohort a", strategy, a)
				}
			}
			if !strings.Contains(out.cohorts[0].waitingFor, "cohort a, removed from the spec") {
				t.Errorf("%s: cohort b waits for %q", strategy, out.cohorts[0].waitingFor)
			}
			// c waits for b, which is in the spec and on its way.
			if strategy == persistencev1alpha1.StrategyPerCohort && out.cohorts[1].waitingFor != "earlier cohorts to complete" {
				t.Errorf("cohort c waits for %q", out.cohorts[1].waitingFor)
			}
		}
	})
	t.Run("PerCohort: a cohort moved ahead of the one on its way waits for it", func(t *testing.T) {
		// b was on its way when a person moved c, not started, and a, rolled
		// back, ahead of it.
		rolledBack := &dataplane.CohortState{Stage: "Legacy", Epoch: 3, Attempt: 1, Outcome: dataplane.OutcomeRolledBack, StageSince: t0, SoakStartedAt: t0}
		retried := cohortSpec("a")
		retried.Attempt = 2
		out := plan(planInput{now: t0.Add(time.Hour), spec: persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyPerCohort, Gates: gates,
			Cohorts: []persistencev1alpha1.CohortSpec{three[2], retried, three[1]}},
			cohorts: []cohortInput{{spec: three[2], sum: summary{shards: 2}}, {spec: retried, index: 1, state: rolledBack, sum: healthy(3)},
				{spec: three[1], index: 2, state: state("Verify", 5), sum: healthy(5)}}})
		if len(out.actions) != 1 || out.actions[0].cohort != "b" || out.actions[0].stage != persistencev1alpha1.StageLocalFirst {
			t.Fatalf("want only b to move on (its flip), got %+v", out.actions)
		}
		if want := "cohort b, on its way, to complete (PerCohort moves one cohort at a time)"; out.cohorts[0].waitingFor != want {
			t.Errorf("cohort c waits for %q, want %q", out.cohorts[0].waitingFor, want)
		}
		if out.current != 2 {
			t.Errorf("current is cohort %d, want b (2), the one on its way", out.current)
		}
	})
	t.Run("all complete", func(t *testing.T) {
		out := plan(planInput{now: t0, spec: persistencev1alpha1.PersistenceRolloutSpec{Gates: gates, Cohorts: three[:2]},
			cohorts: []cohortInput{{spec: three[0], state: state("Complete", 4)}, {spec: three[1], index: 1, state: state("Complete", 5)}}})
		if len(out.actions) != 0 || out.current != 1 || !out.cohorts[1].done {
			t.Fatalf("want nothing to do with the last cohort current, got %+v current %d", out.actions, out.current)
		}
	})
}

func TestSummarizeIgnoresStaleAndOtherEpochs(t *testing.T) {
	now := t0.Add(10 * time.Minute)
	reports := []dataplane.ShardReport{
		{Shard: 0, ObservedEpoch: 5, ReportedAt: now, Cohorts: []dataplane.CohortReport{
			{Cohort: "a", Epoch: 5, Documents: 3, Mismatched: 1, ReportedAt: now},
			{Cohort: "b", Epoch: 5, Documents: 50, Mismatched: 9, ReportedAt: now}, // another cohort
		}},
		// Observed the epoch, but its counts are an hour old.
		{Shard: 1, ObservedEpoch: 6, ReportedAt: now, Cohorts: []dataplane.CohortReport{{Cohort: "a", Epoch: 5, Documents: 7, ReportedAt: now.Add(-time.Hour)}}},
		// Beyond the rollout's shards: ignored.
		{Shard: 2, ObservedEpoch: 9, ReportedAt: now, Cohorts: []dataplane.CohortReport{{Cohort: "a", Epoch: 5, Documents: 100, ReportedAt: now}}},
	}
	if s := summarize(reports, 2, "a", 7, now, time.Minute); s.observed != 0 || s.fresh != 0 {
		t.Fatalf("at epoch 7 nothing is observed or fresh, got %+v", s)
	}
	s := summarize(reports, 2, "a", 5, now, time.Minute)
	if s.observed != 2 || s.fresh != 1 || s.documents != 3 || s.mismatched != 1 {
		t.Fatalf("summary = %+v; want 2 observed, 1 fresh at epoch 5, 3 documents, 1 mismatch", s)
	}
}

// TestSoakRestartsWhenReportsWentStaleWhilePausedOrHeld: a soak counts
// only time with fresh reports. If the shards go silent while the cohort
// is held or the rollout paused, the soak starts over once they are back:
// resuming does not flip at once on the strength of silent hours.
func TestSoakRestartsWhenReportsWentStaleWhilePausedOrHeld(t *testing.T) {
	for name, pause := range map[string]func(*persistencev1alpha1.PersistenceRolloutSpec, *persistencev1alpha1.CohortSpec, bool){
		"paused": func(rs *persistencev1alpha1.PersistenceRolloutSpec, _ *persistencev1alpha1.CohortSpec, on bool) {
			rs.Paused = on
		},
		"held": func(_ *persistencev1alpha1.PersistenceRolloutSpec, c *persistencev1alpha1.CohortSpec, on bool) {
			c.Intent = persistencev1alpha1.IntentProceed
			if on {
				c.Intent = persistencev1alpha1.IntentHold
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			rs := persistencev1alpha1.PersistenceRolloutSpec{Strategy: persistencev1alpha1.StrategyPerCohort,
				RollbackPolicy: persistencev1alpha1.RollbackAutomatic,
				Gates:          persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: time.Minute}}}
			spec := cohortSpec("pilot") // soak 1m
			st := state("Verify", 4)    // soak started at t0
			run := func(now time.Time, sum summary) cohortPlan {
				cp := planCohort(planInput{now: now, spec: rs}, cohortInput{spec: spec, state: st, sum: sum}, true, true)
				if cp.act != nil && cp.act.kind == actRestartSoak {
					st.SoakStartedAt = now // what RestartSoak writes
				}
				return cp
			}
			pause(&rs, &spec, true)
			run(t0.Add(10*time.Second), healthy(4))
			for m := 2; m <= 60; m++ { // an hour without reports
				run(t0.Add(time.Duration(m)*time.Minute), summary{shards: 2, observed: 2})
			}
			pause(&rs, &spec, false)
			back := t0.Add(60*time.Minute + 30*time.Second)
			if cp := run(back, healthy(4)); cp.act != nil && cp.act.stage == persistencev1alpha1.StageLocalFirst {
				t.Fatalf("flipped the moment reports came back after an hour without any (soak started %s, 1m soak)", st.SoakStartedAt.Format(time.RFC3339))
			}
			if cp := run(back.Add(2*time.Minute), healthy(4)); cp.act == nil || cp.act.stage != persistencev1alpha1.StageLocalFirst {
				t.Fatalf("a full soak with fresh reports after resuming did not flip: %+v", cp)
			}
		})
	}
}

// TestRetriedAttemptWaitsForTheRealBlocker: after `yawpctl rollout retry`
// raised attempt to 2, a cohort kept from starting it (rollout paused,
// cohort held, or an earlier cohort not done) still told people to "set
// attempt: 2 to try again" (waitingFor, the Degraded and Progressing
// messages, the cohort's message). They did, and nothing changed: the
// message names what it waits for now.
func TestRetriedAttemptWaitsForTheRealBlocker(t *testing.T) {
	gates := persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: time.Minute}}
	rolledBack := &dataplane.CohortState{Stage: "Legacy", Epoch: 7, Attempt: 1, Outcome: dataplane.OutcomeRolledBack, StageSince: t0, SoakStartedAt: t0}
	for _, tc := range []struct {
		name     string
		paused   bool
		intent   persistencev1alpha1.CohortIntent
		mayStart bool
		want     string
		reason   string
	}{
		{name: "paused", paused: true, intent: persistencev1alpha1.IntentProceed, mayStart: true,
			want: "unpause before attempt 2 starts (attempt 1 was rolled back)", reason: persistencev1alpha1.ReasonPaused},
		{name: "held", intent: persistencev1alpha1.IntentHold, mayStart: true,
			want: "intent Hold on cohort pilot to become Proceed before attempt 2 starts (attempt 1 was rolled back)", reason: persistencev1alpha1.ReasonHeld},
		{name: "earlier cohort on its way", intent: persistencev1alpha1.IntentProceed, mayStart: false,
			want: "earlier cohorts to complete before attempt 2 starts (attempt 1 was rolled back)", reason: persistencev1alpha1.ReasonWaitingForCohort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := cohortSpec("pilot")
			spec.Attempt = 2 // what `yawpctl rollout retry` wrote
			spec.Intent = tc.intent
			in := planInput{now: t0, spec: persistencev1alpha1.PersistenceRolloutSpec{Gates: gates, Paused: tc.paused, Cohorts: []persistencev1alpha1.CohortSpec{spec}}}
			c := cohortInput{spec: spec, state: rolledBack, sum: healthy(7)}
			cp := planCohort(in, c, tc.mayStart, tc.mayStart)
			if cp.act != nil {
				t.Fatalf("unexpected action %+v", cp.act)
			}
			if cp.waitingFor != tc.want || cp.reason != tc.reason {
				t.Errorf("attempt is already 2; waiting for %q (%s), want %q (%s)", cp.waitingFor, cp.reason, tc.want, tc.reason)
			}
			if msg := cohortStatus(c, cp).Message; msg != "waiting for "+tc.want {
				t.Errorf("cohort message %q", msg)
			}
		})
	}
	t.Run("not retried yet", func(t *testing.T) {
		spec := cohortSpec("pilot")
		in := planInput{now: t0, spec: persistencev1alpha1.PersistenceRolloutSpec{Gates: gates, Paused: true, Cohorts: []persistencev1alpha1.CohortSpec{spec}}}
		cp := planCohort(in, cohortInput{spec: spec, state: rolledBack, sum: healthy(7)}, true, true)
		if want := "attempt 1 was rolled back: set attempt: 2 to try again (yawpctl rollout retry)"; cp.waitingFor != want || cp.reason != persistencev1alpha1.ReasonAwaitingNewAttempt {
			t.Errorf("waiting for %q (%s), want %q", cp.waitingFor, cp.reason, want)
		}
	})
}
