package dataplane

import (
	"context"
	"slices"
	"testing"
)

func TestIntegrityQueries(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	if err := s.RegisterRollout(ctx, "ns/r", "", 2); err != nil {
		t.Fatal(err)
	}
	key := CohortKey{"ns/r", "c"}
	must[CohortState](t)(s.FreezeCohort(ctx, key, 0, Selector{Tenants: []string{"a"}}, at))
	if _, err := pool.Exec(ctx, `
		INSERT INTO documents (doc_id, tenant, owner, content, revision, shard, created_at, updated_at) VALUES
		  ('d1', 'a', 'u', 'x', 1, 0, now(), now()), ('d2', 'a', 'u', 'x', 1, 0, now(), now()),
		  ('d3', 'a', 'u', 'x', 1, 0, now(), now()), ('d4', 'a', 'u', 'x', 1, 1, now(), now());
		INSERT INTO yjs_snapshots (doc_id, generation, upto_seq, state, state_vector, text, at) VALUES ('d2', 1, 1, '\x00', '\x00', 'x', now());
		INSERT INTO yjs_updates (doc_id, seq, generation, update, origin, shard_epoch, at) VALUES ('d3', 1, 1, '\x00', 'test', 1, now());
		UPDATE documents SET content = 'y' WHERE doc_id = 'd1';`); err != nil {
		t.Fatal(err)
	}
	counts, err := s.CohortIntegrity(ctx, "ns/r", 0)
	if err != nil || counts["c"] != (CohortCounts{Documents: 3, WithYjs: 2}) {
		t.Fatalf("counts %+v %v", counts, err)
	}
	ids, err := s.BackfillCandidates(ctx, "ns/r", "c", 0, "", 10)
	if err != nil || !slices.Equal(ids, []string{"d1"}) {
		t.Fatalf("candidates %v %v", ids, err)
	}
	if ids, err = s.BackfillCandidates(ctx, "ns/r", "c", 0, "d1", 10); err != nil || len(ids) != 0 {
		t.Fatalf("candidates after d1: %v %v", ids, err)
	}
	docs, err := s.ShardCohortDocs(ctx, "ns/r", 0, []string{"c"})
	if err != nil || len(docs) != 3 || docs[0].Doc != "d1" || docs[0].Cohort != "c" {
		t.Fatalf("docs %+v %v", docs, err)
	}
	// The trigger stamps every insert and update with a growing sequence.
	if docs[0].ChangeSeq <= docs[1].ChangeSeq || docs[1].ChangeSeq <= 0 {
		t.Errorf("change_seq: %+v", docs)
	}
}
