package charts

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	crdRevisionKey   = "persistence.yawp.dev/crd-revision"
	crdRevisionsFile = "testdata/crd-revisions.txt"
)

// TestCRDRevisionFollowsTheSchema keeps the CRD's revision annotation,
// which the chart compares with the installed CRD's before an upgrade
// (checkInstalledCRD), honest: every revision is recorded with the
// fingerprint of its schema, so a change of the schema under a revision
// already recorded fails here until the revision is raised. Without it the
// chart would let an upgrade run over a CRD that lacks the new fields, and
// the API server would drop them from every rollout without an error.
func TestCRDRevisionFollowsTheSchema(t *testing.T) {
	b, err := os.ReadFile(chartCRDFile)
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Versions []map[string]any `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	rev, err := strconv.Atoi(crd.Metadata.Annotations[crdRevisionKey])
	if err != nil || rev < 2 {
		t.Fatalf("the CRD's %s annotation is %q: want an integer of at least 2 (the marker on PersistenceRollout in api/v1alpha1)",
			crdRevisionKey, crd.Metadata.Annotations[crdRevisionKey])
	}
	sum := schemaFingerprint(t, crd.Spec.Versions)

	recorded, newest := readRevisions(t)
	fix := fmt.Sprintf("raise %s (the +kubebuilder:metadata:annotations marker on PersistenceRollout in api/v1alpha1) to %d, run make manifests, and add the line %q to charts/%s",
		crdRevisionKey, newest+1, fmt.Sprintf("%d %s", newest+1, sum), crdRevisionsFile)
	switch have, ok := recorded[rev]; {
	case ok && have == sum:
	case ok:
		t.Fatalf("the CRD's schema changed since revision %d was recorded: an older CRD of the same revision would pass the chart's check and lose the new fields. %s", rev, fix)
	case rev < newest:
		t.Fatalf("the CRD's revision %d is below %d, already recorded: %s", rev, newest, fix)
	default:
		t.Fatalf("revision %d of the CRD is not recorded: add the line %q to charts/%s", rev, fmt.Sprintf("%d %s", rev, sum), crdRevisionsFile)
	}
}

// schemaFingerprint is the sha256 of what decides which fields a rollout
// keeps and which values it accepts: each version's name, schema and
// subresources, with the descriptions (documentation only) left out.
func schemaFingerprint(t *testing.T, versions []map[string]any) string {
	t.Helper()
	var kept []any
	for _, v := range versions {
		kept = append(kept, map[string]any{"name": v["name"], "schema": withoutDescriptions(v["schema"]), "subresources": v["subresources"]})
	}
	raw, err := json.Marshal(kept) // map keys sorted: the same schema, the same bytes
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:])
}

func withoutDescriptions(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k == "description" {
				if _, isText := e.(string); isText {
					continue // a property named "description" is an object, and kept
				}
			}
			out[k] = withoutDescriptions(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = withoutDescriptions(e)
		}
		return out
	}
	return v
}

func readRevisions(t *testing.T) (map[int]string, int) {
	t.Helper()
	f, err := os.Open(crdRevisionsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	out, newest := map[int]string{}, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var rev int
		var sum string
		if _, err := fmt.Sscanf(line, "%d %s", &rev, &sum); err != nil {
			t.Fatalf("%s: %q: %v", crdRevisionsFile, line, err)
		}
		out[rev], newest = sum, max(newest, rev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, newest
}
