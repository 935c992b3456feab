// Package nodejs is a test helper: it locates the pinned npm packages under
// test/yjs that the differential and client tests drive (yjs, y-protocols,
// y-websocket), and fails a test with the command to run when they or node
// are missing (skips under -short). It is for tests only.
package nodejs

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the absolute path of test/yjs once node and the npm package
// pkg are installed there.
func Dir(t testing.TB, pkg string) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(self), "..", "..", "..", "test", "yjs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
		if testing.Short() {
			t.Skipf("%s not installed (run: npm ci --prefix test/yjs)", pkg)
		}
		t.Fatalf("%s not installed; run: npm ci --prefix test/yjs", pkg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		if testing.Short() {
			t.Skip("node not found")
		}
		t.Fatal("node not found in PATH; these tests need Node 18+")
	}
	return dir
}
