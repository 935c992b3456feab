package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestEvidenceVerifyJSONIsTheGatewaysAnswer: `evidence verify --json`
// prints the gateway's answer as it is, like `evidence --json`
// (TestEvidenceJSONIsTheGatewaysAnswer). Before, it decoded the answer into
// this yawpctl's store.VerifyReport and encoded it again, so a yawpctl
// older than the gateway dropped what the verification had added since.
func TestEvidenceVerifyJSONIsTheGatewaysAnswer(t *testing.T) {
	body := `{"doc":"essay-1","ok":true,"entries":3,"head":"` + hash64 + `","receipt":"3:` + hash64 + `","problems":[],"checkedAgainst":{"replica":"standby-1"}}`
	out, err := evidenceCLI(t, http.StatusOK, body, "evidence", "verify", "essay-1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("evidence verify --json printed no JSON: %v\n%s", err, out)
	}
	if _, ok := got["checkedAgainst"]; !ok || !strings.Contains(out, "standby-1") {
		t.Errorf("evidence verify --json dropped a field of the gateway's answer:\ngateway: %s\nprinted:\n%s", body, out)
	}
}
