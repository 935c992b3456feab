// Package e2e runs the whole system as `make dev` does (internal/devenv): a
// real control plane, a real PostgreSQL, the manager, and real gateway and
// syncer processes per shard, and drives it as the platform team and the
// students would: kubectl-style objects and REST saves.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/devenv"
	"github.com/yawp/persistence-operator/internal/loadgen"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
)

var env *devenv.Env

func assetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("../../hack/build-envtest.sh", "--print-dir").Output()
	return strings.TrimSpace(string(out)), err
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// The postgres OS user must reach the data directory.
	_ = os.Chmod(dir, 0o755)

	// The binaries the pods run, built from this tree.
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../../cmd/gateway", "../../cmd/syncer")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gateway and syncer: %v\n%s", err, out)
		return 1
	}
	assets, err := assetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest binaries: run make envtest:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err = devenv.Start(ctx, devenv.Options{
		CRDs: "../../config/crd/bases", State: filepath.Join(dir, "state"), Bin: bin, AssetsDir: assets,
		BasePort: 28000, PollInterval: 200 * time.Millisecond, Log: ctrl.Log.WithName("e2e"),
		MetricsAddr: managerMetricsAddr,
		// Small backfill batches, so a backfill made slow by a rollout's
		// spec.gateway.syncer.backfillRate can be killed mid-way.
		SyncerArgs: []string{"--backfill-batch=10"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the system:", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := env.Run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	var stopProm func()
	prom, stopProm, err = startPrometheus(ctx, filepath.Join(dir, "prometheus"), env)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "start Prometheus:", err)
	} else {
		code = m.Run()
		stopProm()
	}
	cancel()
	<-done
	env.Stop()
	if code != 0 {
		// Leave the processes' logs where a person can read them.
		logs, _ := filepath.Glob(filepath.Join(dir, "state", "logs", "*.log"))
		logs = append(logs, filepath.Join(dir, "prometheus", "prometheus.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			fmt.Fprintf(os.Stderr, "==> %s (last 2000 bytes)\n%s\n", filepath.Base(l), tail(b, 2000))
		}
	}
	return code
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func token(t *testing.T, tenant, user string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(env.TokenKey), auth.Claims{Tenant: tenant, User: user, Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call makes a REST request to a gateway and decodes the JSON answer.
func call(method, url, tok string, body any, out any, header ...string) (int, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

func TestRolloutWithRealShards(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	ctx := context.Background()

	// The platform team applies a paused rollout: the gateway comes up,
	// nothing moves yet.
	ro := &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e", Namespace: "default"},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{
			Gateway: persistencev1alpha1.GatewaySpec{Image: "persistence-operator:e2e", Shards: 2,
				TokenSecretRef: &persistencev1alpha1.SecretKeyRef{Name: "demo-tokens", Key: "key"}},
			Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "demo-database", Key: "dsn"},
				ServiceSecretRef: &persistencev1alpha1.SecretKeyRef{Name: "demo-database", Key: "service-dsn"}},
			Paused: true,
			Cohorts: []persistencev1alpha1.CohortSpec{
				{Name: "pilot", Tenants: []string{"school-1", "school-2"}, Soak: metav1.Duration{Duration: 2 * time.Second}},
				{Name: "rest", Buckets: &persistencev1alpha1.BucketRange{From: 0, To: 100}, Soak: metav1.Duration{Duration: 2 * time.Second}},
			},
			Gates: persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: 30 * time.Second}},
		},
	}
	g.Expect(env.Client.Create(ctx, ro)).To(Succeed())

	// Students save through both shards' gateways while legacy is all there
	// is.
	alice, carol := token(t, "school-1", "alice"), token(t, "school-3", "carol")
	var gw0, gw1 string
	g.Eventually(func() (err error) {
		if gw0, err = env.GatewayURL(ctx, "default", "e2e-gateway", 0); err != nil {
			return err
		}
		gw1, err = env.GatewayURL(ctx, "default", "e2e-gateway", 1)
		return err
	}).Should(Succeed())
	for _, gw := range []string{gw0, gw1} {
		g.Eventually(func() error {
			_, err := call(http.MethodGet, gw+"/healthz", alice, nil, nil)
			return err
		}).Should(Succeed(), "gateway %s comes up", gw)
	}
	created := map[string]string{}
	for i, who := range []struct{ tok, text string }{{alice, "draft one"}, {alice, "draft two"}, {alice, "draft three"}, {carol, "notes"}} {
		var resp struct {
			Doc string `json:"doc"`
		}
		// Retried with the same Idempotency-Key until the shard's syncer
		// answers: a retry never creates a second document.
		g.Eventually(func() (int, error) {
			return call(http.MethodPost, []string{gw0, gw1}[i%2]+"/v1/documents", who.tok,
				map[string]string{"title": fmt.Sprint("doc ", i), "content": who.text}, &resp, contract.HeaderIdempotencyKey, fmt.Sprint("create-", i))
		}).Should(BeElementOf(http.StatusCreated, http.StatusOK))
		created[resp.Doc] = who.text
	}

	g.Expect(created).To(HaveLen(4), "four saves, four documents")

	// The team unpauses: with real syncers heartbeating, the barrier passes
	// and the pilot cohort reaches Backfill, its documents counted.
	updateSpec(g, ro, func(r *persistencev1alpha1.PersistenceRollout) { r.Spec.Paused = false })
	var cur persistencev1alpha1.PersistenceRollout
	g.Eventually(func() persistencev1alpha1.Stage {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		if len(cur.Status.Cohorts) == 0 {
			return ""
		}
		return cur.Status.Cohorts[0].Stage
	}).Should(BeElementOf(persistencev1alpha1.StageBackfill, persistencev1alpha1.StageVerify, persistencev1alpha1.StageLocalFirst, persistencev1alpha1.StageComplete))
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		return fmt.Sprintf("shards=%s documents=%d observed=%d", cur.Status.Shards, cur.Status.Cohorts[0].Documents, cur.Status.Cohorts[0].ShardsObserved)
	}).Should(Equal("shards=2/2 documents=3 observed=2"), "both shards report, and pilot holds alice's three documents")

	// The shards backfill and verify every document; with the gates holding
	// through the soak windows, both cohorts flip and complete.
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		var stages []string
		for _, c := range cur.Status.Cohorts {
			stages = append(stages, c.Name+"="+string(c.Stage))
		}
		return strings.Join(stages, ",") + " " + cur.Status.Progress
	}, 120*time.Second).Should(Equal("pilot=Complete,rest=Complete 2/2"))
	for _, c := range cur.Status.Cohorts {
		g.Expect(c.Mismatched).To(BeZero(), "cohort %s", c.Name)
		g.Expect(c.Backfilled).To(Equal(c.Documents), "cohort %s", c.Name)
	}
	g.Expect(cur.Status.Cohorts[1].Members).To(BeNumerically(">=", 1), "school-3 joined the bucket cohort")
	// Both gateway pods are ready (devenv's stand-in for the kubelet probes
	// them) and their syncers report: the rollout is Ready.
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		c := meta.FindStatusCondition(cur.Status.Conditions, persistencev1alpha1.ConditionReady)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}).Should(Equal("True/Complete: all 2 cohorts are complete; 2/2 gateway pods ready, 2/2 shards report"))

	// Every acknowledged save reads back unchanged through either gateway.
	for id, text := range created {
		tok := alice
		if text == "notes" {
			tok = carol
		}
		var doc struct {
			Content string `json:"content"`
		}
		code, err := call(http.MethodGet, gw1+"/v1/documents/"+id, tok, nil, &doc)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(doc.Content).To(Equal(text))
	}
	// A token for one school cannot read another school's document.
	for id, text := range created {
		if text == "notes" {
			code, _ := call(http.MethodGet, gw0+"/v1/documents/"+id, alice, nil, nil)
			g.Expect(code).To(Equal(http.StatusNotFound))
		}
	}

	// Now local-first: stock y-websocket clients edit each of alice's
	// documents through both gateway processes (one of them forwards to the
	// document's shard), one goes offline and comes back, and all converge
	// to the text the legacy API then reads through either gateway.
	var toks []string
	for _, u := range []string{"alice", "bob", "cy"} {
		toks = append(toks, token(t, "school-1", u))
	}
	ws := func(gw string) string {
		return "ws" + strings.TrimPrefix(gw, "http") + strings.TrimSuffix(contract.PathSync, "/")
	}
	for id, text := range created {
		if text == "notes" {
			continue
		}
		res := nodejs.RunWSClient(t, map[string]any{"urls": []string{ws(gw0), ws(gw1)}, "doc": id, "tokens": toks,
			"edits": 10, "offlineEdits": 5, "timeoutMs": 30000})
		for i, txt := range res.Texts {
			g.Expect(txt).To(Equal(res.Text), "client %d of %s", i, id)
		}
		// The offline client only inserts (at random places, so a tag may
		// land inside an earlier one), and nobody else saw its tags before
		// it reconnected: all five arrived, every character of them.
		g.Expect(strings.Count(res.Text, "{")).To(Equal(5), "the offline client's five edits arrived")
		g.Expect(strings.Count(res.Text, "}")).To(Equal(5), "the offline client's five edits arrived whole")
		for _, gw := range []string{gw0, gw1} {
			var doc struct {
				Content string `json:"content"`
			}
			code, err := call(http.MethodGet, gw+"/v1/documents/"+id, alice, nil, &doc)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(doc.Content).To(Equal(res.Text), "REST through %s reads what the Yjs clients converged to", gw)
		}
	}
}

func TestInjectedMismatchRollsBackAndLosesNothing(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	ctx := context.Background()
	ns, dsn := rolloutNamespace(g, "e2e-rollback", "rollback")
	ro := rolloutIn(ns.Name, "rb", persistencev1alpha1.CohortSpec{Name: "only", Tenants: []string{"school-9"}, Soak: metav1.Duration{Duration: time.Hour}})
	ro.Spec.Paused = true
	g.Expect(env.Client.Create(ctx, ro)).To(Succeed())
	var gw string
	g.Eventually(func() (err error) { gw, err = env.GatewayURL(ctx, ns.Name, "rb-gateway", 0); return err }).Should(Succeed())
	dana := token(t, "school-9", "dana")
	saved := map[string]string{}
	for i, text := range []string{"first essay", "second essay"} {
		var resp struct {
			Doc string `json:"doc"`
		}
		g.Eventually(func() (int, error) {
			return call(http.MethodPost, gw+"/v1/documents", dana, map[string]string{"content": text}, &resp,
				contract.HeaderIdempotencyKey, fmt.Sprint("rb-create-", i))
		}).Should(BeElementOf(http.StatusCreated, http.StatusOK))
		saved[resp.Doc] = text
	}
	updateSpec(g, ro, func(r *persistencev1alpha1.PersistenceRollout) { r.Spec.Paused = false })
	var cur persistencev1alpha1.PersistenceRollout
	stage := func() persistencev1alpha1.Stage {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		if len(cur.Status.Cohorts) == 0 {
			return ""
		}
		return cur.Status.Cohorts[0].Stage
	}
	g.Eventually(stage).Should(Equal(persistencev1alpha1.StageVerify))

	// Someone writes a legacy row behind the gateway's back: verification
	// finds the two representations differ, and the gate rolls the cohort
	// back to Legacy.
	var victim string
	for id := range saved {
		victim = id
		break
	}
	conn, err := pgx.Connect(ctx, dsn)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, `UPDATE documents SET content = 'edited outside the gateway' WHERE doc_id = $1`, victim)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(stage).Should(Equal(persistencev1alpha1.StageLegacy))
	g.Expect(cur.Status.Cohorts[0].Outcome).To(Equal(persistencev1alpha1.OutcomeRolledBack))
	// The platform team's Prometheus pages about it: the chart's alert on
	// gate rollbacks fires for this cohort (the rollback created its
	// counter's series, which increase() alone would miss).
	g.Eventually(func() ([]promAlert, error) {
		return prom.alerts(map[string]string{"alertname": "PersistenceRolloutGateRollback", "namespace": ns.Name, "rollout": "rb", "cohort": "only"})
	}).Should(ConsistOf(HaveField("State", "firing")))
	last := cur.Status.History[len(cur.Status.History)-1]
	g.Expect(last.Reason).To(Equal(persistencev1alpha1.ReasonGateFailed))
	g.Expect(last.Message).To(ContainSubstring(victim), "the sample names the mismatched document")

	// Nothing acknowledged is lost: legacy is authoritative again and was
	// written all along. The out-of-band edit is what the legacy row holds
	// and what a read returns now; the victim's acknowledged text stays in
	// its save history.
	for id, text := range saved {
		var doc struct {
			Content string `json:"content"`
		}
		if id == victim {
			g.Eventually(func() string {
				_, _ = call(http.MethodGet, gw+"/v1/documents/"+id, dana, nil, &doc)
				return doc.Content
			}).Should(Equal("edited outside the gateway"))
			code, err := call(http.MethodGet, gw+"/v1/documents/"+id+"/revisions/1", dana, nil, &doc)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(doc.Content).To(Equal(text))
			continue
		}
		code, err := call(http.MethodGet, gw+"/v1/documents/"+id, dana, nil, &doc)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(doc.Content).To(Equal(text))
	}
}

// TestThreeCohortsUnderLoad is the whole story on real processes: legacy
// documents exist, the workload generator (legacy and local-first clients,
// offline episodes, out-of-band legacy writes) runs throughout, and a
// rollout of three cohorts with soak windows of seconds goes to Complete.
// On the way a syncer is SIGKILLed in the middle of the pilot's backfill
// (it resumes: every document gets exactly one genesis), and a legacy row
// changed behind the gateway during the second cohort's soak rolls that
// cohort back automatically; a retry completes it. At the end the
// workload's audit passes: every acknowledged save present, legacy equal
// to Yjs, evidence complete.
func TestThreeCohortsUnderLoad(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(120 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx := context.Background()
	ns, dsn := rolloutNamespace(g, "e2e-load", "load")
	pool, err := pgxpool.New(ctx, dsn)
	g.Expect(err).NotTo(HaveOccurred())
	defer pool.Close()
	g.Expect(migrations.Up(ctx, pool)).To(Succeed())

	// The legacy store's documents before any rollout.
	schools := []string{"school-1", "school-2", "school-3", "school-4", "school-5", "school-6"}
	const seeded = 480
	n, err := loadgen.SeedLegacy(ctx, pool, loadgen.LegacySeed{Tenants: schools, Docs: seeded, Shards: 2})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n).To(Equal(seeded))

	secs := func(s float64) metav1.Duration {
		return metav1.Duration{Duration: time.Duration(s * float64(time.Second))}
	}
	ro := rolloutIn(ns.Name, "load",
		persistencev1alpha1.CohortSpec{Name: "pilot", Tenants: []string{"school-1", "school-2"}, Soak: secs(2), PostFlipSoak: ptrTo(secs(1))},
		// Long enough for a verification pass (1 s), a report (2 s) and the
		// controller to catch the outside edit on a loaded machine.
		persistencev1alpha1.CohortSpec{Name: "grade", Tenants: []string{"school-3", "school-4"}, Soak: secs(12), PostFlipSoak: ptrTo(secs(1))},
		persistencev1alpha1.CohortSpec{Name: "rest", Buckets: &persistencev1alpha1.BucketRange{From: 0, To: 100}, Soak: secs(2), PostFlipSoak: ptrTo(secs(1))},
	)
	// Slow enough (80 documents per shard and cohort) to kill a syncer in
	// the middle of it.
	ro.Spec.Gateway.Syncer = persistencev1alpha1.SyncerSpec{BackfillRate: ptrTo[int32](60)}
	ro.Spec.Paused = true
	g.Expect(env.Client.Create(ctx, ro)).To(Succeed())
	var gw0, gw1 string
	g.Eventually(func() (err error) {
		if gw0, err = env.GatewayURL(ctx, ns.Name, "load-gateway", 0); err != nil {
			return err
		}
		gw1, err = env.GatewayURL(ctx, ns.Name, "load-gateway", 1)
		return err
	}).Should(Succeed())
	for _, gw := range []string{gw0, gw1} {
		g.Eventually(func() error { _, err := call(http.MethodGet, gw+"/healthz", "", nil, nil); return err }).Should(Succeed())
	}

	// The workload starts and runs until the end.
	var progress strings.Builder
	gen, err := loadgen.New(ctx, loadgen.Config{Gateways: []string{gw0, gw1}, TokenKey: []byte(env.TokenKey), DatabaseURL: dsn,
		Tenants: len(schools), Docs: 3, Seed: 11, Duration: 10 * time.Minute, Concurrency: 4, Mix: loadgen.DefaultMix,
		StateDir: t.TempDir(), Progress: &syncWriter{w: &progress}, ProgressEvery: 5 * time.Second})
	g.Expect(err).NotTo(HaveOccurred())
	defer gen.Close()
	g.Eventually(func() error { return gen.Seed(ctx) }).Should(Succeed())
	wctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() { loadDone <- gen.Run(wctx) }()
	var loadErr error
	var stopOnce sync.Once
	stop := func() error {
		stopOnce.Do(func() { stopLoad(); loadErr = <-loadDone })
		return loadErr
	}
	defer func() { _ = stop() }()

	var cur persistencev1alpha1.PersistenceRollout
	cohort := func(name string) persistencev1alpha1.CohortStatus {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		for _, c := range cur.Status.Cohorts {
			if c.Name == name {
				return c
			}
		}
		return persistencev1alpha1.CohortStatus{}
	}
	updateSpec(g, ro, func(r *persistencev1alpha1.PersistenceRollout) { r.Spec.Paused = false })

	// The pilot's backfill on shard 0 is half done: its syncer is killed.
	pilotOnShard0 := func() (total, done int) {
		_ = pool.QueryRow(ctx, `SELECT count(*), count(s.doc_id) FROM documents d LEFT JOIN yjs_snapshots s USING (doc_id)
			WHERE d.shard = 0 AND d.tenant = ANY($1) AND d.doc_id LIKE 'seed-%'`, schools[:2]).Scan(&total, &done)
		return total, done
	}
	g.Eventually(func() bool { total, done := pilotOnShard0(); return done > 0 && done < total }, 120*time.Second, 10*time.Millisecond).
		Should(BeTrue(), "the pilot's backfill on shard 0 starts")
	pid, err := env.KillContainer(ns.Name, "load-gateway-0", contract.ContainerSyncer)
	g.Expect(err).NotTo(HaveOccurred())
	total, done := pilotOnShard0()
	t.Logf("killed the syncer of shard 0 (pid %d) with %d of %d pilot documents backfilled", pid, done, total)
	g.Expect(done).To(BeNumerically("<", total), "killed before the backfill finished")

	// It comes back, resumes and the pilot completes.
	g.Eventually(func() persistencev1alpha1.Stage { return cohort("pilot").Stage }).Should(Equal(persistencev1alpha1.StageComplete))
	var twice int
	g.Expect(pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT doc_id FROM yjs_updates WHERE origin = $1 GROUP BY doc_id HAVING count(*) > 1) x`,
		store.OriginBackfill).Scan(&twice)).To(Succeed())
	g.Expect(twice).To(BeZero(), "no document got a second genesis after the restart")
	total, done = pilotOnShard0()
	g.Expect(done).To(Equal(total))

	// During the second cohort's soak a legacy row is changed behind the
	// gateway: verification finds it, the gate rolls the cohort back.
	g.Eventually(func() persistencev1alpha1.Stage { return cohort("grade").Stage }).Should(Equal(persistencev1alpha1.StageVerify))
	var victim, before string
	g.Expect(pool.QueryRow(ctx, `SELECT doc_id, content FROM documents WHERE tenant = 'school-3' AND doc_id LIKE 'seed-%' ORDER BY doc_id LIMIT 1`).
		Scan(&victim, &before)).To(Succeed())
	_, err = pool.Exec(ctx, `UPDATE documents SET content = content || ' (edited behind the gateway)' WHERE doc_id = $1`, victim)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() persistencev1alpha1.Outcome { return cohort("grade").Outcome }).Should(Equal(persistencev1alpha1.OutcomeRolledBack))
	g.Expect(cohort("grade").Stage).To(Equal(persistencev1alpha1.StageLegacy))
	g.Expect(cohort("rest").Stage).To(BeElementOf(persistencev1alpha1.Stage(""), persistencev1alpha1.StageLegacy), "the next cohort never started")
	// Nothing lost: the out-of-band change is in the document (repaired in,
	// not dropped), and what it replaced is in the save history.
	var now string
	g.Expect(pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, victim).Scan(&now)).To(Succeed())
	g.Expect(now).To(ContainSubstring("(edited behind the gateway)"))
	var kept int
	g.Expect(pool.QueryRow(ctx, `SELECT count(*) FROM document_revisions WHERE doc_id = $1
		AND (content = $2 OR content_sha256 = encode(sha256(convert_to($2, 'UTF8')), 'hex'))`, victim, before).Scan(&kept)).To(Succeed())
	g.Expect(kept).To(BeNumerically(">=", 1), "the text before the outside edit stays in the save history")

	// While the cohort is back at Legacy the legacy application edits
	// another of its documents directly, as it may there: the syncer
	// brings the Yjs side up to it while still at Legacy (a repair in the
	// document's ledger), so the retry does not count it as a mismatch
	// of its own and roll back again.
	var atLegacy string
	g.Expect(pool.QueryRow(ctx, `SELECT doc_id FROM documents WHERE tenant = 'school-3' AND doc_id LIKE 'seed-%' AND doc_id <> $1 ORDER BY doc_id LIMIT 1`, victim).
		Scan(&atLegacy)).To(Succeed())
	_, err = pool.Exec(ctx, `UPDATE documents SET content = content || ' (edited in the legacy app while rolled back)' WHERE doc_id = $1`, atLegacy)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() (n int) {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM save_ledger WHERE doc_id = $1 AND kind = 'repaired'`, atLegacy).Scan(&n)
		return n
	}).Should(Equal(1), "the edit made at Legacy is reconciled there")

	// The platform team retries; with no more outside edits, everything
	// completes, at the first retry.
	updateSpec(g, ro, func(r *persistencev1alpha1.PersistenceRollout) { r.Spec.Cohorts[1].Attempt = 2 })
	g.Eventually(func() string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		var stages []string
		for _, c := range cur.Status.Cohorts {
			stages = append(stages, c.Name+"="+string(c.Stage))
		}
		return strings.Join(stages, ",")
	}, 180*time.Second).Should(Equal("pilot=Complete,grade=Complete,rest=Complete"))
	g.Expect(cohort("grade").Attempt).To(BeEquivalentTo(2), "the retry completed without another rollback")
	for _, h := range cur.Status.History {
		g.Expect(h.Cohort == "grade" && h.Attempt == 2 && (h.Outcome == persistencev1alpha1.OutcomeRolledBack || h.Outcome == persistencev1alpha1.OutcomeHalted)).To(BeFalse(),
			"attempt 2 of grade ended: %s %s", h.Reason, h.Message)
	}
	var edited string
	g.Expect(pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, atLegacy).Scan(&edited)).To(Succeed())
	g.Expect(edited).To(ContainSubstring("(edited in the legacy app while rolled back)"))
	// Verification goes on at Complete; counts are per epoch, so the last
	// flip's first pass may still be running.
	g.Eventually(func() []string {
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &cur)
		var bad []string
		for _, c := range cur.Status.Cohorts {
			if c.Backfilled != c.Documents || c.Verified != c.Documents || c.Mismatched != 0 {
				bad = append(bad, fmt.Sprintf("%s: documents %d backfilled %d verified %d mismatched %d", c.Name, c.Documents, c.Backfilled, c.Verified, c.Mismatched))
			}
		}
		return bad
	}, 30*time.Second).Should(BeEmpty())

	// The audit of everything the workload was told was saved.
	g.Expect(stop()).To(Or(BeNil(), MatchError(context.Canceled)))
	rep, err := gen.Audit(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	var out strings.Builder
	rep.Print(&out)
	t.Logf("workload progress:\n%s\naudit:\n%s", progress.String(), out.String())
	g.Expect(rep.OK()).To(BeTrue(), "the audit passes")
	legacy, yjsAcks := gen.Acks()
	g.Expect(len(legacy)).To(BeNumerically(">", 50), "legacy saves were made throughout")
	g.Expect(yjsAcks).NotTo(BeEmpty(), "local-first clients synced after the flips")
}

func ptrTo[T any](v T) *T { return &v }

// updateSpec edits ro's spec as the platform team would, retrying on
// conflicts with the controller's writes.
func updateSpec(g *WithT, ro *persistencev1alpha1.PersistenceRollout, edit func(*persistencev1alpha1.PersistenceRollout)) {
	g.Eventually(func() error {
		var cur persistencev1alpha1.PersistenceRollout
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), &cur); err != nil {
			return err
		}
		edit(&cur)
		return env.Client.Update(context.Background(), &cur)
	}).Should(Succeed())
}

// rolloutNamespace creates a namespace with its own database (a database
// serves one rollout) and the Secret "db" holding its DSN (key dsn) and the
// token key (key tokens).
func rolloutNamespace(g *WithT, name, database string) (*corev1.Namespace, string) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	g.Expect(env.Client.Create(ctx, ns)).To(Succeed())
	dsn, err := env.CreateDatabase(ctx, database)
	g.Expect(err).NotTo(HaveOccurred())
	// The syncers connect as a yawp_service member, on a database the
	// operator (the owner) migrates: they wait for it.
	serviceDSN, err := devenv.AsSyncerRole(dsn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns.Name},
		Data: map[string][]byte{"dsn": []byte(dsn), "service-dsn": []byte(serviceDSN), "tokens": []byte(env.TokenKey)}})).To(Succeed())
	return ns, dsn
}

// rolloutIn is a rollout of two shards in namespace ns, made by
// rolloutNamespace: its database and token key come from the Secret "db",
// and reports older than 30 s fail its gates.
func rolloutIn(ns, name string, cohorts ...persistencev1alpha1.CohortSpec) *persistencev1alpha1.PersistenceRollout {
	return &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{
			Gateway: persistencev1alpha1.GatewaySpec{Image: "persistence-operator:e2e", Shards: 2,
				TokenSecretRef: &persistencev1alpha1.SecretKeyRef{Name: "db", Key: "tokens"}},
			Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "db", Key: "dsn"},
				ServiceSecretRef: &persistencev1alpha1.SecretKeyRef{Name: "db", Key: "service-dsn"}},
			Cohorts: cohorts,
			Gates:   persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: 30 * time.Second}},
		},
	}
}

// syncWriter serialises writes of the workload's progress lines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
