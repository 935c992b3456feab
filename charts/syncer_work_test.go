package charts

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestChartSetsEachShardsSyncerWork: the rollout's spec.gateway.syncer
// (backfillRate, fullVerificationInterval, evidenceGapAfter) tunes each
// shard's integrity work, and the chart could not set it: the schema
// refused rollout.gateway.syncer as an unknown value. Each setting given
// is rendered as the CRD takes it (a rate as a whole number even when
// helm read a million from a values file as the float 1e+06), one left at
// 0 or "" is left out for the operator's default, and values the CRD
// would refuse by type are refused by the schema, naming the value.
func TestChartSetsEachShardsSyncerWork(t *testing.T) {
	helm := helmBinary(t)
	base := "rollout:\n  enabled: true\n  database:\n    existingSecret: pg-dsn\n  gateway:\n"
	render := func(t *testing.T, syncer string) (string, error) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte(base+syncer), 0o600); err != nil {
			t.Fatal(err)
		}
		return run(t, helm, "template", releaseName, chart, "--namespace", releaseNS, "--kube-version", kubeVersion, "-f", file)
	}

	for _, tc := range []struct {
		name, values string
		want         any
	}{{
		name:   "the defaults",
		values: "    shards: 2\n",
		want:   nil,
	}, {
		name:   "every setting",
		values: "    syncer:\n      backfillRate: 1000000\n      fullVerificationInterval: 5m\n      evidenceGapAfter: 30m\n",
		want:   map[string]any{"backfillRate": float64(1000000), "fullVerificationInterval": "5m", "evidenceGapAfter": "30m"},
	}, {
		name:   "only evidenceGapAfter set",
		values: "    syncer:\n      backfillRate: 0\n      fullVerificationInterval: \"\"\n      evidenceGapAfter: 1h30m\n",
		want:   map[string]any{"evidenceGapAfter": "1h30m"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(t, tc.values)
			if err != nil {
				t.Fatalf("helm template refused\n%s\n%v\n%s", tc.values, err, out)
			}
			if strings.Contains(out, "e+") {
				t.Errorf("rendered a number in exponent form, which the CRD refuses as a non-integer:\n%s", out)
			}
			ro := parseObjects(t, out).one(t, "PersistenceRollout", "", nil)
			if got := ro.path("spec", "gateway", "syncer"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("spec.gateway.syncer = %s, want %s", jsonOf(got), jsonOf(tc.want))
			}
			validateAgainstCRD(t, ro)
		})
	}

	t.Run("with --set", func(t *testing.T) {
		ro := helmTemplate(t, "--set", "rollout.enabled=true", "--set", "rollout.database.existingSecret=pg-dsn",
			"--set", "rollout.gateway.syncer.backfillRate=100", "--set", "rollout.gateway.syncer.fullVerificationInterval=10m").one(t, "PersistenceRollout", "", nil)
		if got, want := ro.path("spec", "gateway", "syncer"), map[string]any{"backfillRate": float64(100), "fullVerificationInterval": "10m"}; !reflect.DeepEqual(got, want) {
			t.Errorf("spec.gateway.syncer = %s, want %s", jsonOf(got), jsonOf(want))
		}
	})

	for _, tc := range []struct {
		name, values, want string
	}{
		{"a negative backfill rate", "    syncer:\n      backfillRate: -1\n", "/rollout/gateway/syncer/backfillRate"},
		{"a fractional backfill rate", "    syncer:\n      backfillRate: 2.5\n", "/rollout/gateway/syncer/backfillRate"},
		{"a backfill rate in words", "    syncer:\n      backfillRate: fast\n", "/rollout/gateway/syncer/backfillRate"},
		{"a backfill rate over the CRD's int32", "    syncer:\n      backfillRate: 3000000000\n", "/rollout/gateway/syncer/backfillRate"},
		{"an interval in words", "    syncer:\n      fullVerificationInterval: 1 minute\n", "/rollout/gateway/syncer/fullVerificationInterval"},
		{"a gap as a bare number", "    syncer:\n      evidenceGapAfter: 10\n", "/rollout/gateway/syncer/evidenceGapAfter"},
		{"a misspelt setting", "    syncer:\n      backfilRate: 100\n", "'backfilRate' not allowed"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			out, err := render(t, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted\n%s", tc.values)
			}
			for _, w := range []string{"schema", tc.want} {
				if !strings.Contains(out, w) {
					t.Errorf("helm's error does not mention %q:\n%s", w, out)
				}
			}
		})
	}
}
