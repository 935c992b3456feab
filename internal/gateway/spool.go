package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/yawp/persistence-operator/internal/store"
)

// The spool keeps each unconfirmed trace (unconfirmed.go) as a file in
// Config.SpoolDir until it is recorded: <nanoseconds>-<random>.json, its
// JSON written to a .tmp file and renamed, so a crashed process leaves
// whole files or .tmp files (removed at the next start). A Yjs update is
// kept as its trace (sha256, clients, operation ranges: store.TraceUpdate),
// never its text. No fsync: the files are to outlive the gateway process;
// after a power loss a renamed file may be empty, and is set aside as
// unreadable (and logged) when the gateway starts again.

const (
	spoolExt        = ".json"
	spoolUnreadable = ".unreadable"
)

// spool writes u's file; unconfMu held. A failure is logged and leaves
// the trace in memory only.
func (g *Gateway) spool(u *unconfirmed) {
	if g.cfg.SpoolDir == "" {
		return
	}
	b, err := json.Marshal(onDisk(*u))
	if err == nil {
		var r [6]byte
		_, _ = rand.Read(r[:])
		name := filepath.Join(g.cfg.SpoolDir, fmt.Sprintf("%020d-%s%s", u.At.UnixNano(), hex.EncodeToString(r[:]), spoolExt))
		tmp := name + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			if err = os.Rename(tmp, name); err == nil {
				u.file = name
				return
			}
			_ = os.Remove(tmp)
		}
	}
	g.log.Warn("could not spool an unconfirmed save; it is kept in memory only", "doc", u.Req.Doc, "request", u.Req.RequestID, "err", err)
}

// onDisk is u as the spool keeps it (and a handoff sends it): a Yjs
// update is replaced by what the ledger entry needs of it, not the
// student's text, so the node's disk keeps none of it.
func onDisk(u unconfirmed) unconfirmed {
	if u.Req.Update != nil {
		u.Req.UpdateTrace, u.Req.Update = store.TraceUpdate(u.Req.Update), nil
	}
	return u
}

// unspool removes u's file, if it has one.
func (g *Gateway) unspool(u unconfirmed) {
	if u.file == "" {
		return
	}
	if err := os.Remove(u.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		g.log.Warn("could not remove a recorded unconfirmed save from the spool; it may be recorded again after a restart", "file", u.file, "err", err)
	}
}

// loadSpool queues the traces a previous run of the gateway left in the
// spool, oldest first, and starts recording them. A file that cannot be
// read as a trace is renamed *.unreadable and logged, not retried.
func (g *Gateway) loadSpool() error {
	dir := g.cfg.SpoolDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("gateway: spool directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("gateway: spool directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch n := e.Name(); {
		case e.IsDir():
		case strings.HasSuffix(n, ".tmp"):
			_ = os.Remove(filepath.Join(dir, n)) // a write cut short
		case strings.HasSuffix(n, spoolExt):
			names = append(names, n)
		}
	}
	slices.Sort(names)
	g.unconfMu.Lock()
	defer g.unconfMu.Unlock()
	for _, n := range names {
		path := filepath.Join(dir, n)
		u, err := readSpooled(path)
		if err != nil {
			g.log.Error("unreadable unconfirmed save in the spool; set aside", "file", path+spoolUnreadable, "err", err)
			_ = os.Rename(path, path+spoolUnreadable)
			g.cfg.Metrics.unconfLost.WithLabelValues(lostUnreadable).Inc()
			continue
		}
		u.file = path
		g.queueUnconfirmed(u)
	}
	if n := len(g.unconf); n > 0 {
		g.log.Info("recording unconfirmed saves left in the spool by the last run", "traces", n, "spool", dir)
	}
	g.startDrain()
	return nil
}

func readSpooled(path string) (unconfirmed, error) {
	var u unconfirmed
	b, err := os.ReadFile(path)
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return u, err
	}
	return u, checkTrace(u)
}

// checkTrace says whether u reads as an unconfirmed save's trace.
func checkTrace(u unconfirmed) error {
	if u.Req.Kind != store.KindReject || u.Req.Code != CodeUnconfirmed || u.Req.Doc == "" || u.At.IsZero() {
		return errors.New("not an unconfirmed save's trace")
	}
	return nil
}
