package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// This file decides. Nothing here does I/O: plan takes what the controller
// read (the spec, the cohorts' rows in PostgreSQL, the shards' reports, the
// time) and returns what to write and what to tell people.

// actionKind is one kind of data-plane write.
type actionKind int

const (
	actFreeze actionKind = iota + 1
	actSetStage
	actHalt
	actRestartSoak
)

// action is one data-plane write the controller should make.
type action struct {
	kind        actionKind
	cohort      string
	position    int
	selector    dataplane.Selector
	expectEpoch int64
	// expectSoak, unless zero, is the soak start a promotion was decided on.
	expectSoak time.Time
	from       persistencev1alpha1.Stage
	stage      persistencev1alpha1.Stage
	attempt    int32
	outcome    persistencev1alpha1.Outcome
	reason     string
	message    string
}

// summary condenses the shards' reports about one cohort at its current
// epoch.
type summary struct {
	shards   int
	observed int // shards whose observed rollout epoch is >= the cohort epoch
	fresh    int // shards with a fresh report for this cohort at its epoch
	// Totals over the fresh reports.
	documents, backfilled, verified, mismatched, divergences, gaps int64
	backfillDone                                                   int // fresh reports saying backfill is complete
	oldest                                                         time.Time
	samples                                                        []string
	// checked counts, over the fresh reports, the documents each shard's
	// verification has checked (at most its documents: a shard whose
	// students deleted documents since its last pass reports more checked
	// than it has, which covers none of another shard's); covered counts
	// the shards it has checked every document of.
	checked int64
	covered int
	// future counts reports of the cohort stamped further in the future
	// than maxAge: by a syncer of an earlier release, whose node's clock
	// runs ahead (reportFresh); they are not fresh (their age cannot be
	// told).
	future int
}

func (s summary) allObserved() bool { return s.observed >= s.shards }
func (s summary) allFresh() bool    { return s.fresh >= s.shards }

// allVerified: the fresh reports' verification covers every document of
// the cohort: each was checked under the cohort's epoch (found matching,
// or found mismatched, which the mismatch gate judges). Before a pass has
// checked them, a shard reports fewer (none before its first pass at the
// epoch), and nothing has shown the representations agree (I3). Shard
// by shard: one shard's surplus says nothing of another's documents.
func (s summary) allVerified() bool { return s.covered >= s.shards }

// reportFresh says whether a report stamped at is fresh at now, both by
// the data plane's clock: at most maxAge old, and not stamped more than
// maxAge in the future. The data plane stamps reports itself, but a
// syncer of a release before it did stamped its own node's clock, and
// still does during an upgrade: one whose clock runs ahead by more than
// maxAge would otherwise count as fresh long after it went silent.
func reportFresh(at, now time.Time, maxAge time.Duration) bool {
	age := now.Sub(at)
	return age <= maxAge && age >= -maxAge
}

// summarize reads the reports of every shard in [0, shards) for a cohort at
// epoch; reports older than maxAge (relative to now) are not fresh.
func summarize(reports []dataplane.ShardReport, shards int, cohort string, epoch int64, now time.Time, maxAge time.Duration) summary {
	s := summary{shards: shards}
	for _, r := range reports {
		if r.Shard < 0 || r.Shard >= shards {
			continue
		}
		if r.ObservedEpoch >= epoch {
			s.observed++
		}
		for _, c := range r.Cohorts {
			if c.Cohort != cohort || c.Epoch != epoch {
				continue
			}
			if !reportFresh(c.ReportedAt, now, maxAge) {
				if now.Sub(c.ReportedAt) < -maxAge {
					s.future++
				}
				continue
			}
			s.fresh++
			s.documents += c.Documents
			s.backfilled += c.Backfilled
			s.verified += c.Verified
			s.mismatched += c.Mismatched
			s.checked += min(c.Verified+c.Mismatched, c.Documents)
			if c.Verified+c.Mismatched >= c.Documents {
				s.covered++
			}
			s.divergences += c.OpenDivergences
			s.gaps += c.EvidenceGaps
			if c.BackfillComplete {
				s.backfillDone++
			}
			if s.oldest.IsZero() || c.ReportedAt.Before(s.oldest) {
				s.oldest = c.ReportedAt
			}
			for _, id := range c.SampleMismatches {
				if len(s.samples) < 5 {
					s.samples = append(s.samples, id)
				}
			}
		}
	}
	return s
}

// gateFailure says which gate a summary breaks, or "" when all hold.
func gateFailure(s summary, g persistencev1alpha1.IntegrityGates) string {
	switch {
	case s.mismatched > g.MaxMismatches:
		msg := fmt.Sprintf("%d mismatched documents (gate allows %d)", s.mismatched, g.MaxMismatches)
		if len(s.samples) > 0 {
			msg += fmt.Sprintf(", for example %v", s.samples)
		}
		return msg
	case s.divergences > g.MaxOpenDivergences:
		return fmt.Sprintf("%d open divergences (gate allows %d)", s.divergences, g.MaxOpenDivergences)
	case s.gaps > g.MaxEvidenceGaps:
		return fmt.Sprintf("%d evidence gaps (gate allows %d)", s.gaps, g.MaxEvidenceGaps)
	}
	return ""
}

// watchDone reports open divergences in a done cohort's fresh reports
// over its gate: nothing rolls a finished cohort back on its own, but the
// rollout shows it Degraded until they are repaired. Mismatches are not
// watched there: a report counts every one found under the cohort's
// epoch, repaired or not, and a done cohort's epoch never changes, so one
// repair would keep it Degraded for good. Evidence gaps are not either:
// after the flip a student offline for a while is one, as designed.
func watchDone(s summary, g persistencev1alpha1.IntegrityGates) string {
	if s.divergences > g.MaxOpenDivergences {
		return fmt.Sprintf("after completion: %d open divergences (gate allows %d)", s.divergences, g.MaxOpenDivergences)
	}
	return ""
}

// cohortInput is everything plan knows about one cohort.
type cohortInput struct {
	spec  persistencev1alpha1.CohortSpec
	index int
	state *dataplane.CohortState // nil until frozen
	sum   summary
}

// cohortPlan is plan's verdict on one cohort.
type cohortPlan struct {
	act        *action
	waitingFor string // what the cohort waits for, "" when it moves or is done
	reason     string // condition reason describing the wait
	soakEndsAt time.Time
	failing    string // a gate failure seen now, "" if none
	failed     bool   // the attempt ended in rollback or halt
	// retryWaits: a new attempt is asked for (spec.attempt raised) and
	// waits for reason, not for a person to raise attempt.
	retryWaits bool
	done       bool // Complete or LegacyRetired
	requeue    time.Duration
}

// planInput is what plan reads.
type planInput struct {
	now     time.Time
	spec    persistencev1alpha1.PersistenceRolloutSpec
	cohorts []cohortInput
	// removed names cohorts on their way (left Legacy, not done, with
	// members) that are no longer in the spec.
	removed []string
	// poll is how often the controller looks while a cohort soaks: a gap
	// of up to maxReportAge plus poll between two looks is not a silence
	// it missed.
	poll time.Duration
}

// planOutput is what plan decides.
type planOutput struct {
	cohorts []cohortPlan
	current int // index of the cohort people should look at
	actions []action
	requeue time.Duration
}

// isDone reports whether a stage ends the cohort's journey.
func isDone(st persistencev1alpha1.Stage) bool {
	return st == persistencev1alpha1.StageComplete || st == persistencev1alpha1.StageLegacyRetired
}

// plan decides the next data-plane writes for a rollout.
func plan(in planInput) planOutput {
	out := planOutput{cohorts: make([]cohortPlan, len(in.cohorts)), current: -1}
	// earlierDone: every cohort before this one is Complete (or retired).
	// A removed cohort still on its way has lost its place in the order,
	// so it counts as before every other: nothing starts or flips past it
	// (a rename would otherwise start the "new" cohort at once).
	earlierDone := len(in.removed) == 0
	specDone := true // every earlier cohort of the spec is done
	// PerCohort moves one cohort at a time, wherever it sits in the list:
	// moving a cohort not yet started ahead of the one on its way must not
	// start a second one, and must not keep the one on its way from
	// flipping either (it would wait for the other, which waits for it).
	var onWay []int
	for i, c := range in.cohorts {
		if onItsWay(c.state) {
			onWay = append(onWay, i)
		}
	}
	otherOnWay := func(i int) string {
		for _, j := range onWay {
			if j != i {
				return in.cohorts[j].spec.Name
			}
		}
		return ""
	}
	// DualWriteFirst flips one cohort at a time: a cohort moved ahead of
	// one that flipped already waits for it to complete, as the one behind
	// it would have (it used to flip at once, two cohorts soaking
	// local-first together).
	flippedOther := func(i int) string {
		for j, c := range in.cohorts {
			if j != i && stageOf(c.state) == persistencev1alpha1.StageLocalFirst {
				return c.spec.Name
			}
		}
		return ""
	}
	for i, c := range in.cohorts {
		var mayStart, mayFlip bool
		other, flipped := "", ""
		switch in.spec.Strategy {
		case persistencev1alpha1.StrategyDualWriteFirst:
			// A removed cohort on its way holds back new starts too: a
			// rename would otherwise freeze the "new" name at once, with
			// none of the schools the old one holds.
			flipped = flippedOther(i)
			mayStart, mayFlip = len(in.removed) == 0, earlierDone && flipped == ""
		default:
			other = otherOnWay(i)
			mayStart = earlierDone && other == ""
			// Several on their way (the strategy was DualWriteFirst
			// until now): the first in the spec's order goes on, the
			// others wait for it. Each waiting for the others, none
			// ever flipped.
			mayFlip = len(in.removed) == 0 && (other == "" || i == onWay[0])
		}
		cp := planCohort(in, c, mayStart, mayFlip)
		if school, other := listedElsewhere(in.cohorts, i); c.state == nil && school != "" {
			// Frozen, the school would join whichever cohort starts first,
			// not the one the person meant: neither starts until the spec
			// says which.
			cp = cohortPlan{reason: persistencev1alpha1.ReasonInvalidSpec,
				waitingFor: fmt.Sprintf("school %s to be listed in one cohort only (cohorts %s and %s list it)", school, c.spec.Name, other)}
		}
		switch {
		case cp.reason != persistencev1alpha1.ReasonWaitingForCohort:
		case len(in.removed) > 0 && specDone:
			cp.waitingFor = fmt.Sprintf("cohort %s, removed from the spec while on its way, to be added back and completed or rolled back",
				strings.Join(in.removed, ", "))
		case other != "" && earlierDone:
			// Not an earlier cohort: one further down the list.
			cp.waitingFor = fmt.Sprintf("cohort %s, on its way, to complete (PerCohort moves one cohort at a time)", other)
		case flipped != "" && earlierDone:
			cp.waitingFor = fmt.Sprintf("cohort %s, flipped to local-first, to complete before the flip (DualWriteFirst flips one cohort at a time)", flipped)
		}
		out.cohorts[i] = cp
		if cp.act != nil {
			out.actions = append(out.actions, *cp.act)
		}
		if out.current < 0 && !cp.done {
			out.current = i
		}
		if !cp.done {
			earlierDone, specDone = false, false
		}
		if cp.requeue > 0 && (out.requeue == 0 || cp.requeue < out.requeue) {
			out.requeue = cp.requeue
		}
	}
	if out.current < 0 {
		// Every cohort is done: the one to look at is one that still
		// waits to stop legacy writes, else the last.
		out.current = len(in.cohorts) - 1
		for i, cp := range out.cohorts {
			if cp.waitingFor != "" {
				out.current = i
				break
			}
		}
	}
	// The cohort on its way is the one to look at, even when a cohort not
	// started was moved ahead of it.
	if len(onWay) > 0 && !onItsWay(in.cohorts[out.current].state) && in.spec.Strategy != persistencev1alpha1.StrategyDualWriteFirst {
		out.current = onWay[0]
	}
	return out
}

// listedElsewhere returns the first school cohort i lists that another
// cohort lists too, and that cohort; "" when there is none.
func listedElsewhere(cohorts []cohortInput, i int) (school, other string) {
	for _, t := range cohorts[i].spec.Tenants {
		for j, c := range cohorts {
			if j != i && slices.Contains(c.spec.Tenants, t) {
				return t, c.spec.Name
			}
		}
	}
	return "", ""
}

// onItsWay reports whether a cohort's attempt runs: frozen and not done,
// and not ended at Legacy by a rollback (a halted attempt keeps its stage
// and is still on its way: it waits for a person at a stage past Legacy).
func onItsWay(st *dataplane.CohortState) bool {
	if st == nil || isDone(stageOf(st)) {
		return false
	}
	return stageOf(st) != persistencev1alpha1.StageLegacy || st.Outcome == ""
}

// unfinished reports whether a cohort at stage is on its way: it left
// Legacy and is not done, so the controller still has to gate it and
// move it on.
func unfinished(st persistencev1alpha1.Stage) bool {
	return st != "" && st != persistencev1alpha1.StageLegacy && !isDone(st)
}

func stageOf(st *dataplane.CohortState) persistencev1alpha1.Stage {
	if st == nil {
		return ""
	}
	return persistencev1alpha1.Stage(st.Stage)
}

// planCohort decides for one cohort. mayStart says whether the strategy lets
// it leave Legacy, mayFlip whether it may flip to LocalFirst.
func planCohort(in planInput, c cohortInput, mayStart, mayFlip bool) cohortPlan {
	spec, st, sum := c.spec, c.state, c.sum
	gates := in.spec.Gates
	intent := spec.Intent
	if intent == "" {
		intent = persistencev1alpha1.IntentProceed
	}
	wantAttempt := max(spec.Attempt, 1)
	set := func(to persistencev1alpha1.Stage, attempt int32, outcome persistencev1alpha1.Outcome, reason, msg string) *action {
		return &action{kind: actSetStage, cohort: spec.Name, expectEpoch: st.Epoch, from: stageOf(st), stage: to,
			attempt: attempt, outcome: outcome, reason: reason, message: msg}
	}

	// Not started yet.
	if st == nil {
		switch {
		case intent != persistencev1alpha1.IntentProceed:
			return cohortPlan{waitingFor: fmt.Sprintf("intent %s on cohort %s to become Proceed (yawpctl rollout proceed)", intent, spec.Name), reason: persistencev1alpha1.ReasonHeld}
		case !mayStart:
			return cohortPlan{waitingFor: "earlier cohorts to complete", reason: persistencev1alpha1.ReasonWaitingForCohort}
		case in.spec.Paused:
			return cohortPlan{waitingFor: "unpause", reason: persistencev1alpha1.ReasonPaused}
		}
		return cohortPlan{act: &action{kind: actFreeze, cohort: spec.Name, position: c.index, selector: selectorOf(spec),
			stage: persistencev1alpha1.StageLegacy, attempt: 1, reason: "CohortStarted",
			message: fmt.Sprintf("froze the membership of cohort %s", spec.Name)}}
	}

	stage := stageOf(st)
	if stage == persistencev1alpha1.StageLegacyRetired {
		cp := cohortPlan{done: true, failing: watchDone(sum, gates)}
		if intent == persistencev1alpha1.IntentRollback {
			cp.failing = fmt.Sprintf("cohort %s retired legacy writes: a rollback would lose work and is refused", spec.Name)
			cp.reason = persistencev1alpha1.ReasonRollbackRefused
		}
		return cp
	}

	// A person's rollback acts even while paused.
	if intent == persistencev1alpha1.IntentRollback {
		if stage == persistencev1alpha1.StageLegacy && st.Outcome == dataplane.OutcomeRolledBack {
			// Why it was rolled back stays in sight: a gate's failure,
			// not the intent set after it.
			how := "as intent Rollback asks"
			if m := st.OutcomeMessage; m != "" && m != intentRollbackMessage(spec.Name) {
				how = "(" + m + "); intent Rollback keeps it there"
			}
			return cohortPlan{failed: true, reason: persistencev1alpha1.ReasonHeld,
				waitingFor: fmt.Sprintf("intent Proceed and attempt %d to try again (yawpctl rollout retry); it was rolled back to Legacy %s", st.Attempt+1, how)}
		}
		return cohortPlan{failed: true, act: set(persistencev1alpha1.StageLegacy, st.Attempt, persistencev1alpha1.OutcomeRolledBack,
			"RollbackRequested", intentRollbackMessage(spec.Name))}
	}

	// A finished attempt waits for a new one.
	if st.Outcome != "" {
		why := ""
		if st.OutcomeMessage != "" {
			why = " (" + st.OutcomeMessage + ")"
		}
		cp := cohortPlan{failed: true, reason: persistencev1alpha1.ReasonAwaitingNewAttempt,
			waitingFor: fmt.Sprintf("attempt %d %s%s: set attempt: %d to try again (yawpctl rollout retry)", st.Attempt, describeOutcome(st.Outcome), why, st.Attempt+1)}
		if wantAttempt <= st.Attempt {
			return cp
		}
		// The new attempt is asked for: say what it still waits for, not
		// to set what is set already.
		ended := fmt.Sprintf("attempt %d %s", st.Attempt, describeOutcome(st.Outcome))
		blocked := func(reason, format string, args ...any) cohortPlan {
			cp.reason, cp.retryWaits = reason, true
			cp.waitingFor = fmt.Sprintf(format, args...) + fmt.Sprintf(" before attempt %d starts (%s)", wantAttempt, ended)
			return cp
		}
		switch {
		case intent != persistencev1alpha1.IntentProceed:
			return blocked(persistencev1alpha1.ReasonHeld, "intent %s on cohort %s to become Proceed", intent, spec.Name)
		case in.spec.Paused:
			return blocked(persistencev1alpha1.ReasonPaused, "unpause")
		case !mayStart:
			return blocked(persistencev1alpha1.ReasonWaitingForCohort, "earlier cohorts to complete")
		}
		to := stage
		if st.Outcome == dataplane.OutcomeRolledBack {
			to = persistencev1alpha1.StageDualWrite
		}
		cp.act = set(to, wantAttempt, "", "NewAttempt", fmt.Sprintf("started attempt %d of cohort %s at %s", wantAttempt, spec.Name, to))
		return cp
	}

	if isDone(stage) {
		if stage == persistencev1alpha1.StageComplete && spec.StopLegacyWrites && (in.spec.Paused || intent != persistencev1alpha1.IntentProceed) {
			// The one step left is the point of no return, and a person
			// holds it back: say so, or status reads as if nothing were
			// left (Complete), and nobody knows what resuming will do.
			if in.spec.Paused {
				return cohortPlan{done: true, failing: watchDone(sum, gates), reason: persistencev1alpha1.ReasonPaused,
					waitingFor: fmt.Sprintf("unpause to stop legacy writes for cohort %s, the point of no return (yawpctl rollout resume)", spec.Name)}
			}
			return cohortPlan{done: true, failing: watchDone(sum, gates), reason: persistencev1alpha1.ReasonHeld,
				waitingFor: fmt.Sprintf("intent %s on cohort %s to become Proceed to stop legacy writes, the point of no return (yawpctl rollout proceed)", intent, spec.Name)}
		}
		if stage == persistencev1alpha1.StageComplete && spec.StopLegacyWrites {
			// The point of no return is gated like every promotion: every
			// shard observed Complete and reports fresh, and no gate fails.
			switch {
			case !sum.allObserved():
				return cohortPlan{done: true, reason: persistencev1alpha1.ReasonWaitingForBarrier,
					waitingFor: fmt.Sprintf("%d/%d shards to observe epoch %d before legacy writes stop", sum.observed, sum.shards, st.Epoch)}
			case !sum.allFresh():
				return cohortPlan{done: true, reason: persistencev1alpha1.ReasonWaitingForReports,
					waitingFor: fmt.Sprintf("fresh reports from %d/%d shards before legacy writes stop", sum.shards-sum.fresh, sum.shards)}
			}
			if f := gateFailure(sum, gates); f != "" {
				return cohortPlan{done: true, failing: f, reason: persistencev1alpha1.ReasonGateFailed,
					waitingFor: "gates to hold before legacy writes stop: " + f}
			}
			if !sum.allVerified() {
				// The last pass that can find a legacy row changed
				// behind the gateway and merge it: once legacy writes
				// stop, nothing verifies the cohort again. A report at
				// the new epoch that has checked nothing yet shows no
				// mismatch only because it has not looked.
				return cohortPlan{done: true, reason: persistencev1alpha1.ReasonVerifying,
					waitingFor: fmt.Sprintf("verification to check every document before legacy writes stop (%d/%d so far)",
						sum.checked, sum.documents)}
			}
			return cohortPlan{done: true, act: set(persistencev1alpha1.StageLegacyRetired, st.Attempt, "", "LegacyWritesStopped",
				fmt.Sprintf("stopped legacy writes for cohort %s as stopLegacyWrites asks (point of no return)", spec.Name))}
		}
		return cohortPlan{done: true, failing: watchDone(sum, gates)}
	}

	// Gates watch every stage that has a Yjs side under observation. The
	// counts only grow with more shards, so fresh reports from some of
	// them that already break a gate are a failure: a silent shard must
	// not keep a seen mismatch from rolling the cohort back.
	var cp cohortPlan
	if stage != persistencev1alpha1.StageLegacy {
		cp.failing = gateFailure(sum, gates)
	}
	if cp.failing != "" && !in.spec.Paused {
		cp.failed = true
		if in.spec.RollbackPolicy == persistencev1alpha1.RollbackManual {
			cp.act = &action{kind: actHalt, cohort: spec.Name, expectEpoch: st.Epoch, from: stage, stage: stage, attempt: st.Attempt,
				outcome: persistencev1alpha1.OutcomeHalted, reason: persistencev1alpha1.ReasonGateFailed,
				message: fmt.Sprintf("halted cohort %s at %s: %s", spec.Name, stage, cp.failing)}
			return cp
		}
		cp.act = set(persistencev1alpha1.StageLegacy, st.Attempt, persistencev1alpha1.OutcomeRolledBack, persistencev1alpha1.ReasonGateFailed,
			fmt.Sprintf("rolled cohort %s back from %s to Legacy: %s", spec.Name, stage, cp.failing))
		return cp
	}

	return advance(in, c, cp, mayFlip)
}

// advance moves a healthy, running attempt towards its next stage, or says
// what it waits for.
func advance(in planInput, c cohortInput, cp cohortPlan, mayFlip bool) cohortPlan {
	spec, st, sum, now := c.spec, c.state, c.sum, in.now
	stage := stageOf(st)
	intent := spec.Intent
	set := func(to persistencev1alpha1.Stage, reason, msg string) *action {
		return &action{kind: actSetStage, cohort: spec.Name, expectEpoch: st.Epoch, expectSoak: st.SoakStartedAt, from: stage, stage: to,
			attempt: st.Attempt, reason: reason, message: msg}
	}
	wait := func(reason, format string, args ...any) cohortPlan {
		cp.reason, cp.waitingFor = reason, fmt.Sprintf(format, args...)
		return cp
	}
	// A soak counts only time with fresh reports and every gate holding,
	// held or paused too: when reports go stale meanwhile, or a gate fails
	// while paused (which keeps it from rolling the cohort back), the
	// window starts again (the stage does not change; restarting the soak
	// is bookkeeping).
	if (stage == persistencev1alpha1.StageVerify || stage == persistencev1alpha1.StageLocalFirst) &&
		(intent == persistencev1alpha1.IntentHold || in.spec.Paused) && (!sum.allFresh() || cp.failing != "") && st.SoakStartedAt.Before(now) {
		cp.act = &action{kind: actRestartSoak, cohort: spec.Name, expectEpoch: st.Epoch, from: stage, stage: stage}
	}
	// Fresh reports now say nothing of a silence the controller did not
	// watch (it was down, or could not reach the database): a soak whose
	// reports were last seen fresh longer than maxReportAge (and a poll)
	// ago starts again, as it would have had the controller seen the
	// silence.
	if (stage == persistencev1alpha1.StageVerify || stage == persistencev1alpha1.StageLocalFirst) && sum.allFresh() {
		watched := st.SoakStartedAt
		if st.SoakSeenAt.After(watched) {
			watched = st.SoakSeenAt
		}
		if now.Sub(watched) > in.spec.Gates.MaxReportAge.Duration+in.poll {
			cp.act = &action{kind: actRestartSoak, cohort: spec.Name, expectEpoch: st.Epoch, from: stage, stage: stage}
			return wait(persistencev1alpha1.ReasonSoaking, "the soak to start again: reports were last seen fresh at %s", watched.UTC().Format(time.RFC3339))
		}
	}
	// The flip's approval is asked for as soon as the flip is next: a
	// person who resumes a paused rollout (or releases a hold) learns
	// there is one more thing to do, not only after the soak.
	approval := ""
	if stage == persistencev1alpha1.StageVerify && spec.RequireApproval && spec.ApprovedAttempt != st.Attempt {
		approval = fmt.Sprintf("; the flip of cohort %s to local-first then waits for approval: set approvedAttempt: %d on it (yawpctl rollout approve)",
			spec.Name, st.Attempt)
	}
	if intent == persistencev1alpha1.IntentHold {
		return wait(persistencev1alpha1.ReasonHeld, "intent Hold on cohort %s to become Proceed (yawpctl rollout proceed)%s", spec.Name, approval)
	}
	if in.spec.Paused {
		return wait(persistencev1alpha1.ReasonPaused, "unpause%s", approval)
	}
	// Every stage after Legacy waits for its barrier first.
	if stage != persistencev1alpha1.StageLegacy && !sum.allObserved() {
		return wait(persistencev1alpha1.ReasonWaitingForBarrier, "%d/%d shards to observe epoch %d", sum.observed, sum.shards, st.Epoch)
	}

	switch stage {
	case persistencev1alpha1.StageLegacy:
		cp.act = set(persistencev1alpha1.StageDualWrite, "DualWriteStarted",
			fmt.Sprintf("cohort %s writes both representations", spec.Name))
	case persistencev1alpha1.StageDualWrite:
		cp.act = set(persistencev1alpha1.StageBackfill, "BarrierPassed",
			fmt.Sprintf("all %d shards observed epoch %d; backfilling cohort %s", sum.shards, st.Epoch, spec.Name))
	case persistencev1alpha1.StageBackfill:
		if !sum.allFresh() || sum.backfillDone < sum.shards {
			return wait(persistencev1alpha1.ReasonBackfilling, "backfill to complete on %d/%d shards (%d/%d documents)",
				sum.shards-min(sum.shards, sum.backfillDone), sum.shards, sum.backfilled, sum.documents)
		}
		cp.act = set(persistencev1alpha1.StageVerify, "BackfillComplete",
			fmt.Sprintf("backfilled %d documents of cohort %s; verifying", sum.backfilled, spec.Name))
	case persistencev1alpha1.StageVerify, persistencev1alpha1.StageLocalFirst:
		soak := spec.Soak.Duration
		if stage == persistencev1alpha1.StageLocalFirst && spec.PostFlipSoak != nil {
			soak = spec.PostFlipSoak.Duration
		}
		if !sum.allFresh() {
			// Without fresh reports nobody can say the gates held: the
			// soak window starts again once they are back.
			if st.SoakStartedAt.Before(now) {
				cp.act = &action{kind: actRestartSoak, cohort: spec.Name, expectEpoch: st.Epoch, from: stage, stage: stage}
			}
			if sum.future > 0 {
				return wait(persistencev1alpha1.ReasonWaitingForReports,
					"fresh reports from %d/%d shards (%d stamped more than %s in the future: check the clocks of their nodes)",
					sum.shards-sum.fresh, sum.shards, sum.future, in.spec.Gates.MaxReportAge.Duration)
			}
			return wait(persistencev1alpha1.ReasonWaitingForReports, "fresh reports from %d/%d shards", sum.shards-sum.fresh, sum.shards)
		}
		cp.soakEndsAt = st.SoakStartedAt.Add(soak)
		if now.Before(cp.soakEndsAt) {
			cp.requeue = cp.soakEndsAt.Sub(now)
			return wait(persistencev1alpha1.ReasonSoaking, "soak until %s", cp.soakEndsAt.UTC().Format(time.RFC3339))
		}
		if !sum.allVerified() {
			// The soak is over, but no pass has checked every document
			// yet: the stage moves on once one has.
			return wait(persistencev1alpha1.ReasonVerifying, "verification to check every document (%d/%d so far)",
				sum.checked, sum.documents)
		}
		if stage == persistencev1alpha1.StageLocalFirst {
			cp.act = set(persistencev1alpha1.StageComplete, "PostFlipSoakPassed",
				fmt.Sprintf("cohort %s soaked local-first for %s with every gate holding", spec.Name, soak))
			break
		}
		if !mayFlip {
			return wait(persistencev1alpha1.ReasonWaitingForCohort, "earlier cohorts to complete before the flip")
		}
		if spec.RequireApproval && spec.ApprovedAttempt != st.Attempt {
			return wait(persistencev1alpha1.ReasonAwaitingApproval, "approval of the flip of cohort %s to local-first: set approvedAttempt: %d on it (yawpctl rollout approve)",
				spec.Name, st.Attempt)
		}
		cp.act = set(persistencev1alpha1.StageLocalFirst, "Flipped",
			fmt.Sprintf("cohort %s verified for %s; clients switch to local-first", spec.Name, soak))
	}
	return cp
}

func selectorOf(c persistencev1alpha1.CohortSpec) dataplane.Selector {
	if c.Buckets != nil {
		return dataplane.Selector{Buckets: &dataplane.BucketRange{From: int(c.Buckets.From), To: int(c.Buckets.To)}}
	}
	return dataplane.Selector{Tenants: append([]string(nil), c.Tenants...)}
}

func describeOutcome(outcome string) string {
	switch outcome {
	case dataplane.OutcomeRolledBack:
		return "was rolled back"
	case dataplane.OutcomeHalted:
		return "was halted"
	}
	return outcome
}

// intentRollbackMessage is the outcome message of a rollback that a
// cohort's intent asked for.
func intentRollbackMessage(cohort string) string {
	return fmt.Sprintf("rolled cohort %s back to Legacy as its intent asks", cohort)
}
