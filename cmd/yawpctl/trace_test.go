package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTraceReplayOfAFileThatIsNoTraceFails: `yawpctl trace replay` of
// any JSON object that is not an editing trace (an evidence answer saved
// by mistake, `{}`) replayed nothing, found the empty text equal to the
// missing endContent and exited 0 with "matchesEnd": true. A trace with
// no transactions ("txns": []) is still one.
func TestTraceReplayOfAFileThatIsNoTraceFails(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty.json":    `{}`,
		"null.json":     `null`,
		"evidence.json": `{"doc":"essay-1","exists":true,"verdict":"synced","timeline":[]}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := run([]string{"trace", "replay", p}); got == exitOK {
			t.Errorf("yawpctl trace replay %s (%s) exited 0", name, body)
		}
	}
	p := filepath.Join(dir, "nothing.json")
	if err := os.WriteFile(p, []byte(`{"startContent":"","endContent":"","txns":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"trace", "replay", p}); got != exitOK {
		t.Errorf("yawpctl trace replay of a trace without transactions exited %d", got)
	}
}
