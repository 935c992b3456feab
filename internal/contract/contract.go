// Package contract is the one place where the names that cross process
// boundaries live: ports, HTTP paths, header names and environment variables
// shared by the controller (which writes them into the StatefulSet), the
// gateway, the syncer and their clients. Both sides import them from here.
// The package holds constants, and the rule for document IDs.
package contract

import "regexp"

// Ports of a gateway pod.
const (
	// GatewayPort serves clients: the legacy REST API, the Yjs WebSocket
	// and the evidence API.
	GatewayPort = 8080
	// SyncerPort serves the gateway's internal API on the pod's loopback
	// and the shard's peers.
	SyncerPort = 8081
	// GatewayMetricsPort serves /metrics of the gateway.
	GatewayMetricsPort = 9090
	// SyncerMetricsPort serves /metrics of the syncer.
	SyncerMetricsPort = 9091
	// GatewayPprofPort and SyncerPprofPort serve Go's runtime profiles on
	// the pod's loopback when a rollout asks for them (the profiling
	// annotation).
	GatewayPprofPort = 6060
	SyncerPprofPort  = 6061
)

// GatewaySpoolDir is where a gateway pod's gateway keeps the traces of
// saves it could not confirm until they are in their ledgers: on the
// pod's /tmp emptyDir, so they outlive a restart of the container.
const GatewaySpoolDir = "/tmp/unconfirmed-saves"

// Port names in the StatefulSet and Services.
const (
	GatewayPortName = "http"
	SyncerPortName  = "syncer"
	MetricsPortName = "metrics"
	// SyncerMetricsPortName names the syncer container's /metrics port, so
	// a PodMonitor (the chart's monitoring.podMonitor) can scrape it.
	SyncerMetricsPortName = "syncer-metrics"
)

// GatewayPodLabels are the labels every rollout's gateway pods carry
// besides the rollout's own (app.kubernetes.io/instance and the rollout
// label): what the chart's PodMonitor selects the pods of all rollouts by.
var GatewayPodLabels = map[string]string{
	"app.kubernetes.io/name":       "yawp-gateway",
	"app.kubernetes.io/component":  "sync-gateway",
	"app.kubernetes.io/managed-by": "persistence-operator",
}

// HTTP paths served by the gateway and the syncer.
const (
	PathHealthz   = "/healthz"
	PathReadyz    = "/readyz"
	PathMetrics   = "/metrics"
	PathDocuments = "/v1/documents"
	PathSync      = "/v1/sync/"
)

// Header names.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderProtocol       = "Yawp-Protocol"
	HeaderStage          = "Yawp-Stage"
	HeaderEpoch          = "Yawp-Epoch"
	HeaderRequestID      = "X-Request-Id"
)

// Environment variables the controller sets on the gateway and syncer
// containers. Flags of the same meaning default to them.
const (
	EnvDatabaseURL = "DATABASE_URL"
	EnvPodName     = "POD_NAME"
	EnvNamespace   = "POD_NAMESPACE"
	EnvRollout     = "YAWP_ROLLOUT"
	// EnvRolloutUID is the PersistenceRollout object's UID (the syncer's
	// only): a syncer takes no shard in a database whose rollout of the
	// same name another object registered.
	EnvRolloutUID  = "YAWP_ROLLOUT_UID"
	EnvShards      = "YAWP_SHARDS"
	EnvPeerPattern = "YAWP_PEER_PATTERN"
	EnvTokenKey    = "YAWP_TOKEN_KEY"
	// The syncer's tuning (spec.gateway.syncer): backfill documents per
	// second, full verification interval and evidence gap age, as Go
	// durations. Flags override them.
	EnvBackfillRate    = "YAWP_BACKFILL_RATE"
	EnvVerifyFullEvery = "YAWP_VERIFY_FULL_EVERY"
	EnvGapAfter        = "YAWP_GAP_AFTER"
	// EnvMemoryLimit is the syncer container's memory limit in bytes
	// (from the pod's resourceFieldRef limits.memory); internal/gotune
	// sizes the syncer's Go heap to it.
	EnvMemoryLimit = "YAWP_MEMORY_LIMIT"
)

// Container names in a gateway pod.
const (
	ContainerGateway = "gateway"
	ContainerSyncer  = "syncer"
)

// Binaries in the project image, at these paths.
const (
	BinaryManager = "/usr/local/bin/manager"
	BinaryGateway = "/usr/local/bin/gateway"
	BinarySyncer  = "/usr/local/bin/syncer"
	BinaryYawpctl = "/usr/local/bin/yawpctl"
)

// The syncer's internal API (HTTP+JSON, served to the pod's gateway and the
// shard's peers) and the variables that configure it.
const (
	// EnvInternalToken is the shared secret the gateway presents to the
	// syncer's internal API (Authorization: Bearer). When unset, both sides
	// derive it from YAWP_TOKEN_KEY.
	EnvInternalToken = "YAWP_INTERNAL_TOKEN"
	// EnvSpoolDir is the gateway's --spool-dir. The operator sets it in the
	// environment, not as a flag: a gateway image of an earlier release
	// (spec.gateway.image not yet changed after an operator upgrade)
	// ignores a variable it does not know, and would stop at start on a
	// flag it does not define.
	EnvSpoolDir = "YAWP_SPOOL_DIR"
	// EnvSyncMaxConns is the gateway's --sync-max-conns (the rollout's
	// spec.gateway.maxConnections), in the environment for the same
	// reason as EnvSpoolDir: an earlier release's gateway ignores it.
	EnvSyncMaxConns = "YAWP_SYNC_MAX_CONNS"
	// PathInternal prefixes every internal API path of the syncer.
	PathInternal = "/internal/v1/"
	// YjsTextName is the root Y.Text whose string is a document's content.
	YjsTextName = "content"
	// ServiceRole is the database role the services should connect as: it
	// may insert ledger rows but never update or delete them.
	ServiceRole = "yawp_service"
)

// Limits of the legacy API and the internal API.
const (
	// MaxBodyBytes bounds a JSON request body.
	MaxBodyBytes = 1 << 20
	// MaxUpdateBytes bounds one Yjs update, over REST, over the sync
	// WebSocket and in the syncer alike: a reconnecting client's sync step 2
	// carries its whole offline history, which may be several times the
	// size of the text (MaxContentBytes).
	MaxUpdateBytes = 4 << 20
	// MaxStateVectorBytes bounds a client's state vector (sync step 1),
	// over REST and the sync WebSocket alike: about 150,000 clients (Yjs
	// draws a new client ID per page load, and a class's shared document
	// may see tens of thousands). MaxMissingClients bounds the clients it
	// may name with operations the server lacks: each becomes an evidence
	// record, and operations of other clients reach a client only through
	// the server, so a real client lacks the server's copy of few.
	MaxStateVectorBytes = 1 << 20
	MaxMissingClients   = 1024
	// MaxReceipts is how many receipts one ledger verification takes.
	MaxReceipts = 100
	// MaxDocStructs bounds the Yjs structs of one document (each 150-250
	// bytes of a syncer's memory): a paper written in 260,000 edits (the
	// B4 trace) holds about 1% of it (10,971), while deleting every other
	// character of a 2 MiB paste makes a struct per character. An update
	// that could take a document past it is refused (413 too_large).
	MaxDocStructs = 1 << 20
	// MaxContentBytes bounds a document's content (UTF-8 bytes).
	MaxContentBytes = 512 << 10
	// MaxTitleBytes bounds a document's title.
	MaxTitleBytes = 512
	// MaxIDBytes bounds document IDs and idempotency keys.
	MaxIDBytes = 128
)

// UnauthenticatedTenant is the tenant recorded in a document's ledger for
// a request refused without a valid token (expired, forged or missing).
const UnauthenticatedTenant = "(unauthenticated)"

// The Yjs sync WebSocket (package syncws), served under PathSync: a
// y-websocket client connects to PathSync+documentID.
const (
	// SyncTokenParam is the URL query parameter carrying the bearer token
	// (y-websocket's `params: {token}`). `Authorization: Bearer` and the
	// subprotocol SyncTokenSubprotocolPrefix+token are accepted too.
	SyncTokenParam = "token"
	// SyncSubprotocol is the WebSocket subprotocol a browser client offers
	// alongside SyncTokenSubprotocolPrefix+token (browsers cannot set
	// headers on a WebSocket); offering it also opts in to MessageYawp.
	SyncSubprotocol = "yawp"
	// SyncTokenSubprotocolPrefix prefixes a token passed as a subprotocol.
	SyncTokenSubprotocolPrefix = "yawp-token."
	// SyncProtocolMessagesParam=1 in the query opts a client in to the
	// server's own message type (yprotocol.MessageYawp), which carries
	// the cohort's protocol and is re-sent when it changes. Stock
	// y-websocket clients do not opt in: they log unknown message types.
	SyncProtocolMessagesParam = "yawp"
	// MaxSyncMessageBytes bounds one WebSocket message of the sync
	// protocol (a sync step 2 carries a client's whole offline history):
	// an update of MaxUpdateBytes with its envelope (message type, sync
	// type and length: at most 7 bytes), so the largest update the REST
	// API takes is taken over sync too.
	MaxSyncMessageBytes = MaxUpdateBytes + 16
)

// Protocols a cohort's clients are told to use (HeaderProtocol on the
// WebSocket upgrade response and REST responses, and MessageYawp).
const (
	ProtocolWriteThrough = "write-through"
	ProtocolLocalFirst   = "local-first"
)

// WebSocket close codes of the sync endpoint. Codes 4400-4499 tell a stock
// y-websocket client not to reconnect (its default shouldReconnect); every
// other code makes it reconnect with backoff and re-sync, losing nothing.
const (
	CloseMalformed       = 4400 // a message that is not well-formed y-protocols/Yjs
	CloseUnauthenticated = 4401 // no, bad or expired token
	CloseForbidden       = 4403 // the token's tenant does not own the document
	CloseTooLarge        = 4413 // message or document over the limit
	// CloseForeignHistory: the client's copy comes from a history the
	// server does not know; it was merged on text and preserved, not
	// CRDT-merged. The editor must drop its local copy and reload.
	CloseForeignHistory = 4409
	// CloseRateLimited: too many connections or messages for this user.
	// A passing condition, so not in 4400-4499: 1013 is WebSocket's own
	// "try again later", on which stock clients reconnect with backoff
	// (a student's editor that stopped syncing for good after a burst
	// would keep its edits unsynced until reloaded).
	CloseRateLimited   = 1013
	CloseInternalError = 4500 // the backend failed; reconnect and re-sync
	CloseShuttingDown  = 4503 // refused: the gateway is shutting down
	CloseTooSlow       = 4508 // the client did not read fast enough (send queue full)
	CloseGoingAway     = 1001 // graceful shutdown after flushing; reconnect elsewhere
)

// docIDPattern: 1-128 characters of [A-Za-z0-9._-], starting with a
// letter or digit (safe in a URL path segment, a header and a log line).
var docIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidDocID reports whether id can name a document, on every API.
func ValidDocID(id string) bool { return docIDPattern.MatchString(id) }
