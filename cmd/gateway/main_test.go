package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("YAWP_GATEWAY_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestStartsWithoutTokenKey: a rollout without spec.gateway.tokenSecretRef
// gives the gateway no token key. The gateway runs (its probes answer, the
// pod does not crash-loop) and refuses every client with 503 no_token_key.
func TestStartsWithoutTokenKey(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "--listen="+addr, "--metrics-listen=", "--syncer=http://127.0.0.1:1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "YAWP_") && !strings.HasPrefix(kv, "POD_NAME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "YAWP_GATEWAY_TEST_MAIN=1", "YAWP_SHARDS=1", "POD_NAME=demo-gateway-0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("the gateway exited (%v): %s", waitErr, stderr.String())
		default:
		}
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /healthz answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/documents", nil)
	req.Header.Set("Authorization", "Bearer yawp1.e30.c2ln")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ Code string }
	_ = json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != http.StatusServiceUnavailable || body.Code != "no_token_key" {
		t.Fatalf("a client request: %d %q", res.StatusCode, body.Code)
	}
	_ = cmd.Process.Kill()
	<-exited // stderr is complete
	if !strings.Contains(stderr.String(), "no token key") {
		t.Errorf("no warning logged: %s", stderr.String())
	}
}
