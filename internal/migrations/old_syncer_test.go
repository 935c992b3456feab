package migrations

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/pgharness"
)

// An old syncer binary (it always called Up) given the service role's DSN
// against a schema the new operator migrated: nothing is pending, so it
// must go on.
func TestReviewOldSyncerUpAsServiceRole(t *testing.T) {
	ctx := t.Context()
	dsn := pgharness.ForTest(t)
	owner, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := Up(ctx, owner); err != nil {
		t.Fatal(err)
	}
	svc := serviceRole(t, owner, dsn)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := Up(cctx, svc); err != nil {
		t.Fatalf("Up as the service role on a current schema: %v", err)
	}
}
