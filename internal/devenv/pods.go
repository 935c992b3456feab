package devenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/yawp/persistence-operator/controllers"
	"github.com/yawp/persistence-operator/internal/contract"
)

// podRunner stands in for the kubelet: for every pod of every gateway
// StatefulSet it runs the gateway and syncer binaries as local processes,
// with the environment of the pod template (field and Secret references
// resolved) and local ports in place of the pod's, restarting a process that
// exits, and stopping pods that scale away. Standing in for the StatefulSet
// controller too, it writes each StatefulSet's status: how many of its pods
// are ready.
type podRunner struct {
	client   client.Client
	bin      string
	state    string
	basePort int
	// syncerArgs are appended to every syncer's flags.
	syncerArgs []string
	log        logr.Logger

	mu      sync.Mutex
	running map[string]*proc // by pod/container
	warned  map[string]bool
	// slots: each StatefulSet's port slot (namespace/name -> s), kept for
	// its lifetime, so StatefulSets created later never shift the ports
	// of running ones.
	slots map[string]int
}

// slot returns the port slot of StatefulSet ns/name, taking the lowest
// free one on first sight.
func (p *podRunner) slot(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slots == nil {
		p.slots = map[string]int{}
	}
	if s, ok := p.slots[key]; ok {
		return s
	}
	used := map[int]bool{}
	for _, s := range p.slots {
		used[s] = true
	}
	s := 0
	for used[s] {
		s++
	}
	p.slots[key] = s
	return s
}

type proc struct {
	cancel context.CancelFunc
	done   chan struct{}
	// pid of the process running now (0 between restarts).
	pid atomic.Int64
}

// kill SIGKILLs the process of key (namespace/pod/container).
func (p *podRunner) kill(key string) (int, error) {
	p.mu.Lock()
	pr := p.running[key]
	p.mu.Unlock()
	if pr == nil {
		return 0, fmt.Errorf("devenv: no container %s", key)
	}
	pid := int(pr.pid.Load())
	if pid == 0 {
		return 0, fmt.Errorf("devenv: container %s is between restarts", key)
	}
	return pid, syscall.Kill(pid, syscall.SIGKILL)
}

// Start implements manager.Runnable.
func (p *podRunner) Start(ctx context.Context) error {
	p.mu.Lock()
	p.running, p.warned = map[string]*proc{}, map[string]bool{}
	p.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := p.sync(ctx); err != nil {
			p.log.Error(err, "sync pods")
		}
		select {
		case <-ctx.Done():
			p.stopAll()
			return nil
		case <-tick.C:
		}
	}
}

// port of shard i of the s-th StatefulSet for one of four uses.
func (p *podRunner) port(s, shard, use int) int { return portOf(p.basePort, s, shard, use) }

// portOf places the processes of the gateway StatefulSet in port slot s
// at base + 100*s + 10*shard + use (0 gateway, 1 syncer, 2 and 3
// their metrics).
func portOf(base, s, shard, use int) int { return base + 100*s + 10*shard + use }

func (p *podRunner) sync(ctx context.Context) error {
	var list appsv1.StatefulSetList
	if err := p.client.List(ctx, &list, client.HasLabels{controllers.LabelRollout}); err != nil {
		return err
	}
	want := map[string]bool{}
	wantSlot := map[string]bool{}
	for _, sts := range list.Items {
		stsKey := sts.Namespace + "/" + sts.Name
		wantSlot[stsKey] = true
		s := p.slot(stsKey)
		replicas := 1
		if sts.Spec.Replicas != nil {
			replicas = int(*sts.Spec.Replicas)
		}
		var peers []string
		for i := range replicas {
			peers = append(peers, fmt.Sprintf("http://127.0.0.1:%d", p.port(s, i, 0)))
		}
		if s == 0 && replicas > 0 {
			// The first StatefulSet's first gateway: where other
			// terminals find the system (bin/dev/gateway-url).
			_ = os.WriteFile(filepath.Join(p.state, "gateway-url"), []byte(peers[0]+"\n"), 0o644)
		}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			for _, c := range sts.Spec.Template.Spec.Containers {
				key := sts.Namespace + "/" + pod + "/" + c.Name
				want[key] = true
				if err := p.ensure(ctx, key, &sts, pod, c, s, i, peers); err != nil {
					p.log.Error(err, "start container", "pod", pod, "container", c.Name)
				}
			}
		}
		if err := p.reportStatus(ctx, &sts, s, replicas); err != nil && !apierrors.IsConflict(err) {
			p.log.Error(err, "report status", "statefulset", stsKey)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, pr := range p.running {
		if !want[key] {
			pr.cancel()
			<-pr.done
			delete(p.running, key)
		}
	}
	for key := range p.slots {
		if !wantSlot[key] {
			delete(p.slots, key) // the StatefulSet is gone: its slot is free
		}
	}
	return nil
}

// reportStatus writes the StatefulSet's status as its controller would,
// judging a pod ready as the kubelet would: both its processes answer their
// readiness probe. The stand-in starts each process once and never rolls a
// pod when the template changes, so every pod counts as running the
// template's current revision.
func (p *podRunner) reportStatus(ctx context.Context, sts *appsv1.StatefulSet, s, replicas int) error {
	var ready int32
	for i := range replicas {
		if p.ready(ctx, p.port(s, i, 0)) && p.ready(ctx, p.port(s, i, 1)) {
			ready++
		}
	}
	rev := fmt.Sprintf("%s-%d", sts.Name, sts.Generation)
	n := int32(replicas)
	want := appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: ready, AvailableReplicas: ready,
		CurrentReplicas: n, UpdatedReplicas: n, CurrentRevision: rev, UpdateRevision: rev}
	if equality.Semantic.DeepEqual(sts.Status, want) {
		return nil
	}
	sts.Status = want
	return p.client.Status().Update(ctx, sts)
}

// ready probes a process's readiness endpoint on a local port.
func (p *podRunner) ready(ctx context.Context, port int) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, contract.PathReadyz), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *podRunner) ensure(ctx context.Context, key string, sts *appsv1.StatefulSet, pod string, c corev1.Container, s, shard int, peers []string) error {
	p.mu.Lock()
	_, ok := p.running[key]
	p.mu.Unlock()
	if ok {
		return nil
	}
	binary := filepath.Join(p.bin, filepath.Base(c.Command[0]))
	if _, err := os.Stat(binary); err != nil {
		if !p.warned[binary] {
			p.warned[binary] = true
			p.log.Info("binary not built yet: this container cannot start, so rollouts wait at their barrier", "binary", binary)
		}
		return nil
	}
	env, err := p.env(ctx, sts, pod, c)
	if err != nil {
		return err
	}
	var args []string
	switch c.Name {
	case contract.ContainerGateway:
		args = []string{
			fmt.Sprintf("--listen=127.0.0.1:%d", p.port(s, shard, 0)),
			fmt.Sprintf("--syncer=http://127.0.0.1:%d", p.port(s, shard, 1)),
			fmt.Sprintf("--metrics-listen=127.0.0.1:%d", p.port(s, shard, 2)),
			"--peers=" + strings.Join(peers, ","),
			// The pod's emptyDir: kept across restarts of the process.
			"--spool-dir=" + filepath.Join(p.state, "spool", sts.Namespace+"-"+pod),
		}
	case contract.ContainerSyncer:
		args = append([]string{
			fmt.Sprintf("--listen=127.0.0.1:%d", p.port(s, shard, 1)),
			fmt.Sprintf("--metrics-listen=127.0.0.1:%d", p.port(s, shard, 3)),
		}, p.syncerArgs...)
	default:
		args = c.Args
	}
	logDir := filepath.Join(p.state, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	pr := &proc{cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	p.running[key] = pr
	p.mu.Unlock()
	logPath := filepath.Join(logDir, pod+"-"+c.Name+".log")
	go func() {
		defer close(pr.done)
		for pctx.Err() == nil {
			p.runOnce(pctx, pr, binary, args, env, logPath, pod, c.Name)
			select {
			case <-pctx.Done():
			case <-time.After(time.Second): // restart like the kubelet would
			}
		}
	}()
	p.log.Info("started", "pod", pod, "container", c.Name, "log", logPath)
	return nil
}

func (p *podRunner) runOnce(ctx context.Context, pr *proc, binary string, args, env []string, logPath, pod, container string) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.log.Error(err, "open log", "path", logPath)
		return
	}
	defer func() { _ = f.Close() }()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		p.log.Error(err, "start", "pod", pod, "container", container)
		return
	}
	pr.pid.Store(int64(cmd.Process.Pid))
	defer pr.pid.Store(0)
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		p.log.Info("exited; restarting", "pod", pod, "container", container, "err", waitErr, "log", logPath)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
}

// env resolves the container's environment as the kubelet would.
func (p *podRunner) env(ctx context.Context, sts *appsv1.StatefulSet, pod string, c corev1.Container) ([]string, error) {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.FieldRef != nil:
				switch e.ValueFrom.FieldRef.FieldPath {
				case "metadata.name":
					v = pod
				case "metadata.namespace":
					v = sts.Namespace
				}
			case e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				var s corev1.Secret
				if err := p.client.Get(ctx, client.ObjectKey{Namespace: sts.Namespace, Name: ref.Name}, &s); err != nil {
					return nil, fmt.Errorf("env %s: secret %s: %w", e.Name, ref.Name, err)
				}
				v = string(s.Data[ref.Key])
			}
		}
		out = append(out, e.Name+"="+v)
	}
	return out, nil
}

func (p *podRunner) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.running {
		pr.cancel()
	}
	for key, pr := range p.running {
		<-pr.done
		delete(p.running, key)
	}
}
