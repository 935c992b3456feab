package charts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestChartDeletesTheRolloutBeforeUninstallWhenNotKept: with
// rollout.keepOnUninstall false, helm deleted the rollout itself, after
// the operator's Deployment and permissions (helm deletes kinds it does
// not know last): nobody removed the finalizer, the rollout stayed
// Terminating for good and held its namespace, and its deletionPolicy
// never ran. A pre-delete hook Job now deletes it with `yawpctl rollout
// delete` while the operator still runs. envtest has no kubelet to run
// the Job, so the test runs the Job's command itself, with the real
// yawpctl, as the hook's service account: its Role must be enough, and
// its arguments what yawpctl takes.
func TestChartDeletesTheRolloutBeforeUninstallWhenNotKept(t *testing.T) {
	if objs := helmTemplate(t, "-f", "testdata/rollout-values.yaml"); len(objs.ofKind("Job")) != 0 {
		t.Fatal("a rollout kept on uninstall (the default) has a deletion hook")
	}
	objs := helmTemplate(t, "-f", "testdata/rollout-values.yaml", "--set", "rollout.keepOnUninstall=false", "--set", "rollout.deleteTimeout=90s")
	name := releaseName + "-rollout-delete"
	var job batchv1.Job
	objs.one(t, "Job", name, &job)
	for _, kind := range []string{"ServiceAccount", "Role", "RoleBinding", "Job"} {
		o := objs.one(t, kind, name, nil)
		if got := o.path("metadata", "annotations", "helm.sh/hook"); got != "pre-delete" {
			t.Errorf("%s %s: helm.sh/hook %v, want pre-delete", kind, name, got)
		}
		weight := o.path("metadata", "annotations", "helm.sh/hook-weight")
		if want := map[bool]string{true: "0", false: "-10"}[kind == "Job"]; weight != want {
			t.Errorf("%s %s: hook weight %v, want %s (the Job after its permissions)", kind, name, weight, want)
		}
	}
	if got := objs.one(t, "PersistenceRollout", "demo", nil).path("metadata", "annotations", "helm.sh/resource-policy"); got != nil {
		t.Errorf("a rollout not kept is annotated helm.sh/resource-policy %v", got)
	}
	pod := job.Spec.Template.Spec
	if pod.ServiceAccountName != name || len(pod.Containers) != 1 {
		t.Fatalf("the Job's pod: service account %q, %d containers", pod.ServiceAccountName, len(pod.Containers))
	}
	command := pod.Containers[0].Command
	if len(command) < 2 || command[0] != "/usr/local/bin/yawpctl" || !slices.Contains(command, "--timeout=90s") {
		t.Fatalf("the Job runs %q", command)
	}

	env := &envtest.Environment{BinaryAssetsDirectory: envtestAssets(t), CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{crdFile}}}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "platform-team", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	adminConfig := filepath.Join(dir, "admin")
	if err := os.WriteFile(adminConfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The hook's own identity: the admin's credentials, impersonating the
	// service account, as its token in the pod would authenticate it.
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + releaseNS + ":" + name
	}
	hookConfig := filepath.Join(dir, "hook")
	if err := clientcmd.WriteToFile(*cfg, hookConfig); err != nil {
		t.Fatal(err)
	}
	kubectl := kubectlBinary(t)
	apply := func(kinds ...string) {
		t.Helper()
		var docs []string
		for _, kind := range kinds {
			for _, o := range objs.ofKind(kind) {
				b, err := json.Marshal(o.m)
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, string(b))
			}
		}
		file := filepath.Join(dir, "objects.json")
		if err := os.WriteFile(file, []byte(`{"apiVersion":"v1","kind":"List","items":[`+strings.Join(docs, ",")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := runWith(t, adminConfig, kubectl, "apply", "-f", file); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	}
	if out, err := runWith(t, adminConfig, kubectl, "create", "namespace", releaseNS); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	apply("PersistenceRollout", "ServiceAccount", "Role", "RoleBinding")

	yawpctl := filepath.Join(dir, "yawpctl")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", yawpctl, "../cmd/yawpctl").CombinedOutput(); err != nil {
		t.Fatalf("go build yawpctl: %v\n%s", err, out)
	}
	out, err := runWith(t, hookConfig, yawpctl, command[1:]...)
	if err != nil {
		t.Fatalf("the hook's command as its service account: %v\n%s", err, out)
	}
	if !strings.Contains(out, "rollout "+releaseNS+"/demo deleted") {
		t.Errorf("the hook said:\n%s", out)
	}
	if out, err := runWith(t, adminConfig, kubectl, "get", "persistencerollout", "demo", "-n", releaseNS); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("after the hook the rollout is still there: %v\n%s", err, out)
	}
	// The hook may delete that one rollout and nothing else.
	if out, err := runWith(t, hookConfig, kubectl, "delete", "persistencerollout", "another", "-n", releaseNS); err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("the hook's service account may delete another rollout: %v\n%s", err, out)
	}
	// Run again (a hook retried), it has nothing left to do.
	if out, err := runWith(t, hookConfig, yawpctl, command[1:]...); err != nil || !strings.Contains(out, "nothing to delete") {
		t.Errorf("the hook run again: %v\n%s", err, out)
	}
}
