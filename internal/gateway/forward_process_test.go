package gateway

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
)

// TestSyncForwardedStockClientsAcrossForwarderRestart: stock y-websocket
// clients edit a document of shard 0, one of them through the gateway of
// shard 1 (a real process, cmd/gateway), which gets SIGTERM mid-way and
// is replaced on the same address. The forwarded client sees 1001, not
// 1006, reconnects through the replacement, and every client ends with
// the same text, nothing lost; the gateway exits at once.
func TestSyncForwardedStockClientsAcrossForwarderRestart(t *testing.T) {
	nodejs.Dir(t, "y-websocket")
	bin := filepath.Join(t.TempDir(), "gateway")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gateway").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f := setupSync(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := func() (*exec.Cmd, chan struct{}) {
		cmd := exec.Command(bin, "--listen="+addr, "--metrics-listen=", "--syncer=http://127.0.0.1:1",
			"--shards=2", "--shard=1", "--peers="+f.gws[0]+",http://"+addr, "--token-key="+string(key))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
				res.Body.Close()
				return cmd, exited
			}
			if time.Now().After(deadline) {
				t.Fatal("no /healthz")
			}
		}
	}
	cmd, exited := start()
	doc := docOnShard("fwd-stock", 0)
	viaA := "ws://" + addr + strings.TrimSuffix(contract.PathSync, "/")
	var wg sync.WaitGroup
	var took time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(1500 * time.Millisecond)
		t0 := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		took = time.Since(t0)
		start()
	}()
	res := runNode(t, map[string]any{"urls": []string{f.wsBase(0), viaA}, "doc": doc,
		"tokens": []string{token(t, "school-a", "u0", time.Hour, false), token(t, "school-a", "u1", time.Hour, false)},
		"edits":  600, "offlineEdits": 20})
	wg.Wait()
	t.Logf("forwarder exited %v after SIGTERM; closes seen: %+v", took, res.ClientCloses)
	if len(res.ClientCloses) < 2 || len(res.ClientCloses[1]) == 0 || res.ClientCloses[1][0].Code != contract.CloseGoingAway {
		t.Errorf("the forwarded client's first close: %+v, want 1001", res.ClientCloses)
	}
	if took > 3*time.Second {
		t.Errorf("the forwarder took %v to exit", took)
	}
	// The offline client's tags are the only letters ("{off.k}"); the
	// others' deletes never saw them.
	if n := strings.Count(res.Text, "o"); n != 20 {
		t.Errorf("%d of the offline client's 20 edits are in the text", n)
	}
	eventually(t, "the text committed", func() bool {
		return f.readDoc(0, token(t, "school-a", "u0", time.Hour, false), doc).Content == res.Text
	})
}
