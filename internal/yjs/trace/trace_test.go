package trace

import (
	"os"
	"path/filepath"
	"testing"
)

// tracePath finds a trace in the shared/ folder beside the repository, or in
// $YAWP_TRACES.
func tracePath(name string) string {
	if dir := os.Getenv("YAWP_TRACES"); dir != "" {
		return filepath.Join(dir, name)
	}
	return filepath.Join("..", "..", "..", "..", "shared", "traces", name)
}

func TestTracesReachEndContent(t *testing.T) {
	for _, name := range []string{"sveltecomponent.json.gz", "rustcode.json.gz", "friendsforever.json.gz", "automerge-paper.json.gz"} {
		t.Run(name, func(t *testing.T) {
			if testing.Short() && name == "automerge-paper.json.gz" {
				t.Skip("long trace skipped with -short")
			}
			tr, err := Load(tracePath(name))
			if err != nil {
				t.Fatal(err)
			}
			res, doc, err := Replay(tr)
			if err != nil {
				t.Fatal(err)
			}
			if !res.MatchesEnd {
				t.Fatal(Diff(doc.GetText("text").String(), tr.EndContent))
			}
			t.Logf("%s: %d txns in %.1f ms, %d bytes", name, res.Transactions, res.Millis, res.UpdateBytes)
		})
	}
}
