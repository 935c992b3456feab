package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// evidenceCLI runs yawpctl with args against a gateway answering every
// request with status and body, and returns what it printed and its error.
func evidenceCLI(t *testing.T, status int, body string, args ...string) (string, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--gateway", srv.URL, "--token", "t"))
	err := cmd.Execute()
	return out.String(), err
}

// TestEvidenceOfALongEditedDocumentIsRead: a whole document's evidence
// lists every ledger entry, one per Yjs update a student's editor sent
// (about 1 KiB each). yawpctl read at most 64 MiB of the answer, so the
// evidence of a document edited in some 70,000 updates, which the
// gateway serves, failed with "unexpected end of JSON input".
func TestEvidenceOfALongEditedDocumentIsRead(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"doc":"essay-1","exists":true,"verdict":"synced","proof":{"verdict":"synced","summary":"committed as revision 70000"},` +
		`"findings":[],"chain":{"doc":"essay-1","ok":true,"entries":70000,"problems":[]},"timeline":[`)
	pad := strings.Repeat("0", 900)
	for i := 1; i <= 70000; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"doc":"essay-1","seq":%d,"kind":"committed","at":"2026-11-27T10:00:00Z","tenant":"s","epoch":1,"shard":0,"shard_epoch":1,"revision":%d,"update_sha256":"%s","hash":"h","prev_hash":"p"}`, i, i, pad)
	}
	b.WriteString(`]}`)
	if b.Len() <= 64<<20 {
		t.Fatalf("the answer is only %d bytes", b.Len())
	}
	out, err := evidenceCLI(t, http.StatusOK, b.String(), "evidence", "essay-1")
	if err != nil {
		t.Fatalf("evidence of a %d MiB answer: %v", b.Len()>>20, err)
	}
	if !strings.Contains(out, "verdict: synced") || !strings.Contains(out, "\n70000 ") {
		t.Errorf("evidence of a %d MiB answer printed:\n%.400s", b.Len()>>20, out)
	}
}

// TestEvidenceSaysTheDocumentIsGone: a document deleted outside the
// gateway (the legacy application, during a rollback) answers exists
// false with the ledger's verdict, "synced", until the syncer notices the
// deletion. Only the JSON said exists false: the text support reads said
// "verdict: synced" and nothing else, while a read of the document
// answers not_found.
func TestEvidenceSaysTheDocumentIsGone(t *testing.T) {
	out, err := evidenceCLI(t, http.StatusOK, `{"doc":"essay-1","exists":false,"verdict":"synced",`+
		`"proof":{"verdict":"synced","summary":"committed as revision 3 under stage DualWrite epoch 1"},"findings":[],`+
		`"chain":{"doc":"essay-1","ok":true,"entries":3,"problems":[]},"timeline":[]}`, "evidence", "essay-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "no such document") {
		t.Errorf("evidence of a document that does not exist printed:\n%s", out)
	}
	out, err = evidenceCLI(t, http.StatusOK, `{"doc":"essay-1","exists":true,"verdict":"synced",`+
		`"proof":{"verdict":"synced","summary":"committed"},"findings":[],"chain":{"doc":"essay-1","ok":true,"entries":1,"problems":[]},"timeline":[]}`,
		"evidence", "essay-1")
	if err != nil || strings.Contains(out, "no such document") {
		t.Errorf("evidence of an existing document: %v\n%s", err, out)
	}
}

// TestEvidenceOfABrokenChainOffersNoReceiptToKeep: with the chain
// BROKEN, yawpctl evidence still told support to keep the head's receipt
// "to check later that nothing up to here was removed or rewritten": its
// stored hash is not what the entries recompute to, so evidence verify
// --receipt reports it a mismatch forever after (evidence verify itself
// prints no receipt for a chain that failed).
func TestEvidenceOfABrokenChainOffersNoReceiptToKeep(t *testing.T) {
	out, err := evidenceCLI(t, http.StatusOK, `{"doc":"essay-1","exists":true,"verdict":"synced",`+
		`"proof":{"verdict":"synced","summary":"committed"},"findings":[],`+
		`"chain":{"doc":"essay-1","ok":false,"entries":3,"receipt":"3:`+hash64+`","problems":[{"seq":2,"problem":"hash mismatch"}]},"timeline":[]}`,
		"evidence", "essay-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "BROKEN") || strings.Contains(out, hash64) {
		t.Errorf("evidence of a broken chain printed:\n%s", out)
	}
}

// TestMalformedClientOrSinceIsWrongUsage: --revision 0 is wrong usage
// (exit 2), but a malformed --client or --since was sent to the gateway,
// whose 400 made it exit 1, "could not do its work", as if the gateway
// were at fault.
func TestMalformedClientOrSinceIsWrongUsage(t *testing.T) {
	url, asked := badRequestGateway(t)
	for _, flag := range [][]string{{"--client", "0"}, {"--client", "abc"}, {"--client", "-5"}, {"--since", "yesterday"}, {"--since", "2026-11-27"}} {
		*asked = false
		args := append([]string{"evidence", "essay-1", "--gateway", url, "--token", "t"}, flag...)
		if got := run(args); got != exitUsage || *asked {
			t.Errorf("yawpctl %q exited %d (gateway asked: %v), want %d without asking", args, got, *asked, exitUsage)
		}
	}
}

// TestEvidenceJSONIsTheGatewaysAnswer: `yawpctl evidence --json` decoded
// the answer into its own types and encoded them again, so a yawpctl
// older than the gateway dropped whatever the gateway had added since.
// It prints the answer as the gateway gave it, indented.
func TestEvidenceJSONIsTheGatewaysAnswer(t *testing.T) {
	out, err := evidenceCLI(t, http.StatusOK, `{"doc":"essay-1","verdict":"synced","addedLater":{"n":1}}`, "evidence", "essay-1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"doc\": \"essay-1\",\n  \"verdict\": \"synced\",\n  \"addedLater\": {\n    \"n\": 1\n  }\n}\n"
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
}

// TestEvidenceTimelineShowsNoStageAsADash: a refusal on another school's
// ID (or one no document holds) is shown outside the chain, with no seq,
// stage or revision. The text timeline printed "0 ... /0 ... 0", as if it
// were entry 0 at stage "" epoch 0 and revision 0.
func TestEvidenceTimelineShowsNoStageAsADash(t *testing.T) {
	out, err := evidenceCLI(t, http.StatusOK, `{"doc":"essay-1","exists":false,"verdict":"rejected",`+
		`"proof":{"verdict":"rejected","summary":"refused: not_found"},"findings":[],`+
		`"chain":{"doc":"essay-1","ok":true,"entries":0,"problems":[]},"timeline":[`+
		`{"doc":"essay-1","seq":0,"kind":"rejected","at":"2026-11-27T23:36:51Z","tenant":"school-2","user":"bob","epoch":0,"code":"not_found"},`+
		`{"doc":"essay-1","seq":4,"kind":"committed","at":"2026-11-27T23:37:00Z","tenant":"school-2","user":"bob","stage":"Complete","epoch":5,"revision":2,"outcome":"saved","hash":"`+hash64+`"}]}`,
		"evidence", "essay-1")
	if err != nil {
		t.Fatal(err)
	}
	var refused, committed string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, "not_found") && strings.Contains(line, "rejected"):
			refused = line
		case strings.Contains(line, "committed"):
			committed = line
		}
	}
	if f := strings.Fields(refused); len(f) < 7 || f[0] != "-" || f[4] != "-" || f[6] != "-" || strings.Contains(refused, "/0") {
		t.Errorf("the refused entry's row is %q, want seq, stage and revision shown as -", refused)
	}
	if f := strings.Fields(committed); len(f) < 7 || f[0] != "4" || f[4] != "Complete/5" || f[6] != "2" {
		t.Errorf("the committed entry's row is %q, want seq 4, Complete/5, revision 2", committed)
	}
}
