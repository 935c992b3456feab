package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// gatewayCmd is this test binary run as the gateway with env added.
func gatewayCmd(t *testing.T, env []string, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--syncer=http://127.0.0.1:1"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "YAWP_") && !strings.HasPrefix(kv, "POD_NAME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "YAWP_GATEWAY_TEST_MAIN=1", "YAWP_SHARDS=1", "POD_NAME=demo-gateway-0")
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	return cmd, &stderr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestTheConnectionLimitComesFromTheEnvironmentOrItsFlag: a value of
// YAWP_SYNC_MAX_CONNS that is no whole number of 0 or more stops the
// gateway at start with a message naming it, unless --sync-max-conns
// (which overrides the environment, as every flag does) gives the limit:
// the environment is then not read. The limit is exported as
// yawp_gateway_sync_connections_limit.
func TestTheConnectionLimitComesFromTheEnvironmentOrItsFlag(t *testing.T) {
	for _, bad := range []string{"lots", "-1", "1.5"} {
		cmd, stderr := gatewayCmd(t, []string{"YAWP_SYNC_MAX_CONNS=" + bad}, "--listen="+freeAddr(t), "--metrics-listen=")
		if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), `YAWP_SYNC_MAX_CONNS="`+bad+`"`) {
			t.Errorf("YAWP_SYNC_MAX_CONNS=%s: exit %v, stderr %q; want a failure naming the variable", bad, err, stderr.String())
		}
	}

	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"YAWP_SYNC_MAX_CONNS=7", nil, "yawp_gateway_sync_connections_limit 7\n"},
		{"YAWP_SYNC_MAX_CONNS=lots", []string{"--sync-max-conns=9"}, "yawp_gateway_sync_connections_limit 9\n"},
	} {
		metrics := freeAddr(t)
		cmd, stderr := gatewayCmd(t, []string{tc.env}, append([]string{"--listen=" + freeAddr(t), "--metrics-listen=" + metrics}, tc.args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var waitErr error
		exited := make(chan struct{})
		go func() { waitErr = cmd.Wait(); close(exited) }()
		got := ""
		for got == "" {
			select {
			case <-exited:
				t.Fatalf("%s %v: the gateway exited (%v): %s", tc.env, tc.args, waitErr, stderr.String())
			default:
			}
			if res, err := http.Get("http://" + metrics + "/metrics"); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				got = string(b)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = cmd.Process.Kill()
		<-exited
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s %v: /metrics has no %q", tc.env, tc.args, tc.want)
		}
	}
}
