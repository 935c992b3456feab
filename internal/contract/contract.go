// Package contract is the one place where the names that cross process
// boundaries live: ports, HTTP paths, header names and environment variables
// shared by the controller (which writes them into the StatefulSet), the
// gateway, the syncer and their clients. Both sides import them from here.
// The package holds constants only.
package contract

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
)

// Port names in the StatefulSet and Services.
const (
	GatewayPortName = "http"
	SyncerPortName  = "syncer"
	MetricsPortName = "metrics"
)

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
	EnvShards      = "YAWP_SHARDS"
	EnvPeerPattern = "YAWP_PEER_PATTERN"
	EnvTokenKey    = "YAWP_TOKEN_KEY"
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
	// MaxBodyBytes bounds a request body (JSON or a Yjs update).
	MaxBodyBytes = 1 << 20
	// MaxContentBytes bounds a document's content (UTF-8 bytes).
	MaxContentBytes = 512 << 10
	// MaxTitleBytes bounds a document's title.
	MaxTitleBytes = 512
	// MaxIDBytes bounds document IDs and idempotency keys.
	MaxIDBytes = 128
)
