// Package dataplane is the controller's one door into PostgreSQL: freezing a
// cohort's membership, setting a cohort's stage under a new epoch, and reading
// what the shards report. Syncers use the same package to observe stages and
// write their reports, so both sides agree on the tables' meaning.
//
// The package owns the queries on the rollout control tables created by
// internal/migrations (rollouts, tenants, rollout_cohorts, cohort_members,
// stage_changes, shard_reports, shard_cohort_reports). It must not know about
// Kubernetes objects, and nothing outside it may query those tables.
//
// Fencing: every stage change increments the rollout's epoch in the same
// transaction as the cohort row it changes, and only if the cohort is still at
// the epoch the caller expects (compare-and-set), so a stale controller can
// never overwrite a newer decision. Save transactions take the rollout's
// stage lock shared and read their cohort's row FOR KEY SHARE; a stage change
// takes the stage lock exclusively and the row FOR UPDATE, so it waits for
// the saves in flight, saves arriving meanwhile wait behind it, and each save
// commits under exactly one (stage, epoch).
package dataplane

import (
	"context"
	"errors"
	"time"
)

// Stage names as stored in PostgreSQL; they equal the API's stage names.
const (
	StageLegacy        = "Legacy"
	StageDualWrite     = "DualWrite"
	StageBackfill      = "Backfill"
	StageVerify        = "Verify"
	StageLocalFirst    = "LocalFirst"
	StageComplete      = "Complete"
	StageLegacyRetired = "LegacyRetired"
)

// Backfills reports whether a cohort at stage has its legacy-only documents
// given a Yjs representation by the shards' backfill.
func Backfills(stage string) bool {
	switch stage {
	case StageBackfill, StageVerify, StageLocalFirst, StageComplete:
		return true
	}
	return false
}

// Verifies reports whether the shards verify a cohort's documents at stage
// (legacy content against the Yjs text).
func Verifies(stage string) bool {
	return stage == StageDualWrite || Backfills(stage)
}

// Attempt outcomes recorded on a cohort.
const (
	OutcomeRolledBack = "RolledBack"
	OutcomeHalted     = "Halted"
)

// ErrEpochConflict is returned by SetStage when the cohort's epoch is no
// longer the one the caller expected: someone else changed the stage.
var ErrEpochConflict = errors.New("dataplane: cohort epoch changed concurrently")

// ErrUnknownCohort is returned when a cohort has not been frozen yet.
var ErrUnknownCohort = errors.New("dataplane: cohort not frozen")

// ErrShardsChanged is returned when a rollout is registered again with a
// different shard count: documents are placed by hash mod shards.
var ErrShardsChanged = errors.New("dataplane: shard count differs from the one recorded")

// ErrDatabaseInUse is returned by RegisterRollout when the database already
// serves another rollout.
var ErrDatabaseInUse = errors.New("dataplane: database serves another rollout")

// ErrRolloutForgotten is returned by RegisterRollout for an object whose
// rollout a deletion forgot (a manager acting on a copy read before the
// deletion).
var ErrRolloutForgotten = errors.New("dataplane: the rollout object was deleted and its rollout forgotten")

// ErrStaleSpec is returned when a manager acts on an older generation of
// the rollout object than one a manager has already acted on (SpecSeen).
var ErrStaleSpec = errors.New("dataplane: a newer generation of the rollout's spec has been acted on")

// SpecRef names a generation of a rollout object's spec: the one a
// decision was made on.
type SpecRef struct {
	UID        string
	Generation int64
}

// CohortKey names a cohort of a rollout. Rollout is "namespace/name".
type CohortKey struct {
	Rollout string
	Cohort  string
}

// Selector is the rule a cohort's membership is frozen with: an explicit
// tenant list, or a range [From, To) of percentage buckets.
type Selector struct {
	Tenants []string     `json:"tenants,omitempty"`
	Buckets *BucketRange `json:"buckets,omitempty"`
}

// BucketRange is [From, To) out of placement.Buckets.
type BucketRange struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// CohortState is a cohort's row as recorded in PostgreSQL.
type CohortState struct {
	Cohort   string
	Position int
	Stage    string
	Epoch    int64
	Attempt  int32
	// Outcome is "" while the attempt runs, else OutcomeRolledBack or
	// OutcomeHalted.
	Outcome       string
	StageSince    time.Time
	SoakStartedAt time.Time
	// SoakSeenAt is when the controller last saw fresh reports of every
	// shard for the cohort at its current epoch (zero: not yet).
	SoakSeenAt time.Time
	FrozenAt   time.Time
	// OutcomeMessage says why the attempt ended (the message of the
	// stage change that recorded Outcome), while it is set.
	OutcomeMessage string
	// RemovedAt is when the controller found the cohort gone from its
	// rollout's spec (zero while the spec has it): from then on it takes no
	// school seen for the first time.
	RemovedAt time.Time
	Members   int64
	// Selector is the rule the membership was frozen with when the cohort
	// started (the spec may list other schools since: they never move).
	Selector Selector
	// HeldElsewhere, set by FreezeCohort only, counts the schools its
	// selector named that already belonged to another cohort: memberships
	// are never moved, so they stay there. HeldOutsideSpec counts those of
	// them held by a cohort no longer in the spec (renamed or removed),
	// the ones a person may have meant to move; the rest belong to cohorts
	// of the spec that started earlier, as overlapping selectors intend.
	HeldElsewhere, HeldOutsideSpec int64
}

// StageChange asks SetStage for one transition.
type StageChange struct {
	Key CohortKey
	// ExpectEpoch is the cohort epoch the decision was made on.
	ExpectEpoch int64
	// ExpectSoakStartedAt, unless zero, is the soak start the decision was
	// made on: a soak restarted since (reports went stale; the epoch stays)
	// refuses a promotion decided on the soak before it.
	ExpectSoakStartedAt time.Time
	Stage               string
	Attempt             int32
	// Outcome ends the attempt ("" for a stage change within it).
	Outcome string
	// Reason is one CamelCase word; Message is for people.
	Reason  string
	Message string
	At      time.Time
	// SpecUID and SpecGeneration, unless SpecGeneration is zero, name the
	// rollout object's spec the decision was made on: a newer generation
	// of the same object recorded by SpecSeen, or another object of the
	// same name (deleted and created again), refuses the change with
	// ErrStaleSpec.
	SpecUID        string
	SpecGeneration int64
}

// StageRecord is one row of a rollout's audit trail of stage changes,
// freezes and halts.
type StageRecord struct {
	Cohort    string
	FromStage string
	ToStage   string
	Epoch     int64
	Attempt   int32
	Outcome   string
	Reason    string
	Message   string
	At        time.Time
}

// ShardReport is what a shard last said about itself: the rollout epoch it
// has observed, and per cohort its counts.
type ShardReport struct {
	Rollout       string
	Shard         int
	ObservedEpoch int64
	Holder        string
	// ReportedAt, read back (ShardReports), is when the report was
	// written by the data plane's clock (Store.Now). Given to
	// ReportShard, it is when the reporter made the report by its own
	// clock, which is not stored: it only measures how old each cohort's
	// counts were then (CohortReport.ReportedAt, by the same clock).
	ReportedAt time.Time
	Cohorts    []CohortReport
}

// CohortReport is one shard's counts for one cohort, computed under Epoch
// (the cohort's epoch when the counts were taken).
type CohortReport struct {
	Cohort           string
	Epoch            int64
	Documents        int64
	Backfilled       int64
	BackfillComplete bool
	Verified         int64
	Mismatched       int64
	OpenDivergences  int64
	EvidenceGaps     int64
	SampleMismatches []string
	// ReportedAt is when the counts were taken: by the data plane's clock
	// read back, by the reporter's given to ReportShard (zero: when the
	// report was made).
	ReportedAt time.Time
}

// Store is what the controller needs of the data plane.
type Store interface {
	// RegisterRollout records a rollout and its shard count; registering
	// again is a no-op (nothing written), with ErrShardsChanged if the
	// count differs. uid is the Kubernetes object's (empty: none); an
	// object whose rollout was forgotten is refused with
	// ErrRolloutForgotten.
	RegisterRollout(ctx context.Context, rollout, uid string, shards int) error
	// RecordRolloutObject records uid as the object whose gateway template
	// serves the registered rollout (replacing another's: one of the same
	// name deleted with Retain), once that template is applied: syncers
	// told another UID take no shard (RegisteredAs). Empty uid: nothing.
	RecordRolloutObject(ctx context.Context, rollout, uid string) error
	// RolloutClaim reads which object manages the rollout (found false:
	// none recorded). RegisterRollout records the first object to register
	// it and refuses any other with a *ClaimedError (ErrRolloutClaimed),
	// as RecordRolloutObject does, until it is released or taken over.
	RolloutClaim(ctx context.Context, rollout string) (c Claim, found bool, err error)
	// TakeOverRollout moves the claim from object from to object to, on a
	// person's word that from is gone (its deletion never recorded). A
	// claim held by neither is refused with a *ClaimedError; none, or one
	// to holds already, is left as it is.
	TakeOverRollout(ctx context.Context, rollout, from, to string) error
	// ReleaseRollout records that object uid, which manages the rollout,
	// was deleted leaving the rollout in place (deletionPolicy Retain): the
	// next object of the name takes it over when it registers. Nothing if
	// uid does not hold the claim.
	ReleaseRollout(ctx context.Context, rollout, uid string) error
	// FreezeCohort records a cohort at Legacy and freezes its membership:
	// explicitly listed tenants, or every known tenant whose bucket is in
	// range, that belongs to no cohort yet. Freezing an existing cohort
	// changes nothing and returns its state.
	FreezeCohort(ctx context.Context, key CohortKey, position int, sel Selector, at time.Time) (CohortState, error)
	// FreezeCohortAs is FreezeCohort decided on spec: ErrStaleSpec if
	// SpecSeen recorded a newer generation of the object, or another
	// object of the same name.
	FreezeCohortAs(ctx context.Context, key CohortKey, spec SpecRef, position int, sel Selector, at time.Time) (CohortState, error)
	// SpecSeen records that a manager acts on generation of the rollout
	// object uid. It refuses with ErrStaleSpec when a newer generation of
	// the same object was recorded: the caller's read of the spec is out
	// of date. Another uid (the object deleted and created again) replaces
	// the record.
	SpecSeen(ctx context.Context, rollout, uid string, generation int64) error
	// MarkCohortsInSpec records which of a rollout's recorded cohorts its
	// spec has (by name). A cohort not named is marked removed: it keeps
	// its schools, but a school seen for the first time no longer joins
	// it. A marked cohort named again is unmarked. It returns the cohorts
	// whose mark changed, by name.
	// A change decided on an older generation of the object than one
	// SpecSeen recorded is refused with ErrStaleSpec (spec zero: not
	// checked).
	MarkCohortsInSpec(ctx context.Context, rollout string, spec SpecRef, inSpec []string, at time.Time) (removed, restored []string, err error)
	// SetStage moves a cohort to a stage under a new epoch if the cohort is
	// still at ExpectEpoch; ErrEpochConflict otherwise. The stage and its
	// soak start by the data plane's clock (Now); the change's At is for
	// the audit trail.
	SetStage(ctx context.Context, change StageChange) (CohortState, error)
	// HaltAttempt ends the cohort's attempt as Halted without changing
	// its stage or epoch, if the cohort is still at expectEpoch and its
	// attempt has not ended; ErrEpochConflict otherwise. The change's Stage
	// is ignored.
	HaltAttempt(ctx context.Context, change StageChange) error
	// RestartSoak restarts a cohort's soak window at the given time (by
	// the data plane's clock: Now), if the cohort is still at expectEpoch.
	// It never moves the start back (a stale controller's restart must not
	// count time a newer one dropped).
	RestartSoak(ctx context.Context, key CohortKey, expectEpoch int64, at time.Time) error
	// SoakSeen records that the controller saw fresh reports of every
	// shard for the cohort at epoch, at the given time (by the data
	// plane's clock: Now; never moved back).
	SoakSeen(ctx context.Context, key CohortKey, epoch int64, at time.Time) error
	// Now is the data plane's clock, PostgreSQL's now(). Reports, soak
	// starts and the soak watch are stamped by it, so the controller ages
	// and times them by it too: the clocks of the manager's and the
	// syncers' nodes may be off from each other by seconds or more.
	Now(ctx context.Context) (time.Time, error)
	// Cohorts returns every recorded cohort of a rollout by name.
	Cohorts(ctx context.Context, rollout string) (map[string]CohortState, error)
	// History returns the last limit stage records of a rollout, oldest
	// first.
	History(ctx context.Context, rollout string, limit int) ([]StageRecord, error)
	// ShardReports returns the latest report of every shard of a rollout.
	ShardReports(ctx context.Context, rollout string) ([]ShardReport, error)
	// RestampPast stamps every cohort of a rollout under a new epoch above
	// past, each keeping its stage, attempt and outcome, with its soak
	// started again, and records each in the audit trail (reason,
	// message): for a database restored from a backup older than epoch
	// past, so that no epoch shards may have observed is handed out again.
	// A no-op (nil) once the rollout's epoch is above past. ErrStaleSpec as
	// for SetStage.
	RestampPast(ctx context.Context, rollout string, spec SpecRef, past int64, reason, message string, at time.Time) ([]CohortState, error)
	// ForgetRollout removes a rollout's control rows (cohorts, membership,
	// reports). Only for rollouts whose cohorts are all at Legacy. The
	// object's uid (if not empty) can never register the rollout again.
	ForgetRollout(ctx context.Context, rollout, uid string) error
	// SchoolsOutsideCohorts counts the schools seen (by a save, or by the
	// seed of the legacy store) that belong to no cohort, and names the
	// first sample of them: they stay on the legacy path unless a cohort
	// not yet started selects them.
	SchoolsOutsideCohorts(ctx context.Context, sample int) (int64, []string, error)
}

// ShardReporter is what a syncer needs to report; tests play shards with it.
type ShardReporter interface {
	// ReportShard replaces a shard's report and its per-cohort counts.
	ReportShard(ctx context.Context, report ShardReport) error
}
