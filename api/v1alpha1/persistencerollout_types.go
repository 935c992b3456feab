package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Stage is where a cohort is on its way from write-through to local-first
// persistence. The stage decides which representation of a document is
// authoritative and which protocol clients are told to use; no stage ever
// rejects a well-formed, authorised save.
// +kubebuilder:validation:Enum=Legacy;DualWrite;Backfill;Verify;LocalFirst;Complete;LegacyRetired
type Stage string

const (
	// StageLegacy: the legacy row is authoritative and the only thing
	// written for documents that have no Yjs representation yet.
	StageLegacy Stage = "Legacy"
	// StageDualWrite: every save writes the legacy row and the Yjs log in
	// one transaction; legacy stays authoritative.
	StageDualWrite Stage = "DualWrite"
	// StageBackfill: as DualWrite, and the shards give every existing
	// document of the cohort a Yjs representation.
	StageBackfill Stage = "Backfill"
	// StageVerify: as DualWrite, while the whole cohort is verified
	// continuously for the soak window.
	StageVerify Stage = "Verify"
	// StageLocalFirst: Yjs is authoritative, clients are told to sync
	// local-first, and the legacy row is still materialised in the same
	// transaction.
	StageLocalFirst Stage = "LocalFirst"
	// StageComplete: the post-flip soak passed; Yjs stays authoritative and
	// the legacy row is still written for backward compatibility.
	StageComplete Stage = "Complete"
	// StageLegacyRetired: legacy writes stopped on the cohort's explicit
	// opt-in. This is the point of no return: a rollback is refused.
	StageLegacyRetired Stage = "LegacyRetired"
)

// Strategy orders the stages of several cohorts.
// +kubebuilder:validation:Enum=PerCohort;DualWriteFirst
type Strategy string

const (
	// StrategyPerCohort runs every stage of a cohort before the next cohort
	// starts, whatever the order of spec.cohorts becomes meanwhile.
	StrategyPerCohort Strategy = "PerCohort"
	// StrategyDualWriteFirst makes every cohort dual-write, backfill and soak
	// together, then flips the cohorts to local-first one by one.
	StrategyDualWriteFirst Strategy = "DualWriteFirst"
)

// RollbackPolicy says what a failing integrity gate does.
// +kubebuilder:validation:Enum=Automatic;Manual
type RollbackPolicy string

const (
	// RollbackAutomatic rolls the failing cohort back to Legacy under a new
	// epoch.
	RollbackAutomatic RollbackPolicy = "Automatic"
	// RollbackManual halts the failing cohort where it is and waits for a
	// person.
	RollbackManual RollbackPolicy = "Manual"
)

// CohortIntent is what a person wants for one cohort.
// +kubebuilder:validation:Enum=Proceed;Hold;Rollback
type CohortIntent string

const (
	// IntentProceed lets the cohort advance as its gates allow.
	IntentProceed CohortIntent = "Proceed"
	// IntentHold keeps the cohort at its current stage; reports still flow.
	IntentHold CohortIntent = "Hold"
	// IntentRollback returns the cohort to Legacy under a new epoch and
	// keeps it there.
	IntentRollback CohortIntent = "Rollback"
)

// DeletionPolicy says what deleting the PersistenceRollout does to the
// stages recorded in PostgreSQL and to the gateway.
// +kubebuilder:validation:Enum=Retain;RollbackToLegacy
type DeletionPolicy string

const (
	// DeletionRetain leaves every cohort's stage and epoch untouched in
	// PostgreSQL and orphans the gateway StatefulSet and Services, so
	// nothing changes for any student; a rollout re-created with the same
	// name adopts them.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionRollbackToLegacy rolls every cohort back to Legacy under a
	// new epoch, waits until every shard observed it, then lets the gateway
	// be deleted. Refused while a cohort has retired legacy writes. Waits
	// while the database Secret is missing, unless the namespace itself is
	// being deleted: then the stages stay in PostgreSQL, as with Retain,
	// and a Warning says so.
	DeletionRollbackToLegacy DeletionPolicy = "RollbackToLegacy"
)

// GatewaySpec describes the sync-gateway StatefulSet: one pod per document
// shard, each running the gateway and its syncer sidecar.
type GatewaySpec struct {
	// image is the persistence-operator image that holds the gateway and
	// syncer binaries.
	// +required
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// imagePullPolicy for both containers: Always, IfNotPresent or Never.
	// Any other value would be refused with the gateway StatefulSet, every
	// time the controller applies it.
	// +optional
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// imagePullSecrets name Secrets in the rollout's namespace (each once)
	// that the kubelet uses to pull the image from a private registry for
	// every gateway pod. Changing them restarts the gateway pods one by one, like any
	// change of the pod template.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(s, size(s.name) > 0)",message="every imagePullSecrets entry needs the name of a Secret"
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// shards is the number of document shards, and so of gateway pods.
	// Documents are placed by hash(documentID) mod shards, so the count
	// cannot change after creation.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="shards cannot change after creation: documents are placed by hash(documentID) mod shards"
	Shards int32 `json:"shards"`

	// resources of each container (gateway and syncer). A request of cpu,
	// memory or ephemeral-storage may not exceed its limit: the API server
	// would refuse the gateway StatefulSet. (The rule names those three
	// rather than iterate over the maps, whose size is unbounded: the API
	// server refuses a rule over them as too costly. Values are strings or
	// integers, hence string() before quantity().) claims (dynamic
	// resource allocation) are refused: the gateway pods declare no
	// resource claims for them to name.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.claims) || size(self.claims) == 0",message="resources.claims is not supported: the gateway pods declare no resource claims"
	// +kubebuilder:validation:XValidation:rule="!has(self.limits) || !has(self.requests) || ['cpu', 'memory', 'ephemeral-storage'].all(k, !(k in self.requests) || !(k in self.limits) || !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",message="every resource request must be at most its limit"
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// tokenSecretRef names the Secret key holding the key that signs
	// client bearer tokens. Without it the gateway accepts no client.
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`

	// maxConnections bounds the sync WebSocket connections each gateway
	// pod serves, open or being opened (unset: no bound); a connection
	// another pod forwards to the document's pod counts there only. Past
	// it a pod refuses new ones with close code 1013 and clients retry,
	// their edits kept in the browser. Sized to the pod's memory limit (a
	// connection costs the pod serving it about 100 KiB, and the pod
	// forwarding it as much again; docs/operations.md), a reconnection storm
	// is refused in part instead of the pod being killed for memory with
	// every connection it held. Changing it restarts the gateway pods one
	// by one, like any change of the pod template.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConnections *int32 `json:"maxConnections,omitempty"`

	// syncer tunes each shard's integrity work. Changing it restarts the
	// gateway pods one by one, like any change of the pod template.
	// +optional
	Syncer SyncerSpec `json:"syncer,omitempty"`
}

// SyncerSpec tunes each shard's syncer: its backfill, its verification and
// what it counts as an evidence gap.
type SyncerSpec struct {
	// backfillRate limits each shard's backfill, in documents per second;
	// the backfill shares PostgreSQL with the students' saves. Unset means
	// 500.
	// +optional
	// +kubebuilder:validation:Minimum=1
	BackfillRate *int32 `json:"backfillRate,omitempty"`

	// fullVerificationInterval is how often each shard verifies every
	// document of its verified cohorts; in between, passes every second
	// verify only the documents written since. Unset means 1m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="fullVerificationInterval must be at least 1s"
	FullVerificationInterval *metav1.Duration `json:"fullVerificationInterval,omitempty"`

	// evidenceGapAfter is how long a client may hold operations the server
	// has not received before they count as an evidence gap (gated by
	// gates.maxEvidenceGaps). Unset means 10m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="evidenceGapAfter must be a positive duration, such as 10m"
	EvidenceGapAfter *metav1.Duration `json:"evidenceGapAfter,omitempty"`
}

// SecretKeyRef points at one key of a Secret in the rollout's namespace.
// Both are checked as the API server checks them in the gateway pods'
// environment: a name or key no Secret can have would be accepted here and
// then refused with the gateway StatefulSet, at every apply.
type SecretKeyRef struct {
	// name of the Secret: a DNS subdomain (lower case letters, digits,
	// '-' and '.').
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be the name of a Secret: lower case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`

	// key within the Secret: letters, digits, '-', '_' and '.', not '.'
	// and not starting with '..'.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && !self.startsWith('..')",message="must be a key a Secret can hold: letters, digits, '-', '_' and '.' (not '.' alone, not starting with '..')"
	Key string `json:"key"`
}

// DatabaseSpec says where the PostgreSQL that holds documents, stages and the
// evidence ledger is.
type DatabaseSpec struct {
	// secretRef names the Secret key holding the PostgreSQL connection
	// string (DSN) of the role that owns the schema: the controller
	// migrates with it, and syncers use it too unless serviceSecretRef is
	// set.
	// +required
	SecretRef SecretKeyRef `json:"secretRef"`
	// serviceSecretRef names the Secret key holding the DSN the syncers
	// use: a login role in yawp_service that owns nothing. It may read and
	// write documents but only read and append to the save-evidence
	// ledger, and, owning no table, cannot disable the ledger's
	// append-only trigger as the schema's owner can. Without it the
	// syncers use secretRef (and warn). The gateway keeps its last template
	// until the Secret holds the key (status says so).
	// +optional
	ServiceSecretRef *SecretKeyRef `json:"serviceSecretRef,omitempty"`
}

// BucketRange selects tenants whose hashed ID falls into [from, to) out of
// 100 buckets (FNV-1a of the tenant ID, mod 100).
// +kubebuilder:validation:XValidation:rule="self.from < self.to",message="buckets.from must be below buckets.to"
type BucketRange struct {
	// from is the first bucket, inclusive.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	From int32 `json:"from"`

	// to is the bucket after the last, exclusive.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	To int32 `json:"to"`
}

// CohortSpec is one group of schools that moves through the stages together.
// +kubebuilder:validation:XValidation:rule="has(self.tenants) != has(self.buckets)",message="a cohort selects its schools with exactly one of tenants or buckets"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.stopLegacyWrites) || !oldSelf.stopLegacyWrites || (has(self.stopLegacyWrites) && self.stopLegacyWrites)",message="stopLegacyWrites is the point of no return and cannot be unset once set"
// +kubebuilder:validation:XValidation:rule="!has(self.approvedAttempt) || self.approvedAttempt <= (has(self.attempt) ? self.attempt : 1)",message="approvedAttempt cannot be ahead of attempt"
type CohortSpec struct {
	// name identifies the cohort; it is a DNS label and unique in the
	// rollout. Membership and stages in PostgreSQL are keyed by it, and a
	// school's membership is never moved, so renaming a started cohort
	// makes a new one without its schools (a Warning Event,
	// SchoolsHeldElsewhere, says so when it starts). A cohort out of the
	// spec takes no school seen for the first time (one its buckets
	// select joins a cohort of the spec, or none); back under its name, it
	// takes them again. A cohort on its way
	// (past Legacy, not Complete) that is removed or renamed keeps its
	// stage, unmanaged: the rollout is Degraded (CohortRemoved) and no
	// other cohort starts or flips until it is back under its name. To
	// drop a cohort, roll it back (intent: Rollback) first; its schools
	// then stay on the legacy store.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// tenants lists the schools of the cohort by tenant ID (no NUL
	// character: PostgreSQL refuses it, and freezing the cohort would
	// fail at every attempt). A school listed by two cohorts keeps both
	// from starting (Degraded, InvalidSpec) until one list drops it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[^\x00]+$`
	Tenants []string `json:"tenants,omitempty"`

	// buckets selects schools by hashed tenant ID instead of by name.
	// +optional
	Buckets *BucketRange `json:"buckets,omitempty"`

	// soak is how long the whole cohort is verified, with every gate
	// holding, before it may flip to local-first.
	// +required
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="soak must be a positive duration, such as 30s or 24h"
	Soak metav1.Duration `json:"soak"`

	// postFlipSoak is how long the cohort runs local-first, with every gate
	// holding, before it is Complete. Defaults to soak.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="postFlipSoak must be a positive duration, such as 30s or 24h"
	PostFlipSoak *metav1.Duration `json:"postFlipSoak,omitempty"`

	// requireApproval makes the flip to local-first wait until a person
	// sets approvedAttempt to the cohort's current attempt.
	// +optional
	RequireApproval bool `json:"requireApproval,omitempty"`

	// approvedAttempt approves the flip of that attempt of the cohort. An
	// approval never carries over to a later attempt.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ApprovedAttempt int32 `json:"approvedAttempt,omitempty"`

	// attempt is the attempt the cohort should be on. After a failed
	// attempt (rolled back or halted by a gate) the cohort waits; raise
	// attempt to try again. Raised while an attempt still runs, it is a
	// standing retry: the next attempt starts as soon as this one fails,
	// and the cohort's status message says so meanwhile. Omitted: 1.
	// (No server-side default, here or on intent: a default inside a list
	// item made every `kubectl apply` of an unchanged manifest a change.)
	// +optional
	// +kubebuilder:validation:Minimum=1
	Attempt int32 `json:"attempt,omitempty"`

	// intent holds the cohort where it is (Hold), or returns it to Legacy
	// and keeps it there (Rollback). Omitted: Proceed. Hold stops
	// promotions only: a gate that fails still rolls a held cohort back
	// under the Automatic rollback policy (spec.paused stops that too).
	// +optional
	Intent CohortIntent `json:"intent,omitempty"`

	// stopLegacyWrites opts the cohort in to retiring legacy writes once it
	// is Complete. This is the point of no return: afterwards the legacy
	// rows go stale and a rollback is refused.
	// +optional
	StopLegacyWrites bool `json:"stopLegacyWrites,omitempty"`
}

// IntegrityGates are the limits every promotion, and every soak window
// throughout, is checked against. The numbers are totals over all shards of
// the cohort.
type IntegrityGates struct {
	// maxMismatches is the number of documents whose legacy content and
	// Yjs text were found to differ under the cohort's current epoch that
	// a cohort may have. A mismatch the syncer repaired still counts:
	// something wrote behind the gateway during the attempt. Raise it to
	// tolerate repaired ones and keep maxOpenDivergences at 0.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	MaxMismatches int64 `json:"maxMismatches"`

	// maxEvidenceGaps is the number of evidence gaps a cohort may have:
	// clients holding operations the server has not received for longer
	// than the syncer's --gap-after (10m by default).
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	MaxEvidenceGaps int64 `json:"maxEvidenceGaps"`

	// maxOpenDivergences is the number of divergences found and not yet
	// resolved (repaired, merged or preserved) that a cohort may have.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	MaxOpenDivergences int64 `json:"maxOpenDivergences"`

	// maxReportAge is how old a shard's report may be and still count.
	// A promotion waits for fresh reports, and a soak window restarts when
	// reports go stale, or when the controller could not watch them for
	// longer than this (it was down or cut off from the database): a soak
	// counts only time in which fresh reports were seen. At least 10s:
	// each syncer reports every 2s, and a shorter limit would find a
	// healthy shard's last report stale between two of them, restarting
	// the soak again and again.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="maxReportAge must be at least 10s: syncers report every 2s, and a shorter limit finds healthy shards' reports stale and restarts soaks without end"
	MaxReportAge metav1.Duration `json:"maxReportAge,omitempty"`
}

// PersistenceRolloutSpec is what the platform team wants.
// +kubebuilder:validation:XValidation:rule="self.cohorts.all(a, self.cohorts.all(b, a.name == b.name || !has(a.buckets) || !has(b.buckets) || a.buckets.to <= b.buckets.from || b.buckets.to <= a.buckets.from))",message="cohort bucket ranges must not overlap"
type PersistenceRolloutSpec struct {
	// gateway is the sync-gateway StatefulSet the controller runs.
	// +required
	Gateway GatewaySpec `json:"gateway"`

	// database is the PostgreSQL that holds stages, documents and evidence.
	// +required
	Database DatabaseSpec `json:"database"`

	// strategy orders the cohorts' stages.
	// +optional
	// +kubebuilder:default=PerCohort
	Strategy Strategy `json:"strategy,omitempty"`

	// cohorts in the order they are moved. Under PerCohort one cohort is
	// on its way at a time: a cohort moved ahead of the one on its way
	// waits for it to complete.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	Cohorts []CohortSpec `json:"cohorts"`

	// gates every promotion is checked against.
	// +optional
	// +kubebuilder:default={}
	Gates IntegrityGates `json:"gates,omitempty"`

	// rollbackPolicy says what a failing gate does.
	// +optional
	// +kubebuilder:default=Automatic
	RollbackPolicy RollbackPolicy `json:"rollbackPolicy,omitempty"`

	// paused stops every stage transition the controller would make on its
	// own (promotions and automatic rollbacks); reports and status still
	// flow, and a cohort's intent Rollback still acts.
	// +optional
	// +kubebuilder:default=false
	Paused bool `json:"paused,omitempty"`

	// deletionPolicy says what deleting this rollout does to the cohorts'
	// stages. Deletion never silently changes which store is authoritative.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// Condition types of a PersistenceRollout.
const (
	// ConditionReady summarises: every shard's gateway pod is ready and,
	// under a rolling update, runs the current pod template (as `kubectl
	// rollout status` judges the StatefulSet, partitions included), every
	// shard reports, and no cohort is failing. Stage
	// changes do not wait for it; they wait on the shards' reports.
	ConditionReady = "Ready"
	// ConditionProgressing is true while a cohort is moving between stages
	// or soaking.
	ConditionProgressing = "Progressing"
	// ConditionVerified is true when the current cohort's latest reports
	// pass every gate.
	ConditionVerified = "Verified"
	// ConditionDegraded is true when a gate failed, a cohort was rolled
	// back or halted, the data plane cannot be reached, or the API server
	// refuses the gateway.
	ConditionDegraded = "Degraded"
)

// Condition reasons. Each is one CamelCase word.
const (
	ReasonReconciling        = "Reconciling"
	ReasonGatewayReady       = "GatewayReady"
	ReasonGatewayNotReady    = "GatewayNotReady"
	ReasonWaitingForBarrier  = "WaitingForBarrier"
	ReasonBackfilling        = "Backfilling"
	ReasonSoaking            = "Soaking"
	ReasonVerifying          = "Verifying"
	ReasonAwaitingApproval   = "AwaitingApproval"
	ReasonWaitingForCohort   = "WaitingForCohort"
	ReasonWaitingForReports  = "WaitingForReports"
	ReasonPaused             = "Paused"
	ReasonHeld               = "Held"
	ReasonComplete           = "Complete"
	ReasonGatesPassing       = "GatesPassing"
	ReasonGateFailed         = "GateFailed"
	ReasonNoReports          = "NoReports"
	ReasonRolledBack         = "RolledBack"
	ReasonHalted             = "Halted"
	ReasonDataPlaneError     = "DataPlaneError"
	ReasonAsExpected         = "AsExpected"
	ReasonDeleting           = "Deleting"
	ReasonRollbackRefused    = "RollbackRefused"
	ReasonAwaitingNewAttempt = "AwaitingNewAttempt"
	// ReasonRolledBackForDeletion: the deletion rolled every cohort back to
	// Legacy in PostgreSQL and waits for the live shards to observe it.
	ReasonRolledBackForDeletion = "RolledBackForDeletion"
	// ReasonDatabaseSecretMissing: the database Secret, or its key, is
	// gone, so the deletion policy RollbackToLegacy cannot be carried out.
	ReasonDatabaseSecretMissing = "DatabaseSecretMissing"
	// ReasonDatabaseRefused: the database Secret names a database that is
	// not the rollout's (no record of the cohorts status shows started),
	// or one restored from an older backup, so the deletion policy
	// RollbackToLegacy is not carried out there.
	ReasonDatabaseRefused = "DatabaseRefused"
	// ReasonRolloutClaimed: another object of the same namespace and name
	// manages the rollout in the database (another cluster's operator
	// given this database, or an object deleted without its deletion
	// reaching the database). This one changes nothing there and gets no
	// gateway until that object lets it go or it takes the rollout over
	// (the persistence.yawp.dev/take-over-from annotation).
	ReasonRolloutClaimed = "RolloutClaimed"
	// ReasonCohortRemoved: a cohort that left Legacy and is not done is
	// no longer in the spec, so nothing gates, completes or rolls it back.
	ReasonCohortRemoved = "CohortRemoved"
	// ReasonGatewayApplyFailed: the API server refused the gateway
	// StatefulSet or a Service built from the spec; its pods keep the last
	// template applied, and stages still move on the shards' reports.
	ReasonGatewayApplyFailed = "GatewayApplyFailed"
	// ReasonInvalidSpec: the spec asks for something the controller will
	// not do, such as a school listed in two cohorts' tenants; the cohort
	// concerned does not start until the spec is corrected.
	ReasonInvalidSpec = "InvalidSpec"
)

// Outcome is how an attempt of a cohort ended.
type Outcome string

const (
	// OutcomeCompleted: the attempt reached Complete.
	OutcomeCompleted Outcome = "Completed"
	// OutcomeRolledBack: a gate failed (Automatic) or a person asked; the
	// cohort is back at Legacy.
	OutcomeRolledBack Outcome = "RolledBack"
	// OutcomeHalted: a gate failed under the Manual policy; the cohort
	// stays at its stage until a new attempt.
	OutcomeHalted Outcome = "Halted"
	// OutcomeLegacyRetired: legacy writes were stopped.
	OutcomeLegacyRetired Outcome = "LegacyRetired"
)

// CohortStatus is what the controller last saw of one cohort.
type CohortStatus struct {
	// name of the cohort.
	Name string `json:"name"`
	// stage the cohort is at, as recorded in PostgreSQL.
	// +optional
	Stage Stage `json:"stage,omitempty"`
	// epoch under which the stage was set; it only grows.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`
	// attempt of the cohort this status describes.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// outcome of the attempt once it ended (Completed, RolledBack, Halted).
	// +optional
	Outcome Outcome `json:"outcome,omitempty"`
	// since when the cohort is at its stage.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// soakEndsAt is when the current soak window ends if the gates keep
	// holding.
	// +optional
	SoakEndsAt *metav1.Time `json:"soakEndsAt,omitempty"`
	// members is the number of schools frozen into the cohort.
	// +optional
	Members int64 `json:"members,omitempty"`
	// shardsObserved is how many shards have observed the cohort's epoch.
	// +optional
	ShardsObserved int32 `json:"shardsObserved,omitempty"`
	// shardsTotal is the number of shards.
	// +optional
	ShardsTotal int32 `json:"shardsTotal,omitempty"`
	// documents of the cohort, over all shards.
	// +optional
	Documents int64 `json:"documents,omitempty"`
	// backfilled documents (given a Yjs representation).
	// +optional
	Backfilled int64 `json:"backfilled,omitempty"`
	// verified documents in the latest verification passes.
	// +optional
	Verified int64 `json:"verified,omitempty"`
	// mismatched documents: found with legacy content and Yjs text apart
	// under the current epoch, repaired or not.
	// +optional
	Mismatched int64 `json:"mismatched,omitempty"`
	// openDivergences not yet resolved.
	// +optional
	OpenDivergences int64 `json:"openDivergences,omitempty"`
	// evidenceGaps: clients holding operations the server has not
	// received for longer than the syncer's --gap-after.
	// +optional
	EvidenceGaps int64 `json:"evidenceGaps,omitempty"`
	// reportedAt is the time of the oldest shard report counted. When
	// nothing else in status changed it is brought up to date every 30 s,
	// not at every report.
	// +optional
	ReportedAt *metav1.Time `json:"reportedAt,omitempty"`
	// message says, for people, what the cohort is doing or waiting for.
	// +optional
	Message string `json:"message,omitempty"`
}

// AttemptRecord is one entry of the rollout's history.
type AttemptRecord struct {
	// cohort the entry is about.
	Cohort string `json:"cohort"`
	// attempt number of the cohort.
	Attempt int32 `json:"attempt"`
	// stage reached or set.
	Stage Stage `json:"stage"`
	// epoch of that stage.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`
	// outcome when the entry ends an attempt.
	// +optional
	Outcome Outcome `json:"outcome,omitempty"`
	// reason, one CamelCase word.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message for people.
	// +optional
	Message string `json:"message,omitempty"`
	// time of the entry.
	Time metav1.Time `json:"time"`
}

// MaxHistory bounds status.history; the oldest entries are dropped first.
const MaxHistory = 32

// PersistenceRolloutStatus is what the controller observed.
type PersistenceRolloutStatus struct {
	// observedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Progressing, Verified, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// currentCohort is the cohort being moved now.
	// +optional
	CurrentCohort string `json:"currentCohort,omitempty"`

	// progress is the current cohort's position, such as "2/3".
	// +optional
	Progress string `json:"progress,omitempty"`

	// stage of the current cohort (Legacy until it starts).
	// +optional
	Stage Stage `json:"stage,omitempty"`

	// waitingFor says what the rollout waits for, such as "0/2 shards to
	// observe epoch 3".
	// +optional
	WaitingFor string `json:"waitingFor,omitempty"`

	// epoch of the current cohort's stage.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`

	// readyShards is the number of gateway pods ready.
	// +optional
	ReadyShards int32 `json:"readyShards,omitempty"`

	// shards says how many shards report (their syncer is alive) out of
	// how many, such as "2/2".
	// +optional
	Shards string `json:"shards,omitempty"`

	// cohorts, in spec order.
	// +optional
	// +listType=map
	// +listMapKey=name
	Cohorts []CohortStatus `json:"cohorts,omitempty"`

	// schoolsOutsideCohorts counts the schools the data plane has seen (a
	// save, or the legacy store's seed) that belong to no cohort. They stay
	// on the write-through path unless a cohort not yet started selects
	// them: a school missing from every named cohort, outside every bucket
	// range, or first seen while its bucket cohort was out of the spec.
	// +optional
	SchoolsOutsideCohorts int64 `json:"schoolsOutsideCohorts,omitempty"`

	// schoolsOutsideCohortsSample names up to five of them, in name order.
	// +optional
	// +listType=atomic
	SchoolsOutsideCohortsSample []string `json:"schoolsOutsideCohortsSample,omitempty"`

	// history of stage changes and attempt outcomes, newest last, at most
	// MaxHistory entries.
	// +optional
	// +listType=atomic
	History []AttemptRecord `json:"history,omitempty"`
}

// PersistenceRollout moves schools, cohort by cohort, from write-through to
// local-first persistence, proving integrity before every flip.
// The name is limited by the names derived from it: the StatefulSet
// <name>-gateway labels its pods with <name>-gateway-<revision hash> (a
// label value: 63 characters, the hash up to 10), which leaves 44 for the
// name; the headless Service <name>-gateway-headless (63 characters at
// most) would leave 46.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 44",message="metadata.name may have at most 44 characters: the gateway StatefulSet <name>-gateway labels its pods with <name>-gateway-<10-character revision hash>, and a label value (like the name of the Service <name>-gateway-headless) has at most 63"
// +kubebuilder:resource:shortName=prollout;prollouts,categories=yawp
// +kubebuilder:printcolumn:name="Cohort",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Current",type=string,JSONPath=`.status.currentCohort`
// +kubebuilder:printcolumn:name="Stage",type=string,JSONPath=`.status.stage`
// +kubebuilder:printcolumn:name="Waiting-For",type=string,JSONPath=`.status.waitingFor`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy`,priority=1
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.epoch`,priority=1
// +kubebuilder:printcolumn:name="Shards",type=string,JSONPath=`.status.shards`,priority=1
// +kubebuilder:printcolumn:name="Paused",type=boolean,JSONPath=`.spec.paused`,priority=1
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`,priority=1
// +kubebuilder:metadata:annotations="persistence.yawp.dev/crd-revision=3"
type PersistenceRollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the platform team wants.
	// +required
	Spec PersistenceRolloutSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	Status PersistenceRolloutStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PersistenceRolloutList is a list of PersistenceRollouts.
type PersistenceRolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PersistenceRollout `json:"items"`
}
