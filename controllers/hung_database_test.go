package controllers

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestADatabaseThatStopsAnsweringIsReported: a rollout's database, opened
// and serving, stops answering with its TCP connections up (the server
// hung). The reconcile's queries had no deadline: it waited for good,
// holding a worker, and the rollout's status went on saying all was well.
// The data plane's part of a reconcile is bounded (DataPlaneTimeout, 8 s
// in this suite): the rollout reports DataPlaneError, saying the database
// did not answer, and recovers once it answers again.
func TestADatabaseThatStopsAnsweringIsReported(t *testing.T) {
	f, p := behindProxy(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("hung", "pilot"))).To(Succeed())
	f.waitStage("hung", "pilot", persistencev1alpha1.StageDualWrite)

	degraded := func() string {
		c := condition(f.get("hung"), persistencev1alpha1.ConditionDegraded)
		if c == nil || c.Status != metav1.ConditionTrue {
			return ""
		}
		return c.Reason + ": " + c.Message
	}
	p.freeze()
	f.g.Eventually(degraded, "40s").Should(And(HavePrefix(persistencev1alpha1.ReasonDataPlaneError+": "),
		ContainSubstring("the database did not answer within 8s")))
	t.Logf("the hung database's rollout: %s", degraded())

	p.thaw()
	f.g.Eventually(degraded, "40s").Should(BeEmpty())
}

// TestADeletionWhileTheDatabaseHangsSaysSo: a RollbackToLegacy deletion
// while the rollout's database hangs is held (the rollback cannot be
// done), saying the database did not answer, instead of a finalizer that
// waits for good with nothing in status; once the database answers, the
// rollback is carried out and the rollout goes.
func TestADeletionWhileTheDatabaseHangsSaysSo(t *testing.T) {
	f, p := behindProxy(t)
	ctx := context.Background()
	ro := f.rollout("hung-delete", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.waitStage("hung-delete", "pilot", persistencev1alpha1.StageDualWrite)

	p.freeze()
	f.g.Expect(k8s.Delete(ctx, f.get("hung-delete"))).To(Succeed())
	f.g.Eventually(func() string { return f.get("hung-delete").Status.WaitingFor }, "40s").Should(And(
		HavePrefix("deletion blocked: "), ContainSubstring("the database did not answer within 8s")))

	p.thaw()
	f.g.Eventually(func() bool { return f.gone("hung-delete") }, "60s").Should(BeTrue())
	states, err := f.store.Cohorts(ctx, f.ns+"/hung-delete")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(states).To(BeEmpty(), "rolled back and forgotten")
}

// behindProxy is a fixture whose database Secret names a freezableProxy
// in front of its database.
func behindProxy(t *testing.T) (*fixture, *proxy) {
	f := newFixture(t)
	u, err := url.Parse(f.dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the test moves the database's host and port in a postgres:// URL; DATABASE_URL is not one")
	}
	p := freezableProxy(t, u.Host)
	u.Host = p.addr
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(u.String()) })
	return f, p
}

// proxy forwards connections to a database; freeze stops passing bytes
// either way (the connections stay open, as a hung server's do), thaw
// passes them again.
type proxy struct {
	addr   string
	mu     sync.Mutex
	frozen chan struct{} // closed while not frozen
}

func freezableProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), frozen: make(chan struct{})}
	close(p.frozen)
	var mu sync.Mutex
	var conns []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			keep(in)
			keep(out)
			go p.pass(out, in)
			go p.pass(in, out)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		p.thaw()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return p
}

// pass copies from src to dst, holding each chunk while frozen.
func (p *proxy) pass(dst io.WriteCloser, src io.Reader) {
	defer func() { _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			wait := p.frozen
			p.mu.Unlock()
			<-wait
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.frozen:
		p.frozen = make(chan struct{})
	default: // frozen already
	}
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.frozen:
	default:
		close(p.frozen)
	}
}
