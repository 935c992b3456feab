package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Checks of the audit, as named in a Failure.
const (
	CheckLegacySave = "legacy-save-present"
	CheckYjsSave    = "yjs-save-present"
	CheckEqual      = "legacy-equals-yjs"
	CheckChain      = "ledger-chain"
	CheckEvidence   = "evidence-complete"
	CheckRead       = "read"
	// CheckRefusals: requests refused for a reason that means the
	// workload or the gateway is wrong (not load, not a stage change).
	CheckRefusals = "unexpected-refusals"
)

// unexpectedRefusals are the error codes no correct run meets.
var unexpectedRefusals = []string{"idempotency_key_reused", "invalid_request", "invalid_json", "unauthenticated", "forbidden", "internal"}

// maxListed bounds the failures a report lists (all are counted).
const maxListed = 20

// Failure is one audit finding.
type Failure struct {
	Check  string `json:"check"`
	Doc    string `json:"doc"`
	Detail string `json:"detail"`
}

// Report is the audit's answer.
type Report struct {
	Documents int `json:"documents"`
	// LegacyAcks and YjsAcks count acknowledged saves (YjsAcks: one per
	// document and client, covering every edit it acknowledged).
	LegacyAcks    int `json:"legacy_acks"`
	LegacyPresent int `json:"legacy_present"`
	YjsAcks       int `json:"yjs_acks"`
	YjsPresent    int `json:"yjs_present"`
	// Compared documents have a Yjs representation; Equal of them match.
	// LegacyOnly documents have none yet (their cohort never dual-wrote).
	Compared   int `json:"compared"`
	Equal      int `json:"equal"`
	LegacyOnly int `json:"legacy_only"`
	// Divergent documents differ because their legacy row holds an
	// out-of-band change the Yjs text lacks: divergence verification must
	// detect and repair, listed apart from the failures. Any other
	// difference is a failure.
	Divergent     int      `json:"divergent_pending_repair"`
	DivergentDocs []string `json:"divergent_docs,omitempty"`
	// OutOfBandWrites made during the run, and the documents they hit.
	OutOfBandWrites int64 `json:"out_of_band_writes"`
	OutOfBandDocs   int   `json:"out_of_band_docs"`
	// OfflineEpisodes local-first clients went through.
	OfflineEpisodes int64 `json:"offline_episodes"`
	ChainsVerified  int   `json:"chains_verified"`
	// ViaDatabase: legacy rows and Yjs logs were read from PostgreSQL,
	// not through the gateway.
	ViaDatabase  bool      `json:"via_database"`
	FailureCount int       `json:"failure_count"`
	Failures     []Failure `json:"failures"`
}

// OK reports whether the audit found no failure.
func (r *Report) OK() bool { return r.FailureCount == 0 }

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	verdict := "PASSED"
	if !r.OK() {
		verdict = "FAILED"
	}
	src := "gateway"
	if r.ViaDatabase {
		src = "database"
	}
	fmt.Fprintf(w, "audit %s: %d documents\n", verdict, r.Documents)
	fmt.Fprintf(w, "  acknowledged legacy saves present: %d/%d\n", r.LegacyPresent, r.LegacyAcks)
	fmt.Fprintf(w, "  acknowledged local-first clients covered by the server: %d/%d (%d offline episodes)\n", r.YjsPresent, r.YjsAcks, r.OfflineEpisodes)
	fmt.Fprintf(w, "  legacy equals Yjs (read from the %s): %d/%d documents with a Yjs representation (%d legacy-only)\n", src, r.Equal, r.Compared, r.LegacyOnly)
	fmt.Fprintf(w, "  out-of-band writes: %d on %d documents; divergent, pending repair: %d\n", r.OutOfBandWrites, r.OutOfBandDocs, r.Divergent)
	fmt.Fprintf(w, "  ledger chains verified: %d/%d\n", r.ChainsVerified, r.Documents)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAIL %-20s %s: %s\n", f.Check, f.Doc, f.Detail)
	}
	if r.FailureCount > len(r.Failures) {
		fmt.Fprintf(w, "  ... and %d more failures\n", r.FailureCount-len(r.Failures))
	}
	for _, d := range r.DivergentDocs {
		fmt.Fprintf(w, "  DIVERGENT (out-of-band write, pending repair) %s\n", d)
	}
}

type auditor struct {
	mu  sync.Mutex
	rep *Report
}

func (a *auditor) fail(check, doc, format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rep.FailureCount++
	if len(a.rep.Failures) < maxListed {
		a.rep.Failures = append(a.rep.Failures, Failure{Check: check, Doc: doc, Detail: fmt.Sprintf(format, args...)})
	}
}

func (a *auditor) count(f func(r *Report)) {
	a.mu.Lock()
	f(a.rep)
	a.mu.Unlock()
}

// Audit checks the system after Run: every acknowledged save present,
// legacy equal to Yjs for every document with a Yjs representation, and
// evidence complete. Call it when the workload is quiet.
func (g *Generator) Audit(ctx context.Context) (*Report, error) {
	legacy, yjsAcks := g.Acks()
	a := &auditor{rep: &Report{Documents: len(g.docs), LegacyAcks: len(legacy), YjsAcks: len(yjsAcks),
		OutOfBandWrites: g.oob.Load(), OfflineEpisodes: g.episodes.Load(), ViaDatabase: g.pool != nil, Failures: []Failure{}}}
	g.errMu.Lock()
	for _, code := range unexpectedRefusals {
		if n := g.errs[code] + g.errs[code+"(retried)"]; n > 0 {
			a.fail(CheckRefusals, "", "%d requests refused with %s", n, code)
		}
	}
	g.errMu.Unlock()
	byDoc := map[string]*docAcks{}
	for _, d := range g.docs {
		byDoc[d.id] = &docAcks{d: d}
		if d.outOfBand.Load() > 0 {
			a.rep.OutOfBandDocs++
		}
	}
	for _, l := range legacy {
		byDoc[l.Doc].legacy = append(byDoc[l.Doc].legacy, l)
	}
	for _, y := range yjsAcks {
		byDoc[y.Doc].yjs = append(byDoc[y.Doc].yjs, y)
	}
	var texts map[string]repTexts
	if g.pool != nil {
		var err error
		if texts, err = g.readRepresentations(ctx); err != nil {
			return nil, err
		}
	}
	// Every document audited (first error kept), a few at a time.
	var eg errgroup.Group
	eg.SetLimit(max(g.cfg.Concurrency, 4))
	for i, d := range g.docs {
		eg.Go(func() error { return g.auditDoc(ctx, a, g.gateway(i), byDoc[d.id], texts) })
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	slices.Sort(a.rep.DivergentDocs)
	return a.rep, nil
}

type docAcks struct {
	d      *document
	legacy []LegacyAck
	yjs    []YjsAck
}

// auditDoc audits one document. It returns an error only when the audit
// itself cannot proceed (the context ended).
func (g *Generator) auditDoc(ctx context.Context, a *auditor, gw string, da *docAcks, texts map[string]repTexts) error {
	d := da.d
	doc, err := g.rest.read(ctx, gw, d.tenant, auditUser, d.id)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.fail(CheckRead, d.id, "reading the document: %v", err)
		return nil
	}
	// (a) legacy saves: the acknowledged revision holds the acknowledged
	// content; text a conflicting save supplied is preserved.
	for _, l := range da.legacy {
		rev, err := g.rest.revision(ctx, gw, d.tenant, d.id, l.Revision)
		switch {
		case err != nil:
			a.fail(CheckLegacySave, d.id, "acknowledged revision %d (request %s) cannot be read: %v", l.Revision, l.Key, err)
			continue
		case sha(rev.Content) != l.ContentSHA256:
			a.fail(CheckLegacySave, d.id, "revision %d holds content sha256 %.12s, the save (request %s) was acknowledged with %.12s", l.Revision, sha(rev.Content), l.Key, l.ContentSHA256)
			continue
		}
		if l.PreservedID != 0 {
			p, err := g.rest.preserved(ctx, gw, d.tenant, d.id, l.PreservedID)
			if err != nil || sha(p.Content) != l.SentSHA256 {
				a.fail(CheckLegacySave, d.id, "the text of request %s, acknowledged as preserved %d, is not there (err %v)", l.Key, l.PreservedID, err)
				continue
			}
		}
		a.count(func(r *Report) { r.LegacyPresent++ })
	}
	// (a) local-first edits: the server's state vector covers them.
	var sv yjs.StateVector
	if len(doc.StateVector) > 0 {
		if sv, err = yjs.DecodeStateVector(doc.StateVector); err != nil {
			a.fail(CheckYjsSave, d.id, "the server's state vector cannot be decoded: %v", err)
		}
	}
	for _, y := range da.yjs {
		if sv[y.Client] < y.Clock {
			a.fail(CheckYjsSave, d.id, "client %d's edits were acknowledged up to clock %d, the server holds %d", y.Client, y.Clock, sv[y.Client])
			continue
		}
		a.count(func(r *Report) { r.YjsPresent++ })
	}
	// (b) legacy equals Yjs.
	g.compare(ctx, a, gw, d, doc, texts)
	// (c) evidence: the chain verifies, every acknowledged save is in the
	// timeline, nothing is left saved-locally-not-synced.
	// The last acknowledged legacy save's receipt vouches for every entry
	// up to it: the chain recomputed to it must end in its hash.
	var last ledger.Receipt
	for _, l := range da.legacy {
		if rc, err := ledger.ParseReceipt(l.Receipt); err == nil && rc.Seq > last.Seq {
			last = rc
		}
	}
	receipt := ""
	if last.Seq > 0 {
		receipt = last.String()
	}
	vr, err := g.rest.verifyChain(ctx, gw, d.tenant, d.id, receipt)
	switch {
	case err != nil:
		a.fail(CheckChain, d.id, "verifying the ledger chain: %v", err)
	case len(vr.Problems) > 0:
		a.fail(CheckChain, d.id, "ledger chain broken: %d problems, first: %v", len(vr.Problems), vr.Problems[0])
	case !vr.OK:
		for _, c := range vr.Receipts {
			if c.Verdict != ledger.ReceiptConfirmed {
				a.fail(CheckChain, d.id, "the last acknowledged save's receipt %s is %s: %s", c.Receipt, c.Verdict, c.Detail)
			}
		}
	default:
		a.count(func(r *Report) { r.ChainsVerified++ })
	}
	ev, err := g.rest.evidence(ctx, gw, d.tenant, d.id)
	if err != nil {
		a.fail(CheckEvidence, d.id, "reading the evidence: %v", err)
		return nil
	}
	checkEvidence(a, d.id, ev, da)
	return nil
}

func isCommit(kind string) bool {
	return kind == ledger.KindCreated || kind == ledger.KindCommitted || kind == ledger.KindMerged || kind == ledger.KindPreserved
}

func checkEvidence(a *auditor, doc string, ev store.Evidence, da *docAcks) {
	if !ev.Chain.OK {
		a.fail(CheckEvidence, doc, "the evidence API reports the chain broken")
	}
	byKey := map[string][]store.TimelineEntry{}
	clientClock := map[uint64]uint64{}
	for _, t := range ev.Timeline {
		if !isCommit(t.Kind) {
			continue
		}
		if t.IdempotencyKey != "" {
			byKey[t.IdempotencyKey] = append(byKey[t.IdempotencyKey], t)
		}
		for _, c := range t.Clients {
			clientClock[c] = max(clientClock[c], t.StateVector[strconv.FormatUint(c, 10)])
		}
	}
	for _, l := range da.legacy {
		found := slices.ContainsFunc(byKey[l.Key], func(t store.TimelineEntry) bool {
			return t.Revision == l.Revision && t.ContentSHA256 == l.ContentSHA256
		})
		if !found {
			a.fail(CheckEvidence, doc, "no committed ledger entry for request %s as revision %d", l.Key, l.Revision)
		}
		// Exactly once: a retry of a save is answered from its key's
		// stored result, never committed again.
		if n := len(byKey[l.Key]); n > 1 {
			a.fail(CheckEvidence, doc, "request %s was committed %d times (revisions %v)", l.Key, n, revisionsOf(byKey[l.Key]))
		}
	}
	for _, y := range da.yjs {
		if clientClock[y.Client] < y.Clock {
			a.fail(CheckEvidence, doc, "the ledger's commits of client %d reach clock %d, %d were acknowledged", y.Client, clientClock[y.Client], y.Clock)
		}
	}
	for _, f := range ev.Findings {
		if f.Verdict == store.VerdictSavedLocallyNotSynced {
			a.fail(CheckEvidence, doc, "after every client flushed, the evidence still says %s: %s", f.Verdict, f.Summary)
		}
	}
}

func revisionsOf(ts []store.TimelineEntry) []int64 {
	out := make([]int64, len(ts))
	for i, t := range ts {
		out[i] = t.Revision
	}
	return out
}

// compare checks that the legacy row equals the Yjs text.
func (g *Generator) compare(ctx context.Context, a *auditor, gw string, d *document, doc store.Document, texts map[string]repTexts) {
	var legacy, ytext string
	var hasYjs bool
	if texts != nil {
		t, ok := texts[d.id]
		if !ok {
			a.fail(CheckEqual, d.id, "no legacy row in the database")
			return
		}
		if t.err != nil {
			a.fail(CheckEqual, d.id, "the Yjs representation cannot be materialised: %v", t.err)
			return
		}
		legacy, ytext, hasYjs = t.legacy, t.yjs, t.hasYjs
	} else {
		hasYjs = doc.HasYjs
		legacy = doc.Content
		if doc.LegacyContent != nil {
			legacy = *doc.LegacyContent
		}
		if hasYjs {
			res, err := g.rest.syncAll(ctx, gw, d.tenant, d.id)
			if err != nil {
				a.fail(CheckEqual, d.id, "reading the Yjs state: %v", err)
				return
			}
			if ytext, err = materialise(nil, nil, [][]byte{res.Update}); err != nil {
				a.fail(CheckEqual, d.id, "the Yjs state cannot be decoded: %v", err)
				return
			}
		}
	}
	if !hasYjs {
		a.count(func(r *Report) { r.LegacyOnly++ })
		return
	}
	a.count(func(r *Report) { r.Compared++ })
	if legacy == ytext {
		a.count(func(r *Report) { r.Equal++ })
		return
	}
	if d.outOfBand.Load() > 0 && outOfBandExplains(legacy, ytext) {
		a.count(func(r *Report) {
			r.Divergent++
			r.DivergentDocs = append(r.DivergentDocs, d.id)
		})
		return
	}
	a.fail(CheckEqual, d.id, "the legacy row (%d bytes, sha256 %.12s) differs from the Yjs text (%d bytes, sha256 %.12s)", len(legacy), sha(legacy), len(ytext), sha(ytext))
}

// oobMarker matches what outOfBand appends to a legacy row.
var oobMarker = regexp.MustCompile(`\{oob w\d+\.\d+\}`)

// outOfBandExplains: the legacy row holds an out-of-band change the Yjs
// text lacks, so the difference is that write's, not a lost save.
func outOfBandExplains(legacy, ytext string) bool {
	for _, m := range oobMarker.FindAllString(legacy, -1) {
		if !strings.Contains(ytext, m) {
			return true
		}
	}
	return false
}

// repTexts is a document's two representations as stored.
type repTexts struct {
	legacy, yjs string
	hasYjs      bool
	err         error
}

// readRepresentations reads every workload document's legacy row and
// materialises its Yjs text from the stored snapshot and the log after
// it, one statement per document set, so both come from one committed
// state.
func (g *Generator) readRepresentations(ctx context.Context) (map[string]repTexts, error) {
	rows, err := g.pool.Query(ctx, `
		SELECT d.doc_id, d.content, s.generation, s.state, u.gens, u.updates
		FROM documents d
		LEFT JOIN yjs_snapshots s ON s.doc_id = d.doc_id
		LEFT JOIN LATERAL (SELECT array_agg(generation ORDER BY seq) AS gens, array_agg(update ORDER BY seq) AS updates
		                   FROM yjs_updates y WHERE y.doc_id = d.doc_id AND y.seq > coalesce(s.upto_seq, 0)) u ON true
		WHERE d.doc_id = ANY($1::text[])`, g.Documents())
	if err != nil {
		return nil, fmt.Errorf("audit: reading the documents: %w", err)
	}
	defer rows.Close()
	out := map[string]repTexts{}
	for rows.Next() {
		var id, content string
		var gen *int64
		var state []byte
		var gens []int64
		var updates [][]byte
		if err := rows.Scan(&id, &content, &gen, &state, &gens, &updates); err != nil {
			return nil, fmt.Errorf("audit: reading the documents: %w", err)
		}
		t := repTexts{legacy: content, hasYjs: state != nil || len(updates) > 0}
		if t.hasYjs {
			var first [][]byte
			if state != nil {
				first = [][]byte{state}
			}
			// Only the latest generation counts: a new generation starts
			// from its own first update.
			cur := int64(-1)
			if gen != nil {
				cur = *gen
			}
			var log [][]byte
			for i, u := range updates {
				if i < len(gens) && gens[i] != cur {
					first, log, cur = nil, nil, gens[i]
				}
				log = append(log, u)
			}
			t.yjs, t.err = materialise(first, nil, log)
		}
		out[id] = t
	}
	return out, rows.Err()
}

// materialise applies updates in order to a fresh document and returns
// its text.
func materialise(parts ...[][]byte) (string, error) {
	d := yjs.NewDoc(yjs.Options{ClientID: 1})
	n := 0
	for _, p := range parts {
		for _, u := range p {
			if err := d.ApplyUpdate(u); err != nil {
				return "", err
			}
			n++
		}
	}
	if n == 0 {
		return "", errors.New("no Yjs state")
	}
	return d.GetText(contract.YjsTextName).String(), nil
}
