// Package placement decides where things live: which shard holds a document
// and which percentage bucket a tenant's ID hashes to. The controller, the
// gateway and the syncer must agree on these functions, so they live here and
// nowhere else. The package must not do I/O.
package placement

import (
	"fmt"
	"hash/fnv"
)

// Buckets is the number of percentage buckets tenants are hashed into.
const Buckets = 100

// TenantBucket returns the bucket in [0, Buckets) that a tenant ID hashes to
// (FNV-1a, 32 bits). Cohorts select tenants by ranges of these buckets.
func TenantBucket(tenant string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(tenant))
	return int(h.Sum32() % Buckets)
}

// Shard returns the shard in [0, shards) that holds a document: FNV-1a of
// the document ID, mod shards. It panics on shards < 1, which is a
// programming error: the API refuses such a rollout.
func Shard(documentID string, shards int) int {
	if shards < 1 {
		panic(fmt.Sprintf("placement.Shard: shards must be positive, got %d", shards))
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(documentID))
	return int(h.Sum32() % uint32(shards))
}
