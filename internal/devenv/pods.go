package devenv

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
// controller too, it rolls pods onto a changed template as a RollingUpdate
// does (one pod at a time, the highest ordinal first, each once every pod is
// ready; none below a partition; none under OnDelete) and writes each
// StatefulSet's status: how many of its pods are ready and updated.
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
	// podRev: the template revision each pod's containers were started
	// from (by namespace/pod).
	podRev map[string]string
	warned map[string]bool
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
	pid, err := p.pid(key)
	if err != nil {
		return 0, err
	}
	return pid, syscall.Kill(pid, syscall.SIGKILL)
}

// pid is the PID of the process of key (namespace/pod/container) now.
func (p *podRunner) pid(key string) (int, error) {
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
	return pid, nil
}

// Start implements manager.Runnable.
func (p *podRunner) Start(ctx context.Context) error {
	p.mu.Lock()
	p.running, p.warned, p.podRev = map[string]*proc{}, map[string]bool{}, map[string]string{}
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
	wantPod := map[string]bool{}
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
		rev := templateRevision(&sts)
		for i := range replicas {
			wantPod[podKey(&sts, i)] = true
			for _, c := range sts.Spec.Template.Spec.Containers {
				want[podKey(&sts, i)+"/"+c.Name] = true
			}
			p.startPod(ctx, &sts, i, rev, s, peers)
		}
		ready := make([]bool, replicas)
		for i := range replicas {
			ready[i] = p.ready(ctx, p.port(s, i, 0)) && p.ready(ctx, p.port(s, i, 1))
		}
		if i, ok := p.nextToRoll(&sts, replicas, rev, ready); ok {
			p.rollPod(ctx, &sts, i, rev, s, peers)
			ready[i] = false
		}
		if err := p.reportStatus(ctx, &sts, replicas, rev, ready); err != nil && !apierrors.IsConflict(err) {
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
	for key := range p.podRev {
		if !wantPod[key] {
			delete(p.podRev, key) // scaled away: a pod of that name starts afresh
		}
	}
	for key := range p.slots {
		if !wantSlot[key] {
			delete(p.slots, key) // the StatefulSet is gone: its slot is free
		}
	}
	return nil
}

// podKey is namespace/name of the StatefulSet's pod i.
func podKey(sts *appsv1.StatefulSet, i int) string {
	return fmt.Sprintf("%s/%s-%d", sts.Namespace, sts.Name, i)
}

// templateRevision names the StatefulSet's pod template as its controller
// names a ControllerRevision: the StatefulSet's name and a hash of the
// template, so a change of replicas (which moves the generation) is no new
// revision, and any change of the template is one.
func templateRevision(sts *appsv1.StatefulSet) string {
	raw, err := json.Marshal(sts.Spec.Template)
	if err != nil {
		return fmt.Sprintf("%s-%d", sts.Name, sts.Generation)
	}
	h := fnv.New32a()
	_, _ = h.Write(raw)
	return fmt.Sprintf("%s-%08x", sts.Name, h.Sum32())
}

// startPod starts the containers of pod i that are not running; a pod
// started afresh runs the template as it is now (rev).
func (p *podRunner) startPod(ctx context.Context, sts *appsv1.StatefulSet, i int, rev string, s int, peers []string) {
	pod := fmt.Sprintf("%s-%d", sts.Name, i)
	p.mu.Lock()
	if _, ok := p.podRev[sts.Namespace+"/"+pod]; !ok {
		p.podRev[sts.Namespace+"/"+pod] = rev
	}
	p.mu.Unlock()
	for _, c := range sts.Spec.Template.Spec.Containers {
		key := sts.Namespace + "/" + pod + "/" + c.Name
		if err := p.ensure(ctx, key, sts, pod, c, s, i, peers); err != nil {
			p.log.Error(err, "start container", "pod", pod, "container", c.Name)
		}
	}
}

// nextToRoll is the pod a RollingUpdate replaces next, if any: none under
// OnDelete or while any pod is not ready (the StatefulSet controller
// takes one pod down at a time), else the highest ordinal at or above the
// partition still running another revision.
func (p *podRunner) nextToRoll(sts *appsv1.StatefulSet, replicas int, rev string, ready []bool) (int, bool) {
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return 0, false
	}
	partition := 0
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		partition = int(*ru.Partition)
	}
	for _, r := range ready {
		if !r {
			return 0, false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := replicas - 1; i >= partition; i-- {
		if p.podRev[podKey(sts, i)] != rev {
			return i, true
		}
	}
	return 0, false
}

// rollPod replaces pod i: its processes stop (SIGTERM, as a pod deletion
// sends) and start again from the template as it is now.
func (p *podRunner) rollPod(ctx context.Context, sts *appsv1.StatefulSet, i int, rev string, s int, peers []string) {
	pod := fmt.Sprintf("%s-%d", sts.Name, i)
	p.mu.Lock()
	from := p.podRev[sts.Namespace+"/"+pod]
	var stopping []*proc
	for _, c := range sts.Spec.Template.Spec.Containers {
		key := sts.Namespace + "/" + pod + "/" + c.Name
		if pr := p.running[key]; pr != nil {
			pr.cancel()
			stopping = append(stopping, pr)
			delete(p.running, key)
		}
	}
	delete(p.podRev, sts.Namespace+"/"+pod)
	p.mu.Unlock()
	p.log.Info("rolling pod onto the new template", "pod", pod, "from", from, "to", rev)
	for _, pr := range stopping {
		<-pr.done
	}
	p.startPod(ctx, sts, i, rev, s, peers)
}

// reportStatus writes the StatefulSet's status as its controller would,
// judging a pod ready as the kubelet would: both its processes answer their
// readiness probe (ready[i]).
func (p *podRunner) reportStatus(ctx context.Context, sts *appsv1.StatefulSet, replicas int, rev string, ready []bool) error {
	var nready, updated int32
	current := rev
	p.mu.Lock()
	for i := range replicas {
		if ready[i] {
			nready++
		}
		switch r := p.podRev[podKey(sts, i)]; {
		case r == rev:
			updated++
		case r != "" && current == rev:
			current = r // the revision the update moves pods from
		}
	}
	p.mu.Unlock()
	n := int32(replicas)
	currentReplicas := n - updated
	if current == rev {
		currentReplicas = n
	}
	want := appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: nready, AvailableReplicas: nready,
		CurrentReplicas: currentReplicas, UpdatedReplicas: updated, CurrentRevision: current, UpdateRevision: rev}
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
	// A process group of its own: a Ctrl-C at make dev's terminal reaches
	// devenv alone, which stops the pods as the kubelet would (SIGTERM,
	// then a grace period), instead of every process at once, each logged
	// as a crash and started again. If devenv dies, the kernel sends
	// SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
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
			case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
				// The container's own limit in bytes (the operator asks
				// only when there is one; the kubelet would answer the
				// node's memory otherwise, which a process here is not
				// bound by either).
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
					v = strconv.FormatInt(q.Value(), 10)
				}
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
