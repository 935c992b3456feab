// Package gotune sizes the syncer's and the gateway's Go garbage
// collectors to their containers: a soft memory limit under the
// container's, and for the syncer a larger collector target. With the default GOGC=100 the syncer spent about a
// third of its CPU in the collector under load (make bench-store); letting
// the heap grow to five times what is live cut the store's CPU per save by
// 20-50% at 16-256 writers (three times: most of that). It is only done
// where a memory limit bounds the heap: the container's limit, which the
// controller passes in YAWP_MEMORY_LIMIT (contract.EnvMemoryLimit), or
// GOMEMLIMIT.
package gotune

import (
	"math"
	"runtime/debug"
	"strconv"

	"github.com/yawp/persistence-operator/internal/contract"
)

// SyncerGCPercent is the syncer's collector target when a memory limit
// bounds its heap. The gateway keeps the default: under make bench-gateway
// a larger target saved it no measurable CPU and cost memory per document.
const SyncerGCPercent = 400

// Plan is what Apply does: a GC percent (0: leave it) and a soft memory
// limit in bytes (0: leave it), and why.
type Plan struct {
	GCPercent   int
	MemoryLimit int64
	Reason      string
}

// Decide returns the plan for an environment and a binary's target
// percent (0: the default, only the soft limit set). An explicit GOGC is the operator's choice and wins. Otherwise
// the collector runs less often only if a limit bounds the heap: GOMEMLIMIT (applied by the runtime itself), or
// the container's limit, of which 90% becomes the soft limit, leaving room
// for what is not Go heap.
func Decide(getenv func(string) string, percent int) Plan {
	if getenv("GOGC") != "" {
		return Plan{Reason: "GOGC is set"}
	}
	if getenv("GOMEMLIMIT") != "" {
		return Plan{GCPercent: percent, Reason: "GOMEMLIMIT bounds the heap"}
	}
	v := getenv(contract.EnvMemoryLimit)
	if v == "" {
		return Plan{Reason: "no memory limit known: the default collector"}
	}
	n := ContainerLimit(getenv)
	if n == 0 {
		return Plan{Reason: contract.EnvMemoryLimit + " is not a byte count: the default collector"}
	}
	return Plan{GCPercent: percent, MemoryLimit: n / 10 * 9, Reason: "the container's memory limit bounds the heap"}
}

// ContainerLimit is the container's memory limit in bytes as the
// controller passes it (contract.EnvMemoryLimit), 0 if unknown.
func ContainerLimit(getenv func(string) string) int64 {
	n, err := strconv.ParseInt(getenv(contract.EnvMemoryLimit), 10, 64)
	if err != nil || n <= 0 || n == math.MaxInt64 {
		return 0
	}
	return n
}

// Apply carries out a plan.
func Apply(p Plan) {
	if p.MemoryLimit > 0 {
		debug.SetMemoryLimit(p.MemoryLimit)
	}
	if p.GCPercent > 0 {
		debug.SetGCPercent(p.GCPercent)
	}
}
