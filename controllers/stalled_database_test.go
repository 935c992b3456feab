package controllers

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestAStalledDatabaseHoldsUpNoOtherRollout: the controller opened a
// rollout's data plane under one lock for every database, with no bound on
// the connect, and reconciled one rollout at a time. A rollout whose
// database host takes connections and never answers (a server hung, a
// firewall dropping packets after the handshake) therefore held up every
// other rollout the operator manages, for as long as the connect waited:
// without a deadline, for good. The other rollouts reconcile as they would
// alone; the stalled one reports that its database did not answer (Degraded,
// DataPlaneError), and proceeds once its Secret names a database that does.
func TestAStalledDatabaseHoldsUpNoOtherRollout(t *testing.T) {
	a, b := newFixture(t), newFixture(t)
	ctx := context.Background()
	u, err := url.Parse(a.dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the test moves the database's host and port in a postgres:// URL; DATABASE_URL is not one")
	}
	// The other rollout is done within less than the 4 s a reconcile waits
	// for a data plane (suite_test.go), while the stalled rollout's
	// reconcile waits: the stall lasts until the test ends.
	b.g.SetDefaultEventuallyTimeout(3 * time.Second)

	addr, accepted := stalledServer(t)
	u.Host = addr
	a.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(u.String()) })
	a.g.Expect(k8s.Create(ctx, a.rollout("stalled", "pilot"))).To(Succeed())
	// The controller is connecting to the stalled server.
	a.g.Eventually(accepted).Should(Receive())

	b.g.Expect(k8s.Create(ctx, b.rollout("healthy", "pilot"))).To(Succeed())
	b.g.Eventually(func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: b.ns, Name: "healthy-gateway"}, &appsv1.StatefulSet{})
	}).Should(Succeed(), "the other rollout's gateway was not applied while one database stalled")
	b.waitStage("healthy", "pilot", persistencev1alpha1.StageDualWrite)
	b.healthyShards("healthy")
	b.waitStage("healthy", "pilot", persistencev1alpha1.StageBackfill)

	degraded := func() string {
		c := condition(a.get("stalled"), persistencev1alpha1.ConditionDegraded)
		if c == nil || c.Status != metav1.ConditionTrue {
			return ""
		}
		return c.Reason + ": " + c.Message
	}
	a.g.Eventually(degraded).Should(And(HavePrefix(persistencev1alpha1.ReasonDataPlaneError+": "),
		ContainSubstring("did not answer"), ContainSubstring("the gateway keeps its last template")))
	t.Logf("the stalled rollout: %s", degraded())

	// Its Secret names a database that answers: the rollout proceeds.
	a.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(a.dsn) })
	a.waitStage("stalled", "pilot", persistencev1alpha1.StageDualWrite)
	a.g.Eventually(func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "stalled-gateway"}, &appsv1.StatefulSet{})
	}).Should(Succeed())
	a.g.Eventually(degraded).Should(BeEmpty())
}

// stalledServer listens on a local address, accepts connections and never
// answers them, as a hung server does; accepted receives once per
// connection. The connections are closed when the test ends.
func stalledServer(t *testing.T) (string, <-chan struct{}) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 100)
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return l.Addr().String(), accepted
}
