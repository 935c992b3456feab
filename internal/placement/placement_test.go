package placement

import (
	"fmt"
	"testing"
)

func TestTenantBucketIsStableAndSpread(t *testing.T) {
	// Fixed values: changing the hash would re-bucket every school, so this
	// test pins it.
	for tenant, want := range map[string]int{"school-1": 83, "northfield-high": 7, "": 61} {
		if got := TenantBucket(tenant); got != want {
			t.Errorf("TenantBucket(%q) = %d, want %d", tenant, got, want)
		}
	}
	seen := map[int]int{}
	for i := range 10000 {
		seen[TenantBucket(fmt.Sprintf("school-%d", i))]++
	}
	if len(seen) != Buckets {
		t.Fatalf("10000 tenants fill %d of %d buckets", len(seen), Buckets)
	}
	for b, n := range seen {
		if n < 50 || n > 150 {
			t.Errorf("bucket %d holds %d of 10000 tenants; the hash is badly skewed", b, n)
		}
	}
}

func TestShardIsStable(t *testing.T) {
	if got := Shard("doc-1", 2); got != 1 {
		t.Errorf("Shard(doc-1, 2) = %d, want 1", got)
	}
	if got := Shard("essay-42", 3); got != 1 {
		t.Errorf("Shard(essay-42, 3) = %d, want 1", got)
	}
}

func TestShardRange(t *testing.T) {
	for _, shards := range []int{1, 2, 7, 64} {
		for i := range 1000 {
			s := Shard(fmt.Sprintf("doc-%d", i), shards)
			if s < 0 || s >= shards {
				t.Fatalf("Shard(doc-%d, %d) = %d out of range", i, shards, s)
			}
		}
	}
}
