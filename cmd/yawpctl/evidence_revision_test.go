package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestEvidenceNonPositiveRevisionIsRefused: `yawpctl evidence DOC --revision -3` (or 0) is
// dropped without a word: the gateway is asked about the whole document and
// the command prints its verdict and exits 0, so support reads the whole
// document's "synced" as the answer about a revision. The gateway refuses
// revision=0 or -3 with 400; the CLI should refuse it (or send it).
func TestEvidenceNonPositiveRevisionIsRefused(t *testing.T) {
	for _, rev := range []string{"-3", "0"} {
		var gotQuery string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotQuery = r.URL.RawQuery
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"doc":"doc","exists":true,"verdict":"synced","proof":{"verdict":"synced","summary":"committed"},"chain":{"doc":"doc","ok":true,"entries":1,"problems":[]},"timeline":[]}`))
		}))
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"evidence", "doc", "--gateway", srv.URL, "--token", "t", "--revision", rev})
		err := cmd.Execute()
		srv.Close()
		if err == nil {
			t.Errorf("--revision %s: exit 0, asked %q (the whole document), printed:\n%s", rev, gotQuery, out.String())
		}
	}
}
