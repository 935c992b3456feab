package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the benchmark (syncer, gateway, Hocuspocus).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// startProc starts binary with args and env (added to PATH and HOME),
// output to logPath. The child gets SIGTERM if the driver dies.
func startProc(name, logPath string, env []string, binary string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports an error if the process is gone.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); its log %s ends:\n%s", p.name, p.err, p.log, tail(p.log, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits (then kills after 15 s).
func (p *proc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// totalRSS sums the RSS of procs in KiB.
func totalRSS(procs ...*proc) (int64, error) {
	var sum int64
	for _, p := range procs {
		if err := p.exited(); err != nil {
			return 0, err
		}
		kib, err := rssKiB(p.pid())
		if err != nil {
			return 0, err
		}
		sum += kib
	}
	return sum, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, the process dies or ctx ends.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if err := p.exited(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if res, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %v; its log %s ends:\n%s", p.name, url, timeout, p.log, tail(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadgen is one run of test/yjs/bench-gateway.mjs, driven line by line.
type loadgen struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan map[string]any
	done  chan struct{}
	err   error
}

func startLoadgen(node, script string, cfg any) (*loadgen, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, script, string(raw))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the load generator: %w", err)
	}
	l := &loadgen{cmd: cmd, stdin: stdin, lines: make(chan map[string]any, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 256<<20) // the result line carries every latency sample
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil || m["event"] == nil {
				// The client libraries may log to stdout.
				line := sc.Text()
				if len(line) > 300 {
					line = line[:300] + "..."
				}
				fmt.Fprintln(os.Stderr, "loadgen:", line)
				continue
			}
			l.lines <- m
		}
		close(l.lines)
		l.err = cmd.Wait()
		close(l.done)
	}()
	return l, nil
}

// expect waits for the next event, which must be want.
func (l *loadgen) expect(ctx context.Context, want string, timeout time.Duration) (map[string]any, error) {
	select {
	case m, ok := <-l.lines:
		if !ok {
			<-l.done
			return nil, fmt.Errorf("the load generator exited (%v) before %q", l.err, want)
		}
		if m["event"] == "error" {
			return nil, fmt.Errorf("the load generator failed: %v", m["error"])
		}
		if m["event"] != want {
			return nil, fmt.Errorf("the load generator said %q, expected %q", m["event"], want)
		}
		return m, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("the load generator did not report %q within %v", want, timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// proceed lets the load generator go on to its next phase.
func (l *loadgen) proceed() error {
	_, err := io.WriteString(l.stdin, "go\n")
	return err
}

func (l *loadgen) stop() {
	_ = l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
}

// readyLine reads Hocuspocus's {"ready":true,"port":N,"version":"..."}
// line from its log.
func readyLine(ctx context.Context, p *proc, timeout time.Duration) (int, string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := p.exited(); err != nil {
			return 0, "", err
		}
		b, _ := os.ReadFile(p.log)
		for _, l := range strings.Split(string(b), "\n") {
			var m struct {
				Ready   bool   `json:"ready"`
				Port    int    `json:"port"`
				Version string `json:"version"`
			}
			if json.Unmarshal([]byte(l), &m) == nil && m.Ready && m.Port > 0 {
				return m.Port, m.Version, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, "", errors.New(p.name + " printed no ready line; its log ends:\n" + tail(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100
// on Linux whatever the kernel's HZ).
const userHZ = 100

// cpuTicks is the user+system CPU time pid has used, in 1/userHZ s.
func cpuTicks(pid int) (int64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// After "pid (comm)": state is f[0], utime f[11], stime f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ut + st, nil
}

// procStat returns the fields of /proc/<pid>/stat after the command name.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

// familyTicks is the CPU time of pid and its direct children (a
// postmaster and its backends).
func familyTicks(pid int) int64 {
	total, _ := cpuTicks(pid)
	ents, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pid)
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := procStat(child); err == nil && f[1] == want {
			t, _ := cpuTicks(child)
			total += t
		}
	}
	return total
}
