// Package rolloutctl holds what `yawpctl rollout` does to a
// PersistenceRollout: it expresses a person's intent (approve a flip, retry a
// cohort, hold, roll back, pause) by editing the spec, never by calling the
// controller, so GitOps and kubectl see the same thing; and it renders a
// rollout's cohorts as a table. It must not write status.
package rolloutctl

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// Edit is one change of intent on a rollout. It returns a description of
// what it changed, or an error when the change makes no sense now.
type Edit func(ro *persistencev1alpha1.PersistenceRollout) (string, error)

// Get reads the rollout at key. A rollout that is not there is said so
// with the namespace looked in: the default one is the kubeconfig's,
// easily not the one meant.
func Get(ctx context.Context, c client.Client, key client.ObjectKey, ro *persistencev1alpha1.PersistenceRollout) error {
	err := c.Get(ctx, key, ro)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no PersistenceRollout %q in namespace %q (-n NAMESPACE looks in another)", key.Name, key.Namespace)
	}
	return err
}

// FieldOwner names yawpctl's edits in the rollout's managedFields.
const FieldOwner = "yawpctl"

// Apply re-reads the rollout and applies edit, retrying on conflicts.
//
// The edit is sent as a JSON patch of the spec fields it changed, not as
// the whole object: an Update re-sends every field as Go writes it ("10m"
// becomes "10m0s", a false bool vanishes), so the stored cohorts would no
// longer be the manifest's and the next `kubectl apply` of an unchanged
// manifest, or GitOps sync, would be a change. The patch also replaces
// metadata.resourceVersion with the one the edit was decided on, which the
// API server takes as a precondition: a rollout changed in between is a
// conflict, re-read and decided again.
func Apply(ctx context.Context, c client.Client, key client.ObjectKey, edit Edit) (string, error) {
	var msg string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ro persistencev1alpha1.PersistenceRollout
		if err := Get(ctx, c, key, &ro); err != nil {
			return err
		}
		before := ro.DeepCopy()
		m, err := edit(&ro)
		if err != nil {
			return err
		}
		msg = m
		patch, err := specPatch(before, &ro)
		if err != nil || patch == nil {
			return err // nil: the spec already says it, nothing to write
		}
		return c.Patch(ctx, &ro, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner(FieldOwner))
	})
	return msg, err
}

// specPatch is the JSON patch (RFC 6902) that turns before's spec into
// after's, with the resourceVersion precondition first, or nil when the
// specs are equal. Both are compared as Go writes them, so only what the
// edit changed differs. An edit changes values, never the length or order
// of a list, so lists are compared element by element; a list whose length
// changed is sent whole.
func specPatch(before, after *persistencev1alpha1.PersistenceRollout) ([]byte, error) {
	var b, a any
	for _, x := range []struct {
		spec persistencev1alpha1.PersistenceRolloutSpec
		into *any
	}{{before.Spec, &b}, {after.Spec, &a}} {
		raw, err := json.Marshal(x.spec)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, x.into); err != nil {
			return nil, err
		}
	}
	var ops []jsonPatchOp
	diffJSON("/spec", b, a, &ops)
	if len(ops) == 0 {
		return nil, nil
	}
	ops = append([]jsonPatchOp{{Op: "replace", Path: "/metadata/resourceVersion", Value: before.ResourceVersion}}, ops...)
	return json.Marshal(ops)
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// diffJSON appends to ops what turns b into a at path. An object member
// is set with "add", which RFC 6902 defines as replacing a member that is
// there and adding one that is not: a field the stored object lacks (Go
// writes it although the manifest omitted it) is no error. A member b has
// and a lacks is one the stored object has too (Go omits only zero
// values), so "remove" finds it.
func diffJSON(path string, b, a any, ops *[]jsonPatchOp) {
	switch bv := b.(type) {
	case map[string]any:
		if av, ok := a.(map[string]any); ok {
			keys := make([]string, 0, len(bv)+len(av))
			for k := range bv {
				keys = append(keys, k)
			}
			for k := range av {
				if _, ok := bv[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				p := path + "/" + jsonPointerEscaper.Replace(k)
				bk, inB := bv[k]
				ak, inA := av[k]
				switch {
				case !inA:
					*ops = append(*ops, jsonPatchOp{Op: "remove", Path: p})
				case !inB:
					*ops = append(*ops, jsonPatchOp{Op: "add", Path: p, Value: ak})
				default:
					diffJSON(p, bk, ak, ops)
				}
			}
			return
		}
	case []any:
		if av, ok := a.([]any); ok && len(av) == len(bv) {
			for i := range bv {
				diffJSON(path+"/"+strconv.Itoa(i), bv[i], av[i], ops)
			}
			return
		}
	}
	if !reflect.DeepEqual(b, a) {
		// The root is the spec, which is always there.
		*ops = append(*ops, jsonPatchOp{Op: "replace", Path: path, Value: a})
	}
}

// jsonPointerEscaper escapes a key for a JSON pointer (RFC 6901).
var jsonPointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func cohort(ro *persistencev1alpha1.PersistenceRollout, name string) (*persistencev1alpha1.CohortSpec, *persistencev1alpha1.CohortStatus, error) {
	var spec *persistencev1alpha1.CohortSpec
	for i := range ro.Spec.Cohorts {
		if ro.Spec.Cohorts[i].Name == name {
			spec = &ro.Spec.Cohorts[i]
		}
	}
	if spec == nil {
		var names []string
		for _, c := range ro.Spec.Cohorts {
			names = append(names, c.Name)
		}
		return nil, nil, fmt.Errorf("rollout %s has no cohort %q (cohorts: %s)", ro.Name, name, strings.Join(names, ", "))
	}
	st := &persistencev1alpha1.CohortStatus{}
	for i := range ro.Status.Cohorts {
		if ro.Status.Cohorts[i].Name == name {
			st = &ro.Status.Cohorts[i]
		}
	}
	return spec, st, nil
}

// Approve approves the flip of the cohort's attempt that runs or will run.
// An approval never carries over to a later attempt, so approving one that
// can no longer flip would be taken for an approval of the next and leave
// that one waiting: it is refused.
func Approve(name string) Edit {
	return func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		spec, st, err := cohort(ro, name)
		if err != nil {
			return "", err
		}
		if st.Stage == "" {
			return "", fmt.Errorf("cohort %s has not started: there is no attempt to approve yet", name)
		}
		ended := st.Outcome == persistencev1alpha1.OutcomeRolledBack || st.Outcome == persistencev1alpha1.OutcomeHalted
		if spec.Attempt > st.Attempt && ended {
			// Retried: the new attempt has not started, and it is the one
			// that will flip. (A retry raised while an attempt still
			// runs waits for it to end: the running one is the one
			// waiting for approval.)
			spec.ApprovedAttempt = spec.Attempt
			return fmt.Sprintf("approved the flip of attempt %d of cohort %s (it has not started yet)", spec.Attempt, name), nil
		}
		switch {
		case ended:
			return "", fmt.Errorf("attempt %d of cohort %s ended (%s): there is no flip to approve; retry it first (yawpctl rollout retry %s %s), then approve the new attempt",
				st.Attempt, name, st.Outcome, ro.Name, name)
		case flipped(st.Stage):
			return "", fmt.Errorf("attempt %d of cohort %s flipped already (it is at %s): there is nothing to approve", st.Attempt, name, st.Stage)
		}
		spec.ApprovedAttempt = st.Attempt
		if spec.Attempt < st.Attempt {
			spec.Attempt = st.Attempt
		}
		return fmt.Sprintf("approved the flip of attempt %d of cohort %s", st.Attempt, name), nil
	}
}

// flipped reports whether a cohort at stage is past the flip to
// local-first.
func flipped(s persistencev1alpha1.Stage) bool {
	return s == persistencev1alpha1.StageLocalFirst || s == persistencev1alpha1.StageComplete || s == persistencev1alpha1.StageLegacyRetired
}

// Retry asks for a new attempt of a cohort whose attempt ended (rolled back
// or halted).
func Retry(name string) Edit {
	return func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		spec, st, err := cohort(ro, name)
		if err != nil {
			return "", err
		}
		if st.Outcome != persistencev1alpha1.OutcomeRolledBack && st.Outcome != persistencev1alpha1.OutcomeHalted {
			return "", fmt.Errorf("cohort %s is %s (%s): only a rolled-back or halted attempt can be retried",
				name, orNotStarted(st.Stage), attemptState(st))
		}
		spec.Attempt = st.Attempt + 1
		if spec.Intent == persistencev1alpha1.IntentRollback {
			spec.Intent = persistencev1alpha1.IntentProceed
		}
		msg := fmt.Sprintf("asked for attempt %d of cohort %s", spec.Attempt, name)
		// Asked for, the attempt still waits for what holds it back: say
		// so, or the person waits for an attempt that does not start.
		if spec.Intent == persistencev1alpha1.IntentHold {
			msg += fmt.Sprintf("; the cohort is held (intent Hold), so it starts once released: yawpctl rollout proceed %s %s", ro.Name, name)
		}
		if ro.Spec.Paused {
			msg += fmt.Sprintf("; the rollout is paused, so it starts once resumed: yawpctl rollout resume %s", ro.Name)
		}
		return msg, nil
	}
}

// SetIntent sets a cohort's intent (Proceed, Hold, Rollback).
func SetIntent(name string, intent persistencev1alpha1.CohortIntent) Edit {
	return func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		spec, st, err := cohort(ro, name)
		if err != nil {
			return "", err
		}
		if intent == persistencev1alpha1.IntentRollback && st.Stage == persistencev1alpha1.StageLegacyRetired {
			return "", fmt.Errorf("cohort %s retired legacy writes: a rollback would lose work and is refused", name)
		}
		spec.Intent = intent
		return fmt.Sprintf("set the intent of cohort %s to %s", name, intent), nil
	}
}

// SetPaused pauses or resumes the whole rollout.
func SetPaused(paused bool) Edit {
	return func(ro *persistencev1alpha1.PersistenceRollout) (string, error) {
		ro.Spec.Paused = paused
		if paused {
			return fmt.Sprintf("paused rollout %s", ro.Name), nil
		}
		return fmt.Sprintf("resumed rollout %s", ro.Name), nil
	}
}

// attemptState says how a cohort's current attempt stands: its outcome,
// or that it is still under way (an attempt's outcome is empty until it
// ends), or that none has started.
func attemptState(st *persistencev1alpha1.CohortStatus) string {
	switch {
	case st.Attempt == 0 && st.Stage == "":
		return "no attempt yet"
	case st.Outcome == "":
		return fmt.Sprintf("attempt %d still under way", st.Attempt)
	}
	return fmt.Sprintf("attempt %d %s", st.Attempt, st.Outcome)
}

func orNotStarted(s persistencev1alpha1.Stage) string {
	if s == "" {
		return "not started"
	}
	return "at " + string(s)
}

// notStarted counts the spec's cohorts that have not started.
func notStarted(ro *persistencev1alpha1.PersistenceRollout) int {
	started := map[string]bool{}
	for _, c := range ro.Status.Cohorts {
		started[c.Name] = c.Stage != ""
	}
	n := 0
	for _, c := range ro.Spec.Cohorts {
		if !started[c.Name] {
			n++
		}
	}
	return n
}

// PrintStatus writes a rollout's cohorts as a table people can read.
func PrintStatus(w io.Writer, ro *persistencev1alpha1.PersistenceRollout, now time.Time) error {
	fmt.Fprintf(w, "Rollout %s/%s: cohort %s (%s), stage %s, epoch %d, shards reporting %s\n",
		ro.Namespace, ro.Name, ro.Status.Progress, ro.Status.CurrentCohort, orDash(string(ro.Status.Stage)), ro.Status.Epoch, orDash(ro.Status.Shards))
	if ro.Status.WaitingFor != "" {
		fmt.Fprintf(w, "Waiting for: %s\n", ro.Status.WaitingFor)
	}
	if n := ro.Status.SchoolsOutsideCohorts; n > 0 {
		names := strings.Join(ro.Status.SchoolsOutsideCohortsSample, ", ")
		if more := n - int64(len(ro.Status.SchoolsOutsideCohortsSample)); more > 0 {
			names += fmt.Sprintf(" and %d more", more)
		}
		if waiting := notStarted(ro); waiting > 0 {
			// Mid-rollout most of them are the schools of cohorts to come.
			cohorts := "cohorts"
			if waiting == 1 {
				cohorts = "cohort"
			}
			fmt.Fprintf(w, "Schools in no cohort yet: %d (%s); %d %s not yet started may take them, the others stay on the write-through path\n", n, names, waiting, cohorts)
		} else {
			fmt.Fprintf(w, "Schools in no cohort (they stay on the write-through path): %d (%s)\n", n, names)
		}
	}
	for _, c := range ro.Status.Conditions {
		fmt.Fprintf(w, "%-11s %-7s %-20s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COHORT\tSTAGE\tEPOCH\tATTEMPT\tSHARDS\tDOCS\tBACKFILLED\tVERIFIED\tMISMATCHED\tDIVERGENCES\tGAPS\tREPORTED\tSOAK ENDS\tMESSAGE")
	for _, c := range ro.Status.Cohorts {
		soak := "-"
		if c.SoakEndsAt != nil {
			soak = c.SoakEndsAt.Sub(now).Round(time.Second).String()
			if c.SoakEndsAt.Time.Before(now) {
				soak = "passed"
			}
		}
		// The oldest shard report counted: how stale the counts are.
		reported := "-"
		if c.ReportedAt != nil {
			reported = now.Sub(c.ReportedAt.Time).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", c.Name, orDash(string(c.Stage)), c.Epoch, c.Attempt,
			c.ShardsObserved, c.ShardsTotal, c.Documents, c.Backfilled, c.Verified, c.Mismatched, c.OpenDivergences, c.EvidenceGaps, reported, soak, c.Message)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Delete deletes the rollout at key and waits until it is gone: until the
// operator has carried out its deletionPolicy and removed its finalizer.
// While it waits, say is told what the rollout waits for whenever that
// changes (status.waitingFor, or the Ready condition's message). A rollout
// that is not there is no error: deleting is done. Waiting ends with
// ctx, with an error naming what the rollout still waited for.
func Delete(ctx context.Context, c client.Client, key client.ObjectKey, poll time.Duration, say func(string)) error {
	var ro persistencev1alpha1.PersistenceRollout
	notAsked := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("rollout %s/%s: its deletion was not requested before the timeout (%w); nothing was changed", key.Namespace, key.Name, err)
		}
		return err
	}
	if err := c.Get(ctx, key, &ro); apierrors.IsNotFound(err) {
		say(fmt.Sprintf("no PersistenceRollout %q in namespace %q: nothing to delete", key.Name, key.Namespace))
		return nil
	} else if err != nil {
		return notAsked(err)
	}
	if ro.DeletionTimestamp == nil {
		if err := c.Delete(ctx, &ro); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return notAsked(err)
		}
		say(fmt.Sprintf("deleting rollout %s/%s (deletionPolicy %s); waiting for the operator to carry it out", key.Namespace, key.Name, cmp.Or(ro.Spec.DeletionPolicy, persistencev1alpha1.DeletionRetain)))
	}
	last := ""
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		ro = persistencev1alpha1.PersistenceRollout{}
		err := c.Get(ctx, key, &ro)
		switch {
		case apierrors.IsNotFound(err):
			say(fmt.Sprintf("rollout %s/%s deleted", key.Namespace, key.Name))
			return nil
		case err == nil:
			if w := deletionWaitsFor(&ro); w != "" && w != last {
				say(w)
				last = w
			}
		case ctx.Err() == nil:
			return err
		}
		select {
		case <-ctx.Done():
			why := last
			if why == "" {
				why = "the operator has not acted on the deletion: is it running?"
			}
			return fmt.Errorf("rollout %s/%s is not deleted yet (%w); it waits for: %s", key.Namespace, key.Name, ctx.Err(), why)
		case <-t.C:
		}
	}
}

// deletionWaitsFor is what a rollout being deleted says it waits for.
func deletionWaitsFor(ro *persistencev1alpha1.PersistenceRollout) string {
	if ro.Status.WaitingFor != "" {
		return ro.Status.WaitingFor
	}
	for _, c := range ro.Status.Conditions {
		if c.Type == persistencev1alpha1.ConditionReady && c.Status != "True" && c.Message != "" {
			return c.Message
		}
	}
	return ""
}
