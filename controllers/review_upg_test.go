package controllers

import (
	"context"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/migrations"
)

// TestGatewayNotRolledOntoASchemaThatCannotBeMigrated: an upgraded
// operator migrates the schema before it applies the gateway, but applied
// the gateway also when the migration failed (a migration refused by the
// data, the advisory lock not had in 30 minutes). The StatefulSet then
// replaced its last pod with one whose syncer waits for, or fails at, a
// schema it cannot have: that shard's students could not save until a
// person repaired the database, while the pods of the earlier version had
// been serving. The gateway keeps its last template until the schema is at
// this version (Degraded, DataPlaneError, saying why), then rolls.
func TestGatewayNotRolledOntoASchemaThatCannotBeMigrated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("upg", "pilot"))).To(Succeed())
	image := func() string {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "upg-gateway"}, &sts); err != nil {
			return err.Error()
		}
		return sts.Spec.Template.Spec.Containers[0].Image
	}
	f.g.Eventually(image).Should(Equal("persistence-operator:test"))
	pool, err := pgxpool.New(ctx, f.dsn)
	f.g.Expect(err).NotTo(HaveOccurred())
	defer pool.Close()

	// The schema as a failed upgrade leaves it: migration 17 and those
	// after it not recorded, and 17 refused when tried again (it adds a
	// column, spec_uid, without IF NOT EXISTS, and the column exists).
	const failing = 17
	_, err = pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version_id >= $1`, failing)
	f.g.Expect(err).NotTo(HaveOccurred())
	// The operator opens the database anew (another DSN for it) and the
	// rollout asks for a new image, as an upgrade does.
	f.editDatabaseSecret(func(d map[string][]byte) {
		dsn := string(d["dsn"])
		switch {
		case !strings.Contains(dsn, "://"):
			dsn += " application_name=upgraded"
		case strings.Contains(dsn, "?"):
			dsn += "&application_name=upgraded"
		default:
			dsn += "?application_name=upgraded"
		}
		d["dsn"] = []byte(dsn)
	})
	f.update("upg", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Gateway.Image = "persistence-operator:next" })
	f.g.Eventually(func() string {
		c := condition(f.get("upg"), persistencev1alpha1.ConditionDegraded)
		if c == nil {
			return ""
		}
		return c.Reason + ": " + c.Message
	}).Should(ContainSubstring("spec_uid"))
	f.g.Consistently(image, "2s").Should(Equal("persistence-operator:test"),
		"the gateway was rolled onto a schema the operator could not migrate")

	// Repaired, the schema is at this version and the gateway rolls.
	_, err = pool.Exec(ctx, `INSERT INTO schema_migrations (version_id, is_applied) SELECT v, true FROM generate_series($1::bigint, $2::bigint) v`,
		failing, migrations.Latest())
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Eventually(image, "60s").Should(Equal("persistence-operator:next"))
}

// TestGatewayPodsStartWithTheImageOfAnEarlierRelease: spec.gateway.image
// is the rollout's own (a manifest applied with kubectl keeps it), so an
// upgraded operator applies its pod template to the image of an earlier
// release until someone changes it. That image's binaries stop at start
// on a flag they do not define (Go's flag package exits 2): the template
// passed --spool-dir, new in this version, and the StatefulSet replaced a
// serving gateway pod with one in CrashLoopBackOff, its shard down. The
// template passes only the flags the first release's binaries define;
// what is newer goes in the environment, which an older binary ignores.
func TestGatewayPodsStartWithTheImageOfAnEarlierRelease(t *testing.T) {
	// The flags of the earliest release an upgrade starts from (5ed6fb9).
	earlier := map[string][]string{
		"gateway": {"internal-token", "listen", "metrics-listen", "peer-pattern", "peers", "pprof-listen",
			"protocol-poll", "shard", "shards", "sync-max-conns-per-user", "syncer", "token-key", "token-key-file"},
		"syncer": {"listen", "metrics-listen", "pprof-listen"},
	}
	ro := &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ns",
			Annotations: map[string]string{AnnotationProfiling: "enabled"}},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{
			Gateway:  persistencev1alpha1.GatewaySpec{Image: "img", Shards: 2},
			Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "db", Key: "dsn"}},
		},
	}
	for _, c := range gatewayStatefulSet(ro, true).Spec.Template.Spec.Containers {
		known, ok := earlier[*c.Name]
		if !ok {
			t.Errorf("container %s: which flags did the earlier release define?", *c.Name)
			continue
		}
		for _, a := range c.Args {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !slices.Contains(known, name) {
				t.Errorf("container %s: %s, a flag the earlier release's %s does not define: its pods would not start on that image", *c.Name, a, *c.Name)
			}
		}
	}
}

// TestGatewayNotRolledWhileTheDatabaseCannotBeReached: an upgraded
// operator that cannot reach the database (connection refused: PostgreSQL
// restarting, a network policy, a failover not yet done) cannot migrate
// it, nor learn whether it is migrated; migrations.Up said so with an error
// that was not migrations.ErrNotMigrated, and the gateway was rolled onto
// the new image anyway. Its pods' syncers then wait for a schema nobody
// has confirmed, and may never have (the migration may fail once the
// database is back): the same shard taken down that a failed migration
// would take down. The gateway keeps its last template until the schema
// is confirmed at this version (Degraded, DataPlaneError, saying why),
// then rolls.
func TestGatewayNotRolledWhileTheDatabaseCannotBeReached(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, err := url.Parse(f.dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the test moves the database's host and port in a postgres:// URL; DATABASE_URL is not one")
	}
	f.g.Expect(k8s.Create(ctx, f.rollout("down", "pilot"))).To(Succeed())
	image := func() string {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "down-gateway"}, &sts); err != nil {
			return err.Error()
		}
		return sts.Spec.Template.Spec.Containers[0].Image
	}
	f.g.Eventually(image).Should(Equal("persistence-operator:test"))

	// The database, as the upgraded operator sees it, behind an address
	// that refuses connections until the test opens it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	f.g.Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	f.g.Expect(l.Close()).To(Succeed())
	db := u.Host
	u.Host = addr
	f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(u.String()) })
	f.update("down", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Gateway.Image = "persistence-operator:next" })
	degraded := func() string {
		c := condition(f.get("down"), persistencev1alpha1.ConditionDegraded)
		if c == nil || c.Status != metav1.ConditionTrue {
			return ""
		}
		return c.Reason + ": " + c.Message
	}
	f.g.Eventually(degraded).Should(And(HavePrefix(persistencev1alpha1.ReasonDataPlaneError+": "), ContainSubstring("connection refused")))
	f.g.Consistently(image, "2s").Should(Equal("persistence-operator:test"),
		"the gateway was rolled while the operator could not reach the database to migrate it")
	f.g.Expect(degraded()).To(ContainSubstring("the gateway keeps its last template"))

	// The database is back: the operator migrates it (nothing is pending)
	// and the gateway rolls.
	l, err = net.Listen("tcp", addr)
	f.g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = l.Close() })
	go forward(l, db)
	f.g.Eventually(image, "60s").Should(Equal("persistence-operator:next"))
	f.g.Eventually(func() string { return f.ready("down") }).ShouldNot(ContainSubstring("connection refused"))
}

// forward copies every connection l accepts to and from addr, until l is
// closed.
func forward(l net.Listener, addr string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = in.Close() }()
			out, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer func() { _ = out.Close() }()
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			_, _ = io.Copy(in, out)
		}()
	}
}
