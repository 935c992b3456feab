package migrations

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink written from more than one goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAnOlderBinarySaysTheSchemaIsNewer: after a failed upgrade, `helm
// rollback` starts the previous operator and syncers against a schema a
// later version migrated. goose applies nothing and says nothing, so the
// older binaries ran as if nothing had happened, although a later release
// may change what a save writes (README: migrations 9 and 10, past which
// syncers must not be rolled back). Each says so in its log at start,
// naming both versions, and keeps running.
func TestAnOlderBinarySaysTheSchemaIsNewer(t *testing.T) {
	dsn, owner := ownerPool(t)
	ctx := t.Context()
	if err := Up(ctx, owner); err != nil {
		t.Fatal(err)
	}
	newer := Latest() + 1
	if _, err := owner.Exec(ctx, `INSERT INTO schema_migrations (version_id, is_applied) VALUES ($1, true)`, newer); err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	// The operator's role (it migrates).
	if err := Up(ctx, owner); err != nil {
		t.Fatalf("the previous operator against a newer schema: %v", err)
	}
	if got := buf.String(); !strings.Contains(got, "newer than this binary") || !strings.Contains(got, fmt.Sprintf("at=%d", newer)) {
		t.Errorf("the operator's role, schema at %d, binary at %d: log says\n%s", newer, Latest(), got)
	}

	// A syncer's role (yawp_service: it waits for the schema, never migrates).
	// A syncer logs through the logger it was given (cmd/syncer's, which is
	// not the default): the warning must be there, and not in the default
	// logger's output, which the process may not show as its own.
	operator := buf.String()
	var slog2 syncBuffer
	svc := serviceRole(t, owner, dsn)
	if err := UpOrWait(ctx, svc, slog.New(slog.NewTextHandler(&slog2, nil)), 10*time.Millisecond); err != nil {
		t.Fatalf("the previous syncer against a newer schema: %v", err)
	}
	if got := slog2.String(); !strings.Contains(got, "newer than this binary") {
		t.Errorf("a yawp_service syncer, schema at %d, binary at %d: log says\n%s", newer, Latest(), got)
	}

	// A syncer connected as the schema's owner (a chart without a service
	// DSN): it migrates, through Up, which logged to slog.Default.
	var slog3 syncBuffer
	if err := UpOrWait(ctx, owner, slog.New(slog.NewTextHandler(&slog3, nil)), 10*time.Millisecond); err != nil {
		t.Fatalf("the previous syncer, as the owner, against a newer schema: %v", err)
	}
	if got := slog3.String(); !strings.Contains(got, "newer than this binary") || !strings.Contains(got, fmt.Sprintf("at=%d", newer)) {
		t.Errorf("a syncer as the schema's owner, schema at %d, binary at %d: its logger says\n%s", newer, Latest(), got)
	}
	if got := strings.TrimPrefix(buf.String(), operator); got != "" {
		t.Errorf("syncers given a logger wrote to the default logger instead:\n%s", got)
	}
}
