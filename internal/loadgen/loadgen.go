package loadgen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/gateway"
	"github.com/yawp/persistence-operator/internal/store"
)

// auditUser is the user the audit reads as.
const auditUser = "loadgen-audit"

// Mix weighs the kinds of operation. Legacy, LocalFirst and OutOfBand are
// relative weights of an operation's kind; Offline is the probability that
// a local-first operation starts an offline episode.
type Mix struct {
	Legacy     float64
	LocalFirst float64
	OutOfBand  float64
	Offline    float64
	// DivergentOutOfBand lets out-of-band writes also hit documents that
	// already have a Yjs representation in a legacy-authoritative stage
	// (DualWrite, Backfill, Verify): a divergence verification must find.
	// Without it they only hit documents of Legacy cohorts that have no
	// Yjs representation (a legacy writer before the rollout reached them).
	DivergentOutOfBand bool
}

// DefaultMix is `yawpctl loadgen`'s default.
var DefaultMix = Mix{Legacy: 0.6, LocalFirst: 0.35, OutOfBand: 0.05, Offline: 0.2}

// Config configures a workload.
type Config struct {
	// Gateways are gateway base URLs (http://host:port); workers spread
	// over them (any gateway routes any document).
	Gateways []string
	// TokenKey signs the per-tenant, per-user tokens (and the audit's
	// operator token).
	TokenKey []byte
	// DatabaseURL is optional: with it the workload writes out-of-band and
	// the audit reads the legacy rows and the Yjs log directly.
	DatabaseURL string
	// Tenants is the number of tenants, named TenantPrefix1..N.
	Tenants      int
	TenantPrefix string
	// Docs is the number of documents per tenant.
	Docs int
	// Seed makes document IDs and every choice repeatable.
	Seed uint64
	// Duration bounds the run; Ops (if positive) bounds the operations.
	Duration time.Duration
	Ops      int
	// Concurrency is the number of workers.
	Concurrency int
	Mix         Mix
	// StateDir holds the local-first clients' stores ("" = a temporary
	// directory, removed afterwards).
	StateDir string
	// Progress gets a progress line every ProgressEvery (default 1s).
	Progress      io.Writer
	ProgressEvery time.Duration
	HTTP          *http.Client
}

// Validate reports the first problem of c.
func (c *Config) Validate() error {
	switch {
	case len(c.Gateways) == 0:
		return errors.New("no gateway URL")
	case len(c.TokenKey) == 0:
		return errors.New("no token key")
	case c.Tenants < 1:
		return fmt.Errorf("tenants must be at least 1, got %d", c.Tenants)
	case c.Docs < 1:
		return fmt.Errorf("docs must be at least 1, got %d", c.Docs)
	case c.Duration <= 0 && c.Ops <= 0:
		return errors.New("give a positive duration or number of operations")
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency must be at least 1, got %d", c.Concurrency)
	}
	for _, g := range c.Gateways {
		if !strings.HasPrefix(g, "http://") && !strings.HasPrefix(g, "https://") {
			return fmt.Errorf("gateway %q: want an http:// or https:// URL", g)
		}
	}
	m := c.Mix
	for name, f := range map[string]float64{"legacy": m.Legacy, "local-first": m.LocalFirst, "out-of-band": m.OutOfBand, "offline": m.Offline} {
		if f < 0 || f > 1 {
			return fmt.Errorf("%s fraction %v is outside [0, 1]", name, f)
		}
	}
	if m.Legacy+m.LocalFirst+m.OutOfBand == 0 {
		return errors.New("the mix has no operations (legacy, local-first and out-of-band are all 0)")
	}
	if m.OutOfBand > 0 && c.DatabaseURL == "" {
		return errors.New("out-of-band writes need a database URL")
	}
	return nil
}

// document is one document of the workload.
type document struct {
	id, tenant string
	idx        int
	// protocol is what the last answer about it said its cohort uses.
	protocol atomic.Value // string
	// outOfBand counts out-of-band writes to it.
	outOfBand atomic.Int64
	lf        *lfSession
}

func (d *document) proto() string {
	if p, ok := d.protocol.Load().(string); ok {
		return p
	}
	return contract.ProtocolWriteThrough
}

// LegacyAck is an acknowledged legacy save (or create).
type LegacyAck struct {
	Doc, Tenant, Key string
	Revision         int64
	Outcome          string
	// ContentSHA256 is the hash of the revision's content as answered.
	ContentSHA256 string
	// SentSHA256 is the hash of the content the client sent; with a
	// PreservedID the server kept it aside.
	SentSHA256  string
	PreservedID int64
	// Receipt is the answer's ledger receipt (<ledger_seq>:<ledger_hash>).
	Receipt string
}

// YjsAck is a local-first client's acknowledged edits: everything of
// Client below Clock was covered by the server's state vector.
type YjsAck struct {
	Doc, Tenant string
	Client      uint64
	Clock       uint64
}

// Generator runs one workload; Seed, Run and Audit are its steps.
type Generator struct {
	cfg    Config
	rest   *rest
	pool   *pgxpool.Pool
	docs   []*document
	dir    string
	ownDir bool

	mu     sync.Mutex
	legacy []LegacyAck
	yjs    map[[2]string]*YjsAck // by doc, client

	ops, acked, oob, oobSkipped atomic.Int64
	offline, episodes           atomic.Int64
	errMu                       sync.Mutex
	errs                        map[string]int
	// run names this run in its idempotency keys: a second run with the
	// same seed against the same documents must not repeat the first's.
	run string
}

// New returns a generator for cfg (validated).
func New(ctx context.Context, cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TenantPrefix == "" {
		cfg.TenantPrefix = "school-"
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	g := &Generator{cfg: cfg, rest: &rest{http: cfg.HTTP, key: cfg.TokenKey, tokens: map[[3]string]string{}},
		yjs: map[[2]string]*YjsAck{}, errs: map[string]int{}, run: strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)}
	if cfg.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, errors.New("database URL: cannot parse it (not echoed: it may hold a password)")
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
		g.pool = pool
	}
	g.dir = cfg.StateDir
	if g.dir == "" {
		d, err := os.MkdirTemp("", "yawp-loadgen-")
		if err != nil {
			g.Close()
			return nil, err
		}
		g.dir, g.ownDir = d, true
	} else if err := os.MkdirAll(g.dir, 0o755); err != nil {
		g.Close()
		return nil, err
	}
	for t := 1; t <= cfg.Tenants; t++ {
		tenant := fmt.Sprintf("%s%d", cfg.TenantPrefix, t)
		for j := range cfg.Docs {
			d := &document{id: DocumentID(cfg.Seed, tenant, j), tenant: tenant, idx: len(g.docs)}
			d.protocol.Store(contract.ProtocolWriteThrough)
			g.docs = append(g.docs, d)
		}
	}
	return g, nil
}

// DocumentID is the ID of a tenant's j-th document of the workload seeded
// with seed.
func DocumentID(seed uint64, tenant string, j int) string {
	return fmt.Sprintf("lg%d-%s-%d", seed, tenant, j)
}

// Documents lists the workload's document IDs.
func (g *Generator) Documents() []string {
	out := make([]string, len(g.docs))
	for i, d := range g.docs {
		out[i] = d.id
	}
	return out
}

// Close stops every local-first client and releases the database pool
// and the temporary directory.
func (g *Generator) Close() {
	for _, d := range g.docs {
		if d.lf != nil {
			d.lf.close()
		}
	}
	if g.pool != nil {
		g.pool.Close()
	}
	if g.ownDir {
		_ = os.RemoveAll(g.dir)
	}
}

func (g *Generator) gateway(i int) string { return g.cfg.Gateways[i%len(g.cfg.Gateways)] }

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (g *Generator) fail(code string) {
	g.errMu.Lock()
	g.errs[code]++
	g.errMu.Unlock()
}

func (g *Generator) ackLegacy(a LegacyAck) {
	g.mu.Lock()
	g.legacy = append(g.legacy, a)
	g.mu.Unlock()
	g.acked.Add(1)
}

func (g *Generator) ackYjs(doc, tenant string, client, clock uint64) {
	if clock == 0 {
		return
	}
	k := [2]string{doc, fmt.Sprint(client)}
	g.mu.Lock()
	a := g.yjs[k]
	if a == nil {
		a = &YjsAck{Doc: doc, Tenant: tenant, Client: client}
		g.yjs[k] = a
	}
	a.Clock = max(a.Clock, clock)
	g.mu.Unlock()
	g.acked.Add(1)
}

// Acks returns copies of the acknowledged saves recorded so far.
func (g *Generator) Acks() ([]LegacyAck, []YjsAck) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ys := make([]YjsAck, 0, len(g.yjs))
	for _, a := range g.yjs {
		ys = append(ys, *a)
	}
	slices.SortFunc(ys, func(a, b YjsAck) int { return strings.Compare(a.Doc+fmt.Sprint(a.Client), b.Doc+fmt.Sprint(b.Client)) })
	return slices.Clone(g.legacy), ys
}

// ErrTokenKeyRefused: the gateway refused the generator's tokens as
// invalid, so they were signed with another key than the gateway's
// (Config.TokenKey is not the key the gateway checks tokens with).
var ErrTokenKeyRefused = errors.New("the gateway refused the workload's tokens as invalid: the token key they were signed with is not the gateway's")

// Seed creates the workload's documents through the REST API (a document
// that already exists, from an earlier run with the same seed, is adopted).
// Tokens the gateway refuses as invalid fail it with ErrTokenKeyRefused.
func (g *Generator) Seed(ctx context.Context) error {
	var eg errgroup.Group
	eg.SetLimit(g.cfg.Concurrency)
	for i, d := range g.docs {
		eg.Go(func() error {
			err := g.seedOne(ctx, g.gateway(i), d)
			var ae *apiError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && ae.Code == gateway.CodeUnauthenticated:
				return fmt.Errorf("seed %s: %w (%s answered %v)", d.id, ErrTokenKeyRefused, g.gateway(i), err)
			}
			return fmt.Errorf("seed %s: %w", d.id, err)
		})
	}
	return eg.Wait()
}

func (g *Generator) seedOne(ctx context.Context, gw string, d *document) error {
	content := fmt.Sprintf("%s: an essay by %s. ", d.id, d.tenant)
	key := "create-" + d.id
	var ans saveAnswer
	var err error
	for attempt := range 5 {
		ans, err = g.rest.create(ctx, gw, d.tenant, "loadgen-seed", d.id, content, key)
		var ae *apiError
		if err == nil || !errors.As(err, &ae) || !ae.retryable() {
			break
		}
		sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond)
	}
	var ae *apiError
	switch {
	case err == nil:
		g.ackLegacy(LegacyAck{Doc: d.id, Tenant: d.tenant, Key: key, Revision: ans.Revision, Outcome: ans.Outcome,
			ContentSHA256: ans.ContentSHA256, SentSHA256: sha(content), Receipt: ans.Receipt})
		d.protocol.Store(gateway.ProtocolOf(ans.Stage.Stage))
		return nil
	case errors.As(err, &ae) && ae.Code == store.CodeAlreadyExists:
		// Created by another key (an earlier run): adopt it.
		doc, rerr := g.rest.read(ctx, gw, d.tenant, "loadgen-seed", d.id)
		if rerr != nil {
			return fmt.Errorf("it exists but cannot be read (another tenant's?): %w", rerr)
		}
		d.protocol.Store(gateway.ProtocolOf(doc.Stage.Stage))
		return nil
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Run runs the workload until the duration ends or the operations are
// done, then brings every offline client back and flushes every
// local-first client (their edits are acknowledged when the server's state
// vector covers them).
func (g *Generator) Run(ctx context.Context) error {
	runCtx := ctx
	var cancel context.CancelFunc = func() {}
	if g.cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, g.cfg.Duration)
	}
	defer cancel()
	start := time.Now()
	progDone := make(chan struct{})
	stopProg := make(chan struct{})
	go func() {
		defer close(progDone)
		if g.cfg.Progress == nil {
			<-stopProg
			return
		}
		t := time.NewTicker(g.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopProg:
				g.progress(start)
				return
			case <-t.C:
				g.progress(start)
			}
		}
	}()
	var budget atomic.Int64
	budget.Store(int64(g.cfg.Ops))
	var wg sync.WaitGroup
	for w := range g.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(g.cfg.Seed, uint64(w)+1))
			for n := 0; runCtx.Err() == nil; n++ {
				if g.cfg.Ops > 0 && budget.Add(-1) < 0 {
					return
				}
				g.op(runCtx, w, n, rng)
				g.ops.Add(1)
			}
		}()
	}
	wg.Wait()
	// Bring everyone back and flush, whatever ended the run.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer fcancel()
	ferr := g.flushAll(fctx)
	close(stopProg)
	<-progDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ferr
}

// op runs one operation chosen by rng.
func (g *Generator) op(ctx context.Context, w, n int, rng *rand.Rand) {
	d := g.docs[rng.IntN(len(g.docs))]
	m := g.cfg.Mix
	r := rng.Float64() * (m.Legacy + m.LocalFirst + m.OutOfBand)
	var err error
	switch {
	case r < m.OutOfBand && g.pool != nil:
		err = g.outOfBand(ctx, d, w, n)
	case r < m.OutOfBand+m.LocalFirst && d.proto() == contract.ProtocolLocalFirst:
		err = g.localFirst(ctx, d, rng)
	default:
		// A write-through document's editor saves through REST, as does
		// a legacy client.
		err = g.legacySave(ctx, g.gateway(w), d, w, n, rng)
	}
	if err != nil && ctx.Err() == nil {
		g.fail(errCode(err))
	}
}

// edit inserts a marker into text at a position chosen by rng.
func edit(text, marker string, rng *rand.Rand) string {
	rs := []rune(text)
	p := rng.IntN(len(rs) + 1)
	return string(rs[:p]) + marker + string(rs[p:])
}

// legacySave is one legacy client's save: read, edit, PUT with If-Match
// and an idempotency key, retried with the same key.
func (g *Generator) legacySave(ctx context.Context, gw string, d *document, w, n int, rng *rand.Rand) error {
	user := fmt.Sprintf("loadgen-w%d", w)
	cur, err := g.rest.read(ctx, gw, d.tenant, user, d.id)
	if err != nil {
		return err
	}
	d.protocol.Store(gateway.ProtocolOf(cur.Stage.Stage))
	content := edit(cur.Content, fmt.Sprintf("[w%d.%d]", w, n), rng)
	key := fmt.Sprintf("lg%d-%s-w%d-%d", g.cfg.Seed, g.run, w, n)
	for attempt := 0; ; attempt++ {
		ans, err := g.rest.save(ctx, gw, d.tenant, user, d.id, cur.Revision, content, key)
		var ae *apiError
		if err != nil && errors.As(err, &ae) && ae.retryable() && attempt < 5 && ctx.Err() == nil {
			g.fail(errCode(err) + "(retried)")
			sleep(ctx, time.Duration(attempt+1)*100*time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		d.protocol.Store(gateway.ProtocolOf(ans.Stage.Stage))
		g.ackLegacy(LegacyAck{Doc: d.id, Tenant: d.tenant, Key: key, Revision: ans.Revision, Outcome: ans.Outcome,
			ContentSHA256: ans.ContentSHA256, SentSHA256: sha(content), PreservedID: ans.PreservedID, Receipt: ans.Receipt})
		return nil
	}
}

// outOfBand changes a legacy row directly in PostgreSQL, as a legacy
// writer bypassing the gateway would. It takes the locks a save takes
// (the tenant and its cohort row FOR SHARE, so neither the membership nor
// the stage it checked can change under it) and the document row FOR
// UPDATE before it checks for a Yjs representation, so no save can give
// the document one between the check and the write.
func (g *Generator) outOfBand(ctx context.Context, d *document, w, n int) error {
	tx, err := g.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	stage := dataplane.StageLegacy
	if _, err := tx.Exec(ctx, `SELECT 1 FROM tenants WHERE tenant = $1 FOR SHARE`, d.tenant); err != nil {
		return fmt.Errorf("out-of-band write to %s: %w", d.id, err)
	}
	err = tx.QueryRow(ctx, `
		SELECT c.stage FROM cohort_members m JOIN rollout_cohorts c ON c.rollout = m.rollout AND c.cohort = m.cohort
		WHERE m.tenant = $1 FOR SHARE OF c`, d.tenant).Scan(&stage)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("out-of-band write to %s: %w", d.id, err)
	}
	allowed := stage == dataplane.StageLegacy
	if g.cfg.Mix.DivergentOutOfBand {
		allowed = gateway.ProtocolOf(stage) == contract.ProtocolWriteThrough
	}
	if !allowed {
		g.oobSkipped.Add(1)
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE`, d.id); err != nil {
		return fmt.Errorf("out-of-band write to %s: %w", d.id, err)
	}
	// A new statement: it sees every save committed before the row lock.
	tag, err := tx.Exec(ctx, `
		UPDATE documents SET content = content || $2, updated_at = now()
		WHERE doc_id = $1 AND ($3 OR (NOT EXISTS (SELECT 1 FROM yjs_snapshots s WHERE s.doc_id = $1)
		                              AND NOT EXISTS (SELECT 1 FROM yjs_updates u WHERE u.doc_id = $1)))`,
		d.id, fmt.Sprintf("{oob w%d.%d}", w, n), g.cfg.Mix.DivergentOutOfBand)
	if err != nil {
		return fmt.Errorf("out-of-band write to %s: %w", d.id, err)
	}
	if tag.RowsAffected() == 0 {
		g.oobSkipped.Add(1)
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("out-of-band write to %s: %w", d.id, err)
	}
	d.outOfBand.Add(1)
	g.oob.Add(1)
	return nil
}

func (g *Generator) progress(start time.Time) {
	el := time.Since(start).Seconds()
	ops := g.ops.Load()
	g.errMu.Lock()
	codes := make([]string, 0, len(g.errs))
	for c, k := range g.errs {
		codes = append(codes, fmt.Sprintf("%s=%d", c, k))
	}
	g.errMu.Unlock()
	slices.Sort(codes)
	errs := "none"
	if len(codes) > 0 {
		errs = strings.Join(codes, " ")
	}
	lf := 0
	for _, d := range g.docs {
		if d.proto() == contract.ProtocolLocalFirst {
			lf++
		}
	}
	fmt.Fprintf(g.cfg.Progress, "loadgen %5.1fs ops=%d (%.1f/s) acked=%d out-of-band=%d (skipped %d) offline=%d local-first-docs=%d/%d errors: %s\n",
		el, ops, float64(ops)/max(el, 0.001), g.acked.Load(), g.oob.Load(), g.oobSkipped.Load(), g.offline.Load(), lf, len(g.docs), errs)
}

// storePath is where a document's local-first client keeps its store.
func (g *Generator) storePath(d *document) string { return filepath.Join(g.dir, d.id+".ylf") }
