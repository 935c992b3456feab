package gotune

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		env   map[string]string
		want  Plan
		about string
	}{
		{map[string]string{}, Plan{}, "no limit: nothing changes"},
		{map[string]string{contract.EnvMemoryLimit: "1073741824"}, Plan{GCPercent: 400, MemoryLimit: 966367638}, "the container's limit, 90% of it"},
		{map[string]string{contract.EnvMemoryLimit: "1073741824", "GOGC": "50"}, Plan{}, "an explicit GOGC wins"},
		{map[string]string{"GOMEMLIMIT": "512MiB"}, Plan{GCPercent: 400}, "GOMEMLIMIT is applied by the runtime"},
		{map[string]string{contract.EnvMemoryLimit: "lots"}, Plan{}, "garbage is ignored"},
		{map[string]string{contract.EnvMemoryLimit: "0"}, Plan{}, "zero is no limit"},
	} {
		got := Decide(func(k string) string { return tc.env[k] }, SyncerGCPercent)
		if got.GCPercent != tc.want.GCPercent || got.MemoryLimit != tc.want.MemoryLimit || got.Reason == "" {
			t.Errorf("%s: %+v, want GC %d limit %d and a reason", tc.about, got, tc.want.GCPercent, tc.want.MemoryLimit)
		}
	}
}

// TestDecideForTheGateway: the gateway keeps the default collector target
// and gets the soft limit under its container's.
func TestDecideForTheGateway(t *testing.T) {
	got := Decide(func(k string) string {
		return map[string]string{contract.EnvMemoryLimit: "536870912"}[k]
	}, 0)
	if got.GCPercent != 0 || got.MemoryLimit != 483183819 {
		t.Errorf("%+v, want the default GC percent (0) and a limit of 483183819 (90%% of 512 MiB)", got)
	}
}
