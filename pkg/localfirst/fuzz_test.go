package localfirst

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// FuzzOpen: any file content opens without panicking, as a store (maybe
// with a dropped tail) or with an error; what opens, reopens the same.
func FuzzOpen(f *testing.F) {
	d := yjs.NewDoc(yjs.Options{ClientID: 3})
	_ = d.GetText("content").Insert(0, "seed", nil)
	f.Add(appendRecord([]byte(magic), d.EncodeStateAsUpdate(nil)))
	f.Add([]byte(magic))
	f.Add([]byte("YAWPLF"))
	f.Add(append(appendRecord([]byte(magic), []byte{0, 0}), 1, 2, 3))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "s")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path)
		if err != nil {
			return
		}
		txt := c.Text()
		_ = c.Close()
		c, err = Open(path)
		if err != nil {
			t.Fatalf("compacted store does not reopen: %v", err)
		}
		if c.Text() != txt || c.Loaded.Torn != 0 {
			t.Fatalf("reopen differs: %q vs %q, torn %d", c.Text(), txt, c.Loaded.Torn)
		}
		_ = c.Close()
	})
}
