package main

import (
	"fmt"
	"io"
	"math"
)

// report is what the benchmark prints: a markdown table, the ratio row and
// the notes that say what the numbers mean.
type report struct {
	opts                                                     options
	oursRes, hpRes                                           result
	committedBytes                                           int
	hpVersion, ywsVersion, providerVersion, yjsVersion, node string
	cpus                                                     int
	load                                                     string
	pgPort                                                   int
}

// throughput is the phase whose updates/s the table shows: the closed
// loop if it ran. latency is the phase whose p50/p99 it shows: the fixed
// rate if it ran.
func (r result) throughput() phase { return r.Phases[len(r.Phases)-1] }
func (r result) latency() phase    { return r.Phases[0] }

// perDocKiB is the memory each open document (with its clients'
// connections) added over the baseline, after the load or just open.
func (r result) perDocKiB(docs int, loaded bool) float64 {
	v := r.OpenKiB
	if loaded {
		v = r.LoadedKiB
	}
	return float64(v-r.BaseKiB) / float64(docs)
}

func phaseName(rate float64, writers int) string {
	if rate == 0 {
		return "closed loop"
	}
	return fmt.Sprintf("%g edits/s per writer (%g updates/s offered)", rate, rate*float64(writers))
}

// ratio is ours/theirs, or "n/a" when either is not a positive number.
func ratio(ours, theirs float64) string {
	if !(ours > 0) || !(theirs > 0) || math.IsInf(ours, 0) || math.IsInf(theirs, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", ours/theirs)
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func (r report) print(w io.Writer) {
	o := r.opts
	writers := o.docs * o.writers
	fmt.Fprintf(w, "Sync gateway vs Hocuspocus, same machine, same run: %d documents x (%d writers + 1 observer) = %d WebSocket clients per server, "+
		"real yjs %s clients in %s; each phase a %v warm-up and a %v measured window, the servers taking turns phase by phase (both up, the idle one's clients connected).\n",
		o.docs, o.writers, o.docs*(o.writers+1), r.yjsVersion, procsText(o.procs), o.warmup, o.duration)
	fmt.Fprintf(w, "Node %s, %d CPUs, load %s; PostgreSQL 127.0.0.1:%d with fsync and synchronous_commit on; clients, servers and PostgreSQL share the machine.\n",
		r.node, r.cpus, r.load, r.pgPort)
	if o.stage == "LegacyRetired" {
		fmt.Fprintln(w, "Our bench cohort is at LegacyRetired (legacy writes stopped, the end state): an update appends to the Yjs log and the ledger only.")
	} else {
		fmt.Fprintf(w, "Our bench cohort is at %s: every update also materialises the document's legacy row (its whole text) and a revision, in the same transaction.\n", o.stage)
	}
	tp, lat := phaseName(r.oursRes.throughput().Rate, writers), phaseName(r.oursRes.latency().Rate, writers)
	fmt.Fprintf(w, "updates/s: %s; p50/p99 update-to-relay latency: %s.\n", tp, lat)
	if o.memLimit > 0 {
		fmt.Fprintf(w, "Our syncer is told of a %d MiB memory limit, as a pod's limit reaches it; under it it lets the Go heap grow to 5x what is live (internal/gotune).\n", o.memLimit>>20)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| server | durable before relay | updates/s | p50 ms | p99 ms | memory/doc KiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	row := func(name, durable string, x result) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, durable, num(x.throughput().UpdatesPerSec, 0),
			num(x.latency().P50Ms, 2), num(x.latency().P99Ms, 2), num(x.perDocKiB(o.docs, true), 0))
	}
	row(fmt.Sprintf("ours: gateway + syncer (y-websocket %s clients)", r.ywsVersion),
		"yes: committed to PostgreSQL (fsync on) before relay", r.oursRes)
	row(fmt.Sprintf("Hocuspocus %s, default settings (@hocuspocus/provider %s clients)", r.hpVersion, r.providerVersion),
		"**no**: in memory only, not durable", r.hpRes)
	fmt.Fprintf(w, "| ratio ours/Hocuspocus | | %s | %s | %s | %s |\n",
		ratio(r.oursRes.throughput().UpdatesPerSec, r.hpRes.throughput().UpdatesPerSec), ratio(r.oursRes.latency().P50Ms, r.hpRes.latency().P50Ms),
		ratio(r.oursRes.latency().P99Ms, r.hpRes.latency().P99Ms), ratio(r.oursRes.perDocKiB(o.docs, true), r.hpRes.perDocKiB(o.docs, true)))
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Hocuspocus with default settings (no persistence extension) keeps documents only in its process memory: the updates it relays "+
		"are not durable, and a crash or restart loses every document. Ours commit each update to PostgreSQL before the gateway relays it "+
		"(read back after the run: %d bytes of text committed, %d bytes in the clients).\n", r.committedBytes, r.oursRes.TextBytes)
	fmt.Fprintln(w, "updates/s: edits the observer clients received per second in the measured window. Latency: from a writer's local edit to the "+
		"observer's Y.Text event for it (writer and observer in one process, one clock), for the edits made in the window.")
	fmt.Fprintf(w, "memory/doc: (RSS after the load, the documents and their %d connections each still open, minus RSS before any client) / documents; "+
		"ours is the gateway's plus the syncer's VmRSS (PostgreSQL not counted), Hocuspocus's its node process's. "+
		"Just open, before the load: ours %s, Hocuspocus %s KiB/doc. Baseline RSS: ours %d KiB, Hocuspocus %d KiB.\n",
		o.writers+1, num(r.oursRes.perDocKiB(o.docs, false), 0), num(r.hpRes.perDocKiB(o.docs, false), 0), r.oursRes.BaseKiB, r.hpRes.BaseKiB)
	fmt.Fprintln(w, "The client libraries differ because the protocols do: Hocuspocus prefixes every message with the document name and waits for "+
		"an authentication message, which a stock y-websocket client never sends.")
	for _, x := range []struct {
		name string
		res  result
	}{{"ours", r.oursRes}, {"Hocuspocus", r.hpRes}} {
		for _, p := range x.res.Phases {
			fmt.Fprintf(w, "- %s, %s: %.0f edits/s sent, %.0f updates/s relayed, p50 %s ms, p99 %s ms, max %s ms (%d samples); "+
				"load generator%s at %.0f%% of one core%s.\n",
				x.name, phaseName(p.Rate, writers), p.SentPerSec, p.UpdatesPerSec, num(p.P50Ms, 2), num(p.P99Ms, 2), num(p.MaxMs, 1), p.Samples,
				plural(o.procs), p.LoadgenCPU, busiest(o.procs, p.LoadgenMaxCPU))
		}
		fmt.Fprintf(w, "- %s: %d edits sent, %d received by the observers, %d lost, %d documents diverged, %d reconnects; clients connected in %.0f ms.\n",
			x.name, x.res.Sent, x.res.Observed, x.res.Lost, x.res.Diverged, x.res.Reconnects, x.res.ConnectMs)
	}
	perK := func(x result) float64 { return 1000 * x.ServerCPU / float64(max(1, x.Sent)) }
	fmt.Fprintf(w, "CPU seconds during the phases (%d CPUs): ours %.1f s wall, gateway %.1f + syncer %.1f (%.2f ms per edit), PostgreSQL %.1f, "+
		"load generator %.1f; Hocuspocus %.1f s wall, Hocuspocus %.1f (%.2f ms per edit), load generator %.1f.\n", r.cpus,
		r.oursRes.LoadSecs, r.oursRes.ProcCPU["gateway"], r.oursRes.ProcCPU["syncer"], perK(r.oursRes), r.oursRes.PostgresCPU, r.oursRes.LoadgenCPU,
		r.hpRes.LoadSecs, r.hpRes.ServerCPU, perK(r.hpRes), r.hpRes.LoadgenCPU)
	for _, warn := range r.warnings() {
		fmt.Fprintln(w, "WARNING:", warn)
	}
}

// warnings name what makes the numbers suspect.
func (r report) warnings() []string {
	var out []string
	writers := float64(r.opts.docs * r.opts.writers)
	for _, x := range []struct {
		name string
		res  result
	}{{"ours", r.oursRes}, {"Hocuspocus", r.hpRes}} {
		if x.res.Lost > 0 || x.res.Diverged > 0 {
			out = append(out, fmt.Sprintf("%s: %d edits never reached the observers, %d documents did not converge", x.name, x.res.Lost, x.res.Diverged))
		}
		if x.res.Reconnects > 0 {
			out = append(out, fmt.Sprintf("%s: clients reconnected %d times during the run", x.name, x.res.Reconnects))
		}
		for _, p := range x.res.Phases {
			if p.Rate == 0 && p.LoadgenMaxCPU >= 85 {
				out = append(out, fmt.Sprintf("%s, closed loop: a load generator process used %.0f%% of a core, so it may have set the pace: "+
					"%.0f updates/s is a lower bound of what %s relays (more -procs spread the clients, if the machine has cores to spare)",
					x.name, p.LoadgenMaxCPU, p.UpdatesPerSec, x.name))
			}
			if offered := p.Rate * writers; offered > 0 && p.UpdatesPerSec < 0.95*offered {
				out = append(out, fmt.Sprintf("%s relayed %.0f of the %.0f updates/s offered: saturated (the server or the load generator), "+
					"so its latency includes queueing; a lower -rate measures it unloaded", x.name, p.UpdatesPerSec, offered))
			}
		}
	}
	if r.committedBytes != r.oursRes.TextBytes {
		out = append(out, fmt.Sprintf("ours: PostgreSQL holds %d bytes of text, the clients %d", r.committedBytes, r.oursRes.TextBytes))
	}
	for _, p := range r.oursRes.Phases {
		if perWriter := p.SentPerSec / writers; perWriter > 90 {
			out = append(out, fmt.Sprintf("ours: writers edited %.0f times/s each (%s), near or over the gateway's default limit of 100 sync "+
				"messages/s per user (each client is its own user), which holds them back", perWriter, phaseName(p.Rate, int(writers))))
		}
	}
	return out
}

func procsText(n int) string {
	if n == 1 {
		return "one Node process"
	}
	return fmt.Sprintf("%d Node processes (the documents dealt out)", n)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func busiest(n int, maxPercent float64) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf(" (busiest process %.0f%%)", maxPercent)
}
