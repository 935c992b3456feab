// Package nodejs is a test helper: it locates the pinned npm packages under
// test/yjs that the differential and client tests drive (yjs, y-protocols,
// y-websocket), and fails a test with the command to run when they or node
// are missing (skips under -short). It is for tests only.
package nodejs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
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

// WSClientResult is what test/yjs/ws-client.mjs (stock y-websocket
// providers) prints.
type WSClientResult struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error"`
	Text        string   `json:"text"`
	Texts       []string `json:"texts"`
	OfflineText string   `json:"offlineText"`
	Closes      []Close  `json:"closes"`
	Terminal    *Close   `json:"terminal"`
	// ClientCloses: the closes each client saw, in the order of tokens.
	ClientCloses [][]Close `json:"clientCloses"`
}

// Close is a WebSocket close a client saw.
type Close struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// RunWSClient runs test/yjs/ws-client.mjs with the scenario cfg and fails
// the test unless the script reports success.
func RunWSClient(t testing.TB, cfg map[string]any) WSClientResult {
	t.Helper()
	dir := Dir(t, "y-websocket")
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "ws-client.mjs"), string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res WSClientResult
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &res); jerr != nil || err != nil || !res.OK {
		t.Fatalf("node: %v %s\nstdout: %s\nstderr: %s", err, res.Error, out, stderr.String())
	}
	return res
}

// Process is a node script a test drives line by line: it writes to In
// and reads lines from Out.
type Process struct {
	In  io.WriteCloser
	Out *bufio.Scanner
	Cmd *exec.Cmd
}

// Start runs node on script (a file of test/yjs, once pkg is installed
// there) with args, its stderr the test's, lines on its stdout up to
// maxLine bytes. When the test ends its stdin is closed and it is waited
// for, killed after 5 s.
func Start(t testing.TB, pkg, script string, maxLine int, args ...string) *Process {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join(Dir(t, pkg), script)}, args...)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), maxLine)
	t.Cleanup(func() {
		_ = in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return &Process{In: in, Out: sc, Cmd: cmd}
}
