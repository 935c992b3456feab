package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// This file derives status from what was observed and decided. It is pure:
// the reconciler writes the result with one optimistic-lock patch.

// setCondition sets one condition, stamped with the rollout's generation;
// meta.SetStatusCondition keeps the transition time unless the status flips.
func setCondition(ro *persistencev1alpha1.PersistenceRollout, typ string, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	meta.SetStatusCondition(&ro.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: ro.Generation, LastTransitionTime: metav1.NewTime(now),
	})
}

// setDataPlaneError marks the rollout Degraded and not Ready because
// PostgreSQL could not be read or written.
func setDataPlaneError(ro *persistencev1alpha1.PersistenceRollout, err error, now time.Time) {
	msg := fmt.Sprintf("data plane: %v", err)
	setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionTrue, persistencev1alpha1.ReasonDataPlaneError, msg, now)
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonDataPlaneError, msg, now)
	ro.Status.WaitingFor = "the data plane: " + err.Error()
	ro.Status.ObservedGeneration = ro.Generation
}

// setRolloutClaimed marks the rollout Degraded and not Ready because
// another object manages its rollout in the database.
func setRolloutClaimed(ro *persistencev1alpha1.PersistenceRollout, err error, now time.Time) {
	setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionTrue, persistencev1alpha1.ReasonRolloutClaimed, err.Error(), now)
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonRolloutClaimed, err.Error(), now)
	ro.Status.WaitingFor = "the object that manages this rollout in its database to let it go (or the take-over annotation): " + err.Error()
	ro.Status.ObservedGeneration = ro.Generation
}

// setGatewayApplyError marks the rollout Degraded and not Ready because
// the API server refused the gateway StatefulSet or a Service, with its
// message: it names the field, which the spec must change. A reason found
// this reconcile (a gate failed, a rollback, the data plane) keeps its
// place, since the runbook's action for it comes first; the refusal is
// added to its message.
func setGatewayApplyError(ro *persistencev1alpha1.PersistenceRollout, err error, now time.Time) {
	reason, msg := persistencev1alpha1.ReasonGatewayApplyFailed,
		fmt.Sprintf("the gateway cannot be applied, its pods keep the last template applied: %v", err)
	if c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionDegraded); c != nil &&
		c.Status == metav1.ConditionTrue && c.Reason != persistencev1alpha1.ReasonGatewayApplyFailed {
		reason, msg = c.Reason, c.Message+"; and "+msg
	}
	setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, msg, now)
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg, now)
}

// gatewayPods is how far the gateway StatefulSet's pods are.
type gatewayPods struct {
	// ready counts the ready gateway pods.
	ready int32
	// waiting says, for people, what the pods still wait for; "" once
	// every shard's pod runs the current pod template and is ready.
	waiting string
}

// observeGatewayPods judges the gateway StatefulSet (nil: not found) as
// `kubectl rollout status` does: its controller has observed the current
// generation, a pod per shard is ready, and under a rolling update every
// pod (at or above a partition, if one is set) runs the update revision.
// A syncer may report while its gateway container crash-loops,
// so the shards' reports alone do not say students can reach the gateway.
//
// sts must be current, not a cached copy: one from before our last write
// carries the status of the template before it, which may well say every
// pod is ready and updated (applyGateway passes the apply's answer).
func observeGatewayPods(sts *appsv1.StatefulSet, shards int32) gatewayPods {
	if sts == nil {
		return gatewayPods{waiting: "the gateway StatefulSet to be created"}
	}
	generation := sts.Generation
	st := sts.Status
	g := gatewayPods{ready: st.ReadyReplicas}
	// Under a rolling update, the pods it must update: all of them, or
	// those at or above a partition someone set (kubectl reports a
	// partitioned roll-out done once they are; the others keep the old
	// revision on purpose). OnDelete updates a pod only when a person
	// deletes it: kubectl does not judge it, and neither do we.
	rolling := sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	partitioned := false
	mustUpdate := shards
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; rolling && ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		partitioned, mustUpdate = true, max(shards-*ru.Partition, 0)
	}
	update := rolling && (st.UpdatedReplicas < mustUpdate || !partitioned && st.CurrentRevision != st.UpdateRevision)
	roll := fmt.Sprintf("the rolling update to revision %s (%d/%d gateway pods updated)", st.UpdateRevision, st.UpdatedReplicas, mustUpdate)
	switch {
	case st.ObservedGeneration < generation:
		g.waiting = fmt.Sprintf("the StatefulSet controller to observe generation %d of %s", generation, sts.Name)
	case st.ReadyReplicas < shards:
		n := shards - st.ReadyReplicas
		g.waiting = fmt.Sprintf("%d gateway %s to become ready", n, plural(int(n), "pod", "pods"))
		if update {
			// A pod the roll has just replaced is not ready for a while:
			// say it is the roll, not a pod gone wrong on its own.
			g.waiting += " during " + roll
		}
	case update:
		g.waiting = roll
	}
	return g
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}

// cohortStatus derives one cohort's status.
func cohortStatus(in cohortInput, cp cohortPlan) persistencev1alpha1.CohortStatus {
	cs := persistencev1alpha1.CohortStatus{Name: in.spec.Name, ShardsTotal: int32(in.sum.shards)}
	if in.state == nil {
		cs.Message = "not started"
		if cp.waitingFor != "" {
			cs.Message = "not started: waiting for " + cp.waitingFor
		}
		return cs
	}
	st := in.state
	cs.Stage = persistencev1alpha1.Stage(st.Stage)
	cs.Epoch = st.Epoch
	cs.Attempt = st.Attempt
	cs.Outcome = persistencev1alpha1.Outcome(st.Outcome)
	if cs.Stage == persistencev1alpha1.StageComplete {
		cs.Outcome = persistencev1alpha1.OutcomeCompleted
	}
	if cs.Stage == persistencev1alpha1.StageLegacyRetired {
		cs.Outcome = persistencev1alpha1.OutcomeLegacyRetired
	}
	cs.Since = timePtr(st.StageSince)
	cs.SoakEndsAt = timePtr(cp.soakEndsAt)
	cs.Members = st.Members
	s := in.sum
	cs.ShardsObserved = int32(min(s.observed, s.shards))
	cs.Documents, cs.Backfilled, cs.Verified = s.documents, s.backfilled, s.verified
	cs.Mismatched, cs.OpenDivergences, cs.EvidenceGaps = s.mismatched, s.divergences, s.gaps
	cs.ReportedAt = timePtr(s.oldest)
	switch {
	case cp.failing != "":
		cs.Message = cp.failing
	case cp.waitingFor != "":
		cs.Message = "waiting for " + cp.waitingFor
	case cp.done:
		cs.Message = "done"
	default:
		cs.Message = "moving"
	}
	if d := frozenDiffers(in.spec, st.Selector); d != "" {
		cs.Message += "; " + d
	}
	if want := max(in.spec.Attempt, 1); want > st.Attempt && st.Outcome == "" && onItsWay(st) {
		// Raised while the attempt runs: a standing retry, which a
		// manifest re-applied by mistake also makes.
		cs.Message += fmt.Sprintf("; attempt %d is asked for while attempt %d runs: it starts as soon as attempt %d fails, without waiting for a person",
			want, st.Attempt, st.Attempt)
		if in.spec.RequireApproval && in.spec.ApprovedAttempt >= want {
			cs.Message += fmt.Sprintf(", and is already approved for its flip (approvedAttempt: %d)", in.spec.ApprovedAttempt)
		}
	}
	return cs
}

// frozenDiffers says how a started cohort's spec selects other schools
// than it was frozen with, "" when it does not. Memberships never move:
// a school listed after the cohort started never joins it, one no longer
// listed stays in it, and edited buckets are not used.
func frozenDiffers(spec persistencev1alpha1.CohortSpec, frozen dataplane.Selector) string {
	var parts []string
	if frozen.Tenants != nil {
		var added, dropped []string
		for _, t := range spec.Tenants {
			if !slices.Contains(frozen.Tenants, t) {
				added = append(added, t)
			}
		}
		for _, t := range frozen.Tenants {
			if !slices.Contains(spec.Tenants, t) {
				dropped = append(dropped, t)
			}
		}
		if len(added) > 0 {
			parts = append(parts, fmt.Sprintf("listed since it started, never joining it: %s", strings.Join(added, ", ")))
		}
		if len(dropped) > 0 {
			parts = append(parts, fmt.Sprintf("no longer listed, still members: %s", strings.Join(dropped, ", ")))
		}
	}
	if fb := frozen.Buckets; fb != nil && (spec.Buckets == nil || int(spec.Buckets.From) != fb.From || int(spec.Buckets.To) != fb.To) {
		parts = append(parts, fmt.Sprintf("buckets frozen as [%d, %d) when it started; the spec's are not used", fb.From, fb.To))
	}
	if len(parts) == 0 {
		return ""
	}
	return "its schools were frozen when it started (memberships never move): " + strings.Join(parts, "; ")
}

// applyStatus writes the observed and decided state into ro.Status.
func applyStatus(ro *persistencev1alpha1.PersistenceRollout, obs observation, out planOutput, gw gatewayPods, now time.Time) {
	st := &ro.Status
	st.ObservedGeneration = ro.Generation
	st.ReadyShards = gw.ready
	st.SchoolsOutsideCohorts, st.SchoolsOutsideCohortsSample = obs.outside, obs.outsideSample
	st.Cohorts = make([]persistencev1alpha1.CohortStatus, len(obs.cohorts))
	for i, in := range obs.cohorts {
		st.Cohorts[i] = cohortStatus(in, out.cohorts[i])
	}
	// History comes from the data plane's audit trail, which never loses
	// an entry the way a conflicting status write could.
	st.History = make([]persistencev1alpha1.AttemptRecord, 0, len(obs.history))
	for _, h := range obs.history {
		st.History = append(st.History, persistencev1alpha1.AttemptRecord{
			Cohort: h.Cohort, Attempt: h.Attempt, Stage: persistencev1alpha1.Stage(h.ToStage), Epoch: h.Epoch,
			Outcome: persistencev1alpha1.Outcome(h.Outcome), Reason: h.Reason, Message: h.Message, Time: metav1.NewTime(h.At),
		})
	}

	cur := out.current
	curIn, curPlan, curStatus := obs.cohorts[cur], out.cohorts[cur], st.Cohorts[cur]
	st.CurrentCohort = curIn.spec.Name
	st.Progress = fmt.Sprintf("%d/%d", cur+1, len(obs.cohorts))
	st.Stage = curStatus.Stage
	if curIn.state == nil {
		// Not started yet: its schools are still on the write-through
		// path. An empty STAGE column read as something missing.
		st.Stage = persistencev1alpha1.StageLegacy
	}
	st.Epoch = curStatus.Epoch
	st.WaitingFor = curPlan.waitingFor

	// Degraded: any cohort failing, failed or refused.
	degradedReason, degradedMsg := persistencev1alpha1.ReasonAsExpected, "every cohort is healthy"
	for i, cp := range out.cohorts {
		name := obs.cohorts[i].spec.Name
		switch {
		case cp.reason == persistencev1alpha1.ReasonRollbackRefused:
			degradedReason, degradedMsg = persistencev1alpha1.ReasonRollbackRefused, cp.failing
		case cp.reason == persistencev1alpha1.ReasonInvalidSpec:
			degradedReason, degradedMsg = persistencev1alpha1.ReasonInvalidSpec, fmt.Sprintf("cohort %s cannot start: waiting for %s", name, cp.waitingFor)
		case cp.failing != "":
			degradedReason, degradedMsg = persistencev1alpha1.ReasonGateFailed, fmt.Sprintf("cohort %s: %s", name, cp.failing)
		case cp.failed && obs.cohorts[i].state != nil:
			s := obs.cohorts[i].state
			reason := persistencev1alpha1.ReasonRolledBack
			if s.Outcome == string(persistencev1alpha1.OutcomeHalted) {
				reason = persistencev1alpha1.ReasonHalted
			}
			degradedReason, degradedMsg = reason, fmt.Sprintf("cohort %s: %s", name, cp.waitingFor)
		default:
			continue
		}
		break
	}
	if degradedReason == persistencev1alpha1.ReasonAsExpected && len(obs.removed) > 0 {
		// Left alone, not rolled back: changing its stage on our own would
		// silently change which store is authoritative for its schools.
		r := obs.removed[0]
		degradedReason = persistencev1alpha1.ReasonCohortRemoved
		degradedMsg = fmt.Sprintf("cohort %s is at %s (epoch %d) in PostgreSQL but no longer in spec.cohorts, so nothing gates, completes or rolls it back: "+
			"add it back under its name to manage it (intent: Rollback returns its schools to Legacy)", r.Cohort, r.Stage, r.Epoch)
		if n := len(obs.removed) - 1; n > 0 {
			degradedMsg += fmt.Sprintf("; %d more such %s", n, plural(n, "cohort", "cohorts"))
		}
	}
	if degradedReason == persistencev1alpha1.ReasonAsExpected {
		setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionFalse, degradedReason, degradedMsg, now)
	} else {
		setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionTrue, degradedReason, degradedMsg, now)
	}

	// Verified: the current cohort's fresh reports pass every gate.
	switch {
	case curIn.state == nil || curIn.state.Stage == string(persistencev1alpha1.StageLegacy):
		setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionUnknown, persistencev1alpha1.ReasonNoReports,
			fmt.Sprintf("cohort %s has nothing to verify at Legacy", curIn.spec.Name), now)
	case !curIn.sum.allFresh():
		setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionUnknown, persistencev1alpha1.ReasonNoReports,
			fmt.Sprintf("fresh reports from %d/%d shards at epoch %d", curIn.sum.fresh, curIn.sum.shards, curIn.state.Epoch), now)
	case gateFailure(curIn.sum, ro.Spec.Gates) != "":
		// The gates alone: a refused rollback fails the plan, not a gate.
		setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionFalse, persistencev1alpha1.ReasonGateFailed,
			gateFailure(curIn.sum, ro.Spec.Gates), now)
	case !curIn.sum.allVerified():
		setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionUnknown, persistencev1alpha1.ReasonVerifying,
			fmt.Sprintf("verification has checked %d/%d documents at epoch %d; no gate has failed",
				curIn.sum.checked, curIn.sum.documents, curIn.state.Epoch), now)
	default:
		setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionTrue, persistencev1alpha1.ReasonGatesPassing,
			fmt.Sprintf("cohort %s: %d documents verified, %d mismatched, %d open divergences, %d evidence gaps",
				curIn.spec.Name, curIn.sum.verified, curIn.sum.mismatched, curIn.sum.divergences, curIn.sum.gaps), now)
	}

	// Progressing: the current cohort is moving or waiting on the system,
	// not on a person.
	allDone := curPlan.done
	// Done is not everyone moved: schools in no cohort stay on the
	// write-through path, which "complete" alone would hide.
	complete := fmt.Sprintf("all %d cohorts are complete", len(obs.cohorts))
	if obs.outside > 0 {
		complete += fmt.Sprintf("; %d %s in no cohort %s on the write-through path (%s)", obs.outside,
			plural(int(obs.outside), "school", "schools"), plural(int(obs.outside), "stays", "stay"), sampleList(obs.outsideSample, obs.outside))
	}
	switch {
	case allDone && (curPlan.reason == persistencev1alpha1.ReasonPaused || curPlan.reason == persistencev1alpha1.ReasonHeld):
		// Complete, but the point of no return a person asked for is held
		// back by a person: that is what the rollout waits for.
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionFalse, curPlan.reason, "waiting for "+curPlan.waitingFor, now)
	case allDone:
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionFalse, persistencev1alpha1.ReasonComplete, complete, now)
	case curPlan.failed && !curPlan.retryWaits:
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionFalse, persistencev1alpha1.ReasonAwaitingNewAttempt, curPlan.waitingFor, now)
	case curPlan.reason == persistencev1alpha1.ReasonPaused || curPlan.reason == persistencev1alpha1.ReasonHeld || curPlan.reason == persistencev1alpha1.ReasonInvalidSpec ||
		curPlan.reason == persistencev1alpha1.ReasonAwaitingApproval:
		// Waiting on a person, not on the system.
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionFalse, curPlan.reason, "waiting for "+curPlan.waitingFor, now)
	case curPlan.reason != "":
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionTrue, curPlan.reason, "waiting for "+curPlan.waitingFor, now)
	default:
		setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionTrue, persistencev1alpha1.ReasonReconciling,
			fmt.Sprintf("cohort %s is moving", curIn.spec.Name), now)
	}

	// Ready: every shard's gateway pod is ready at the current revision,
	// every shard is alive (reporting), and nothing is degraded.
	alive := obs.alive
	shards := int(ro.Spec.Gateway.Shards)
	st.Shards = fmt.Sprintf("%d/%d", alive, shards)
	pods := fmt.Sprintf("%d/%d gateway pods ready, %d/%d shards report", gw.ready, shards, alive, shards)
	switch {
	case degradedReason != persistencev1alpha1.ReasonAsExpected:
		setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, degradedReason, degradedMsg, now)
	case gw.waiting != "":
		setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonGatewayNotReady,
			pods+"; waiting for "+gw.waiting, now)
	case alive < shards:
		setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonGatewayNotReady, pods, now)
	case allDone:
		setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionTrue, persistencev1alpha1.ReasonComplete,
			complete+"; "+pods, now)
	default:
		setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionTrue, persistencev1alpha1.ReasonGatewayReady, pods, now)
	}
}

// applyRollbackStatus shows a RollbackToLegacy deletion in ro.Status:
// the deletion's generation observed, and every cohort as the deletion
// left it in PostgreSQL, at Legacy as soon as it is there, with how many
// live shards observed its epoch. done says every cohort is at Legacy
// (the deletion only waits for the shards); then Progressing says so,
// Verified is Unknown (nothing is verified at Legacy) and nothing is
// Degraded. Without cohorts read (the data plane could not be reached)
// only the generation is stamped: nothing else is known.
func applyRollbackStatus(ro *persistencev1alpha1.PersistenceRollout, rb rollback, done bool, now time.Time) {
	st := &ro.Status
	st.ObservedGeneration = ro.Generation
	if rb.states == nil {
		return
	}
	// A rollback by this deletion is in the audit trail under its epoch.
	deletedAt := map[string]int64{}
	for _, h := range rb.history {
		if h.Reason == reasonRolloutDeleted {
			deletedAt[h.Cohort] = h.Epoch
		}
	}
	cohorts := make([]persistencev1alpha1.CohortStatus, 0, len(ro.Spec.Cohorts))
	for _, c := range ro.Spec.Cohorts {
		cs := persistencev1alpha1.CohortStatus{Name: c.Name, ShardsTotal: int32(rb.shards)}
		s, ok := rb.states[c.Name]
		if !ok {
			cs.Message = "not started: the rollout is being deleted"
			cohorts = append(cohorts, cs)
			continue
		}
		cs.Stage, cs.Epoch, cs.Attempt = persistencev1alpha1.Stage(s.Stage), s.Epoch, s.Attempt
		cs.Outcome = persistencev1alpha1.Outcome(s.Outcome)
		cs.Since, cs.Members = timePtr(s.StageSince), s.Members
		// No documents or gate counts: the shards counted them at the
		// stage the cohort left, and they say nothing of it at Legacy.
		cs.ShardsObserved = int32(rb.observed[s.Epoch])
		switch {
		case s.Stage == dataplane.StageLegacyRetired:
			cs.Outcome = persistencev1alpha1.OutcomeLegacyRetired
			cs.Message = "retired legacy writes, so the deletion cannot roll it back: set deletionPolicy: Retain to delete the rollout"
		case s.Stage != dataplane.StageLegacy:
			cs.Message = fmt.Sprintf("at %s: not rolled back to Legacy while the deletion is blocked", s.Stage)
		default:
			cs.Message = "at Legacy"
			if e, ok := deletedAt[c.Name]; ok && e == s.Epoch {
				cs.Message = "rolled back to Legacy for the rollout's deletion (deletionPolicy RollbackToLegacy)"
			}
			if behind := rb.live - rb.observed[s.Epoch]; behind > 0 {
				cs.Message += fmt.Sprintf("; waiting for %d/%d live shards to observe epoch %d", behind, rb.live, s.Epoch)
			}
		}
		cohorts = append(cohorts, cs)
	}
	st.Cohorts = cohorts
	if rb.history != nil {
		st.History = make([]persistencev1alpha1.AttemptRecord, 0, len(rb.history))
		for _, h := range rb.history {
			st.History = append(st.History, persistencev1alpha1.AttemptRecord{
				Cohort: h.Cohort, Attempt: h.Attempt, Stage: persistencev1alpha1.Stage(h.ToStage), Epoch: h.Epoch,
				Outcome: persistencev1alpha1.Outcome(h.Outcome), Reason: h.Reason, Message: h.Message, Time: metav1.NewTime(h.At),
			})
		}
	}
	// The current cohort stays the one people were looking at.
	cur := 0
	for i, cs := range cohorts {
		if cs.Name == st.CurrentCohort {
			cur = i
		}
	}
	if len(cohorts) > 0 {
		st.CurrentCohort, st.Progress = cohorts[cur].Name, fmt.Sprintf("%d/%d", cur+1, len(cohorts))
		st.Stage, st.Epoch = cohorts[cur].Stage, cohorts[cur].Epoch
		if st.Stage == "" {
			st.Stage = persistencev1alpha1.StageLegacy
		}
	}
	st.Shards = fmt.Sprintf("%d/%d", rb.live, rb.shards)
	if !done {
		return
	}
	behind := rb.live - rb.observed[rb.maxEpoch]
	goes := "the rollout goes now"
	if behind > 0 {
		goes = fmt.Sprintf("the rollout goes once %d/%d live shards observe epoch %d", behind, rb.live, rb.maxEpoch)
	}
	setCondition(ro, persistencev1alpha1.ConditionProgressing, metav1.ConditionTrue, persistencev1alpha1.ReasonRolledBackForDeletion,
		"every cohort is back at Legacy, as deletionPolicy RollbackToLegacy asks; "+goes, now)
	setCondition(ro, persistencev1alpha1.ConditionVerified, metav1.ConditionUnknown, persistencev1alpha1.ReasonRolledBackForDeletion,
		"every cohort is back at Legacy for the rollout's deletion: nothing is verified at Legacy", now)
	// Whatever was degraded was of stages the cohorts have left: a gate
	// of an epoch rolled back, a cohort no longer in the spec (rolled
	// back too), the gateway's template (going with the rollout).
	setCondition(ro, persistencev1alpha1.ConditionDegraded, metav1.ConditionFalse, persistencev1alpha1.ReasonAsExpected,
		"every cohort is back at Legacy for the rollout's deletion", now)
}

// sampleList names a sample of n things: "a, b" or "a, b and 3 more".
func sampleList(sample []string, n int64) string {
	s := strings.Join(sample, ", ")
	if more := n - int64(len(sample)); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// reportTimeRefresh is how stale a cohort's reportedAt may get in status
// when nothing else about the rollout changed.
const reportTimeRefresh = 30 * time.Second

// withSteadyReportTimes is st with each cohort's reportedAt as in was,
// when st's is at most reportTimeRefresh later: compared with was, it
// tells whether anything changed but report times that moved on.
func withSteadyReportTimes(st, was persistencev1alpha1.PersistenceRolloutStatus) persistencev1alpha1.PersistenceRolloutStatus {
	out := *st.DeepCopy()
	for i := range out.Cohorts {
		c := &out.Cohorts[i]
		if i >= len(was.Cohorts) || was.Cohorts[i].Name != c.Name || c.ReportedAt == nil || was.Cohorts[i].ReportedAt == nil {
			continue
		}
		old := was.Cohorts[i].ReportedAt
		if d := c.ReportedAt.Sub(old.Time); d >= 0 && d < reportTimeRefresh {
			c.ReportedAt = old.DeepCopy()
		}
	}
	return out
}

// statusEqual reports whether two statuses are the same for writing, as
// the API server stores them: its times have whole seconds, and the
// data plane's (a stage's start, a soak's end, a report's, the history's)
// have microseconds, so comparing the derived status with the stored one
// field by field found them different at every poll, and status was
// written every second or two for good.
func statusEqual(a, b persistencev1alpha1.PersistenceRolloutStatus) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return equality.Semantic.DeepEqual(a, b)
	}
	return bytes.Equal(ja, jb)
}
