package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/store"
)

// The shard's integrity work (issue 6): the backfill of cohorts at
// Backfill or later, and the verification of every document of every
// cohort from DualWrite on. One goroutine does both; the heartbeat
// reports what it found.
//
// Backfill: per cohort, documents without a Yjs representation are
// listed in doc_id order after the shard's checkpoint and given their
// genesis by store.Engine.Backfill, a batch per fenced transaction that
// also advances the checkpoint; a killed syncer resumes after the last
// committed batch, and documents already represented are skipped. The
// rate is limited to IntegrityConfig.BackfillRate documents per second.
//
// Verification: each pass lists the documents of the cohorts at
// DualWrite or later and materialises their Yjs text against the legacy
// row (store.Engine.VerifyDocs). An incremental pass verifies only the
// documents whose legacy row changed since the last pass (the change_seq
// a trigger stamps on every insert or update, the syncer's or anyone
// else's), the documents that did not match last time, and new ones; a
// full pass every VerifyFullEvery verifies them all.
//
// Repair: a mismatched document is recorded as an open divergence under
// its cohort's epoch and repaired at once through the engine (a repair
// request in the shard's group commit: see internal/store repair.go),
// which resolves the record. The report counts, per cohort, the documents
// found diverged under the current epoch (mismatched, resolved or not:
// integrity was broken during the soak), the divergences still open, and
// the evidence gaps (clients holding operations the server has not
// received for longer than GapAfter).

// IntegrityConfig tunes the backfill and verification.
type IntegrityConfig struct {
	// BackfillRate limits the backfill, in documents per second (default
	// 500; negative: unlimited).
	BackfillRate float64
	// BackfillBatch is the number of documents per backfill transaction
	// (default 100).
	BackfillBatch int
	// VerifyEvery is the interval of incremental verification passes
	// (default 1s).
	VerifyEvery time.Duration
	// VerifyFullEvery is the interval of full passes (default 1m).
	VerifyFullEvery time.Duration
	// VerifyBatch is the number of documents read per statement (default
	// 256).
	VerifyBatch int
	// GapAfter is how long a client may hold operations the server has
	// not received before they count as an evidence gap (default 10m).
	GapAfter time.Duration
	// Disabled turns the integrity work off (reports carry zeros).
	Disabled bool
}

func (c *IntegrityConfig) defaults() {
	if c.BackfillRate == 0 {
		c.BackfillRate = 500
	}
	if c.BackfillBatch <= 0 {
		c.BackfillBatch = 100
	}
	if c.VerifyEvery <= 0 {
		c.VerifyEvery = time.Second
	}
	if c.VerifyFullEvery <= 0 {
		c.VerifyFullEvery = time.Minute
	}
	if c.VerifyBatch <= 0 {
		c.VerifyBatch = 256
	}
	if c.GapAfter <= 0 {
		c.GapAfter = 10 * time.Minute
	}
}

// changeOverlap: an incremental pass reads again the outside_changes rows
// within this many of the last one it read, covering transactions that
// took a number before a later one committed.
const changeOverlap = 1024

// maxSamples bounds the mismatched document IDs reported per cohort.
const maxSamples = 5

// CohortVerification is a cohort's last verification on this shard.
type CohortVerification struct {
	// Epoch is the cohort epoch observed when the pass started.
	Epoch      int64
	Documents  int64
	Verified   int64
	Mismatched int64
	// Repaired counts documents found mismatched and repaired, not
	// checked again since.
	Repaired int64
	// NoYjs counts documents without a Yjs representation (not yet
	// backfilled): neither verified nor mismatched.
	NoYjs   int64
	Samples []string
	Full    bool
	At      time.Time
}

type integrity struct {
	cfg IntegrityConfig
	s   *Syncer

	mu     sync.Mutex
	cohort map[string]CohortVerification

	// Verification state, owned by the integrity goroutine: every
	// document of the verified cohorts as of the last full pass plus those
	// changed since, with its cohort and last verdict ("" not yet
	// verified); the documents backfilled since the last pass.
	docs       map[string]docVerdict
	backfilled map[string]struct{}
	// outsideAfter: the last outside_changes row read; outsideSeen: the
	// rows handled within changeOverlap before it.
	outsideAfter int64
	outsideSeen  map[int64]bool
	// progressed: the backfill committed documents since the last report.
	progressed atomic.Bool
	lastFull   time.Time
	lastSet    string
}

func newIntegrity(s *Syncer, cfg IntegrityConfig) *integrity {
	cfg.defaults()
	return &integrity{cfg: cfg, s: s, cohort: map[string]CohortVerification{}, docs: map[string]docVerdict{},
		backfilled: map[string]struct{}{}, outsideSeen: map[int64]bool{}}
}

type docVerdict struct {
	cohort, verdict string
}

// verdictRepaired: the document mismatched and was repaired; its
// divergence is on record under the epoch it counts for (the cohort's,
// or the Legacy epoch of a rollback when the legacy application wrote
// the row then), and the report counts it from there. The pass does not
// count it again: it would count a write excused as the rollback's
// against the new attempt. The next pass verifies it again.
const verdictRepaired = "repaired"

// verification returns a cohort's last verification.
func (in *integrity) verification(cohort string) (CohortVerification, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	v, ok := in.cohort[cohort]
	return v, ok
}

// run does backfill batches and verification passes until ctx ends.
func (in *integrity) run(ctx context.Context) {
	lastVerify := time.Time{}
	for ctx.Err() == nil {
		obs, err := in.s.dp.Observe(ctx, in.s.cfg.Rollout)
		if err != nil {
			in.s.log.Warn("integrity: observe", "err", err)
			in.sleep(ctx, in.cfg.VerifyEvery)
			continue
		}
		more := false
		if obs.Registered {
			n, err := in.backfillStep(ctx, obs)
			if err != nil {
				if errors.Is(err, store.ErrFenced) || ctx.Err() != nil {
					return
				}
				in.s.log.Warn("integrity: backfill", "err", err)
			}
			more = n > 0
			if time.Since(lastVerify) >= in.cfg.VerifyEvery || !more {
				if err := in.verifyPass(ctx, obs); err != nil && ctx.Err() == nil {
					in.s.log.Warn("integrity: verification", "err", err)
				}
				lastVerify = time.Now()
			}
			if more && in.cfg.BackfillRate > 0 {
				in.sleep(ctx, time.Duration(float64(n)/in.cfg.BackfillRate*float64(time.Second)))
				continue
			}
		}
		if !more {
			in.sleep(ctx, in.cfg.VerifyEvery)
		}
	}
}

func (in *integrity) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// backfillStep backfills one batch of the first cohort that needs it and
// returns the number of documents it considered (0: nothing to do).
func (in *integrity) backfillStep(ctx context.Context, obs dataplane.Observation) (int, error) {
	s := in.s
	for _, c := range obs.Cohorts {
		if !dataplane.Backfills(c.Stage) {
			continue
		}
		cp, err := s.eng.LoadBackfillCheckpoint(ctx, s.cfg.Rollout, c.Cohort)
		if err != nil {
			return 0, err
		}
		if cp.Epoch != c.Epoch {
			cp.Epoch, cp.AfterDoc, cp.Backfilled = c.Epoch, "", 0
		}
		ids, err := s.dp.BackfillCandidates(ctx, s.cfg.Rollout, c.Cohort, s.cfg.Shard, cp.AfterDoc, in.cfg.BackfillBatch)
		if err != nil {
			return 0, err
		}
		if len(ids) == 0 && cp.AfterDoc != "" {
			// Past the checkpoint all is done; anything before it that
			// still lacks a representation is taken from the start.
			if ids, err = s.dp.BackfillCandidates(ctx, s.cfg.Rollout, c.Cohort, s.cfg.Shard, "", in.cfg.BackfillBatch); err != nil {
				return 0, err
			}
		}
		if len(ids) == 0 {
			continue
		}
		res, err := s.eng.Backfill(ctx, cp, ids)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			in.backfilled[id] = struct{}{} // the next verification pass looks at them
		}
		if res.Backfilled > 0 {
			in.progressed.Store(true)
		}
		s.log.Debug("backfilled", "cohort", c.Cohort, "documents", res.Backfilled, "skipped", res.Skipped)
		s.mBackfilled.Add(float64(res.Backfilled))
		if res.Backfilled == 0 {
			// Every candidate was skipped (its stage changed meanwhile, or
			// the legacy application holds its row): no progress to hurry;
			// the next round looks again. The other cohorts go on: stopping
			// here left every cohort after this one unbackfilled for as
			// long as another transaction held one of this one's rows.
			continue
		}
		return len(ids), nil
	}
	return 0, nil
}

// verifiedCohorts names the cohorts a pass verifies, with their epochs:
// those at DualWrite or later, and those rolled back to Legacy. There the
// legacy application may write its rows directly, and the Yjs side the
// attempt built must follow them (repaired from the legacy side, under
// the Legacy epoch, where no gate counts). Left for the next attempt,
// every such document was a mismatch of that attempt, and rolled it back
// again.
func verifiedCohorts(obs dataplane.Observation) ([]string, map[string]int64) {
	epochs := map[string]int64{}
	var cohorts []string
	for _, c := range obs.Cohorts {
		if dataplane.Verifies(c.Stage) || c.RolledBack() {
			cohorts = append(cohorts, c.Cohort)
			epochs[c.Cohort] = c.Epoch
		}
	}
	return cohorts, epochs
}

// verifyPass verifies the documents of every cohort at DualWrite or later,
// and of every cohort rolled back to Legacy.
// A full pass lists and verifies them all; an incremental one verifies
// only the documents written since the last pass, by the syncer (the
// engine remembers them) or outside it (outside_changes, logged by a
// trigger), the ones not matching last time and the ones just
// backfilled. Counts come from what the passes found.
func (in *integrity) verifyPass(ctx context.Context, obs dataplane.Observation) (err error) {
	s := in.s
	defer func() {
		if err != nil {
			// The pass took its documents off the lists that name them
			// (outside changes past the cursor, the syncer's written set,
			// the backfilled set) before it failed: the next pass is a
			// full one, so none of them goes unverified.
			in.lastFull = time.Time{}
		}
	}()
	cohorts, epochs := verifiedCohorts(obs)
	// A new epoch of any cohort (every stage change, a rollback, a new
	// attempt) starts with a full pass: verdicts found under the old epoch
	// do not count for the new one.
	set := ""
	for _, c := range cohorts {
		set += fmt.Sprintf("%s@%d\x00", c, epochs[c])
	}
	full := set != in.lastSet || time.Since(in.lastFull) >= in.cfg.VerifyFullEvery
	written, lost := s.eng.DrainWritten()
	full = full || lost
	var docs []dataplane.CohortDoc
	if full {
		// Everything is verified: outside changes logged so far are covered.
		head, err := s.dp.OutsideChangesHead(ctx, s.cfg.Shard)
		if err != nil {
			return err
		}
		if docs, err = s.dp.ShardCohortDocs(ctx, s.cfg.Rollout, s.cfg.Shard, cohorts); err != nil {
			return err
		}
		// Deletions the outside log has moved past unseen (while this
		// syncer was down, say) leave their documents' divergences open:
		// closed here as an incremental pass closes them (gone).
		gone, err := s.dp.OpenDivergencesOfGoneDocuments(ctx, s.cfg.Shard, 1000)
		if err != nil {
			return err
		}
		in.gone(ctx, gone, nil)
		in.outsideAfter = head
		clear(in.outsideSeen)
	} else if docs, err = in.changedDocs(ctx, cohorts, written); err != nil {
		return err
	}
	if full {
		next := make(map[string]docVerdict, len(docs))
		for _, d := range docs {
			next[d.Doc] = docVerdict{cohort: d.Cohort, verdict: in.docs[d.Doc].verdict}
		}
		in.docs = next
	}
	todo := map[string]struct{}{}
	for _, d := range docs {
		dv := in.docs[d.Doc]
		dv.cohort = d.Cohort
		in.docs[d.Doc] = dv
		todo[d.Doc] = struct{}{}
	}
	for id, dv := range in.docs {
		if dv.verdict == store.VerifyMismatch || dv.verdict == verdictRepaired || dv.verdict == "" {
			todo[id] = struct{}{}
		}
	}
	for id := range in.backfilled {
		if _, ok := in.docs[id]; ok {
			todo[id] = struct{}{}
		}
	}
	clear(in.backfilled)
	ids := make([]string, 0, len(todo))
	for id := range todo {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i := 0; i < len(ids); i += in.cfg.VerifyBatch {
		batch := ids[i:min(i+in.cfg.VerifyBatch, len(ids))]
		res, err := s.eng.VerifyDocs(ctx, batch)
		if err != nil {
			return err
		}
		if len(res) < len(batch) {
			in.gone(ctx, batch, res)
		}
		for _, r := range res {
			dv := in.docs[r.Doc]
			dv.verdict = r.Verdict
			in.docs[r.Doc] = dv
			if r.Verdict == store.VerifyMismatch {
				s.log.Warn("verification: mismatch; repairing", "doc", r.Doc, "detail", r.Detail)
				in.repair(ctx, r, dv.cohort, epochs[dv.cohort])
			}
		}
	}
	s.mVerified.Add(float64(len(ids)))
	now := time.Now() // monotonic: the age of these counts survives a step of the wall clock
	out := map[string]CohortVerification{}
	for _, c := range cohorts {
		out[c] = CohortVerification{Epoch: epochs[c], Full: full, At: now}
	}
	for id, dv := range in.docs {
		cv, ok := out[dv.cohort]
		if !ok {
			delete(in.docs, id) // its cohort is no longer verified
			continue
		}
		cv.Documents++
		switch dv.verdict {
		case store.VerifyMatch:
			cv.Verified++
		case store.VerifyMismatch:
			cv.Mismatched++
			cv.Samples = append(cv.Samples, id)
		case verdictRepaired:
			// Counted by its divergence record (cohortReport).
			cv.Repaired++
		default:
			cv.NoYjs++
		}
		out[dv.cohort] = cv
	}
	for c, cv := range out {
		slices.Sort(cv.Samples)
		if len(cv.Samples) > maxSamples {
			cv.Samples = cv.Samples[:maxSamples]
		}
		out[c] = cv
	}
	if full {
		in.lastFull, in.lastSet = now, set
	}
	in.mu.Lock()
	in.cohort = out
	in.mu.Unlock()
	return nil
}

// changedDocs lists, for an incremental pass, the documents of the
// verified cohorts to check: those written outside the syncer since the
// last pass read the outside log, and those written by it (written); it
// drops from the pass's list the documents that left the verified cohorts.
func (in *integrity) changedDocs(ctx context.Context, cohorts, written []string) ([]dataplane.CohortDoc, error) {
	s := in.s
	var docs []dataplane.CohortDoc
	// Rows are numbered when inserted and visible when committed, so
	// a window before the last one read is read again; rows already
	// handled in it are skipped.
	from := max(0, in.outsideAfter-changeOverlap)
	all, last, err := s.dp.OutsideChanges(ctx, s.cfg.Rollout, s.cfg.Shard, cohorts, from)
	if err != nil {
		return nil, err
	}
	var outside []dataplane.CohortDoc
	for _, d := range all {
		if !in.outsideSeen[d.OutsideID] {
			in.outsideSeen[d.OutsideID] = true
			if d.Cohort == "" {
				// Given to a school in none of the verified
				// cohorts: its verdict no longer counts for the
				// one it left (it covered for a document never
				// checked).
				if _, ok := in.docs[d.Doc]; ok {
					delete(in.docs, d.Doc)
					in.progressed.Store(true) // the next report counts the cohort's documents again
				}
				continue
			}
			outside = append(outside, d)
		}
	}
	for id := range in.outsideSeen {
		if id <= last-changeOverlap {
			delete(in.outsideSeen, id)
		}
	}
	var unknown []string
	for _, id := range written {
		if _, ok := in.docs[id]; ok {
			docs = append(docs, dataplane.CohortDoc{Doc: id, Cohort: in.docs[id].cohort})
		} else {
			unknown = append(unknown, id) // new since the last full pass
		}
	}
	fresh, err := s.dp.ShardCohortDocsOf(ctx, s.cfg.Rollout, s.cfg.Shard, cohorts, unknown)
	if err != nil {
		return nil, err
	}
	for _, ds := range [][]dataplane.CohortDoc{outside, fresh} {
		for _, d := range ds {
			if _, ok := in.docs[d.Doc]; !ok {
				// New to the cohort: the next report counts its
				// documents again (they are cached).
				in.progressed.Store(true)
			}
		}
	}
	docs = append(append(docs, outside...), fresh...)
	in.outsideAfter = last
	return docs, nil
}

// gone handles the documents of a verified batch whose legacy row no
// longer exists (deleted outside the gateway; VerifyDocs leaves them out):
// a repair request makes the row again where the Yjs side is
// authoritative (store recreate) and closes their open divergences where
// the deletion stands. Either way they leave the pass's list; a document
// made again is written by the syncer, so the next pass verifies it.
func (in *integrity) gone(ctx context.Context, batch []string, res []store.VerifyResult) {
	s := in.s
	found := make(map[string]bool, len(res))
	for _, r := range res {
		found[r.Doc] = true
	}
	for _, id := range batch {
		if found[id] {
			continue
		}
		delete(in.docs, id)
		in.progressed.Store(true) // the next report counts the cohort's documents again
		r, err := s.eng.Repair(ctx, id, "verification")
		switch {
		case err == nil:
			s.log.Warn("verification: the legacy row was deleted outside the gateway; made again from the Yjs side", "doc", id, "outcome", r.Outcome, "revision", r.Revision)
		case store.AsError(err).Code == store.CodeNotFound:
			s.log.Info("verification: the legacy row was deleted outside the gateway; the deletion stands", "doc", id)
		default:
			s.log.Error("verification: repairing a document whose row was deleted", "doc", id, "err", err)
		}
	}
}

// repair records a mismatched document as an open divergence and has the
// engine repair it; a failed repair stays open (and counted). A repaired
// one is counted by its divergence record, under the epoch it counts for.
func (in *integrity) repair(ctx context.Context, r store.VerifyResult, cohort string, epoch int64) {
	s := in.s
	if err := s.eng.RecordDivergence(ctx, r.Doc, store.DivergenceOutOfBand, cohort, epoch, "verification: "+r.Detail); err != nil {
		s.log.Warn("verification: record divergence", "doc", r.Doc, "err", err)
		return
	}
	res, err := s.eng.Repair(ctx, r.Doc, "verification")
	if err != nil {
		s.log.Error("repair failed; the divergence stays open", "doc", r.Doc, "err", err)
		return
	}
	s.log.Info("repaired", "doc", r.Doc, "outcome", res.Outcome, "revision", res.Revision, "ledger_seq", res.LedgerSeq)
	// The next pass must look at it again, whatever its change_seq.
	dv := in.docs[r.Doc]
	dv.verdict = verdictRepaired
	in.docs[r.Doc] = dv
}

// cohortReport fills a cohort's report: documents and backfill counts
// as counted now, verification as of the last pass under the cohort's
// current epoch (zero before one completed).
func (in *integrity) cohortReport(c dataplane.CohortStage, counts dataplane.CohortCounts, div dataplane.DivergenceCounts, now time.Time) dataplane.CohortReport {
	rep := dataplane.CohortReport{Cohort: c.Cohort, Epoch: c.Epoch, Documents: counts.Documents, Backfilled: counts.WithYjs,
		BackfillComplete: counts.WithYjs >= counts.Documents, ReportedAt: now,
		OpenDivergences: div.Open, EvidenceGaps: div.Gaps}
	if div.Found > 0 {
		rep.Mismatched, rep.SampleMismatches = div.Found, slices.Clone(div.Samples)
	}
	if in == nil {
		return rep
	}
	if v, ok := in.verification(c.Cohort); ok && v.Epoch == c.Epoch && dataplane.Verifies(c.Stage) {
		if v.Mismatched > rep.Mismatched {
			rep.Mismatched, rep.SampleMismatches = v.Mismatched, slices.Clone(v.Samples)
		}
		// Verified and Mismatched add up to the documents the pass has
		// checked, each counted once: a document found mismatched under
		// the epoch (in Mismatched, repaired or not) that matches since
		// its repair is not verified too, or the two counted it twice
		// and a document never checked went unnoticed by the
		// controller's coverage check (verified + mismatched >=
		// documents).
		rep.Verified = max(0, v.Verified+v.Mismatched+v.Repaired-rep.Mismatched)
		// Freshness: the counts are as old as the pass that made them.
		rep.ReportedAt = v.At
		// The document counts are cached (a few seconds): a pass that
		// has seen more documents (new to the cohort since) is not
		// reported as covering them all.
		rep.Documents = max(rep.Documents, v.Documents)
	}
	return rep
}
