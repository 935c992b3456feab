package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// envRunMain makes the test binary run yawpctl's main with its arguments
// (TestMain), so that a test can run the command as a process of its own:
// with its own HOME and environment, which client-go reads when its
// package is initialised.
const envRunMain = "YAWPCTL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runYawpctl runs yawpctl args as a process whose environment is only
// env (and PATH), and returns its exit status and standard error.
func runYawpctl(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append([]string{envRunMain + "=1", "PATH=" + os.Getenv("PATH")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("yawpctl %q: %v", args, err)
	return 0, ""
}

// TestRolloutWithoutAKubeconfigSaysWhereToPointIt: `yawpctl rollout status
// demo` in a terminal where the quickstart's `export KUBECONFIG=...` was
// not run (or before make dev wrote bin/dev/kubeconfig) printed client-go's
// "invalid configuration: no configuration has been provided, try setting
// KUBERNETES_MASTER environment variable" and exited 1, as if the cluster
// had failed. It is wrong usage (2), and the message says where to point
// yawpctl: --kubeconfig or KUBECONFIG. A kubeconfig whose cluster does not
// answer is still a failure to do the work (1).
func TestRolloutWithoutAKubeconfigSaysWhereToPointIt(t *testing.T) {
	home := t.TempDir() // no .kube/config
	missing := filepath.Join(t.TempDir(), "bin", "dev", "kubeconfig")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{{
		name: "KUBECONFIG not set and no ~/.kube/config",
		env:  []string{"HOME=" + home},
		args: []string{"rollout", "status", "demo"},
		want: []string{"$KUBECONFIG is not set and there is no " + filepath.Join(home, ".kube", "config"), "--kubeconfig", "KUBECONFIG=", "bin/dev/kubeconfig"},
	}, {
		name: "KUBECONFIG names a file not written yet",
		env:  []string{"HOME=" + home, "KUBECONFIG=" + missing},
		args: []string{"rollout", "approve", "demo", "pilot"},
		want: []string{"$KUBECONFIG is " + missing + ", which does not exist", "--kubeconfig", "KUBECONFIG="},
	}, {
		name: "--kubeconfig names no file",
		env:  []string{"HOME=" + home},
		args: []string{"rollout", "delete", "demo", "--kubeconfig", missing},
		want: []string{"--kubeconfig " + missing + ": no such file", "KUBECONFIG="},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := runYawpctl(t, tc.env, tc.args...)
			if code != exitUsage {
				t.Errorf("yawpctl %q exited %d, want %d (wrong usage)\n%s", tc.args, code, exitUsage, stderr)
			}
			for _, w := range append(tc.want, "Run 'yawpctl rollout") {
				if !strings.Contains(stderr, w) {
					t.Errorf("yawpctl %q said\n%s\nwhich does not mention %q", tc.args, stderr, w)
				}
			}
			if strings.Contains(stderr, "KUBERNETES_MASTER") {
				t.Errorf("yawpctl %q points at KUBERNETES_MASTER, which nothing here reads:\n%s", tc.args, stderr)
			}
		})
	}

	t.Run("a kubeconfig whose cluster does not answer", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		down := l.Addr().String()
		_ = l.Close()
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		body := "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: https://" + down + "\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: dev\n    namespace: default\ncurrent-context: dev\nusers:\n- name: dev\n  user:\n    token: t\n"
		if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stderr := runYawpctl(t, []string{"HOME=" + home, "KUBECONFIG=" + kc}, "rollout", "status", "demo")
		if code != exitFailed {
			t.Errorf("yawpctl rollout status against a cluster that does not answer exited %d, want %d\n%s", code, exitFailed, stderr)
		}
	})
}
