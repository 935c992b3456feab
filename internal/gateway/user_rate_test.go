package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestOneTokenCannotWriteLedgersWithoutBound: every REST save, Yjs update
// and sync step 1 writes a ledger row, and REST had no per-user limit (the
// WebSocket has one): one token could write a school's ledgers as fast as
// the network allowed (security review). Past userBurst at once a user's
// requests get 429 rate_limited with Retry-After, and their refusals are
// recorded a few per document, then counted, not one row each; another
// user is not held up.
func TestOneTokenCannotWriteLedgersWithoutBound(t *testing.T) {
	// The gateways' clock stands still: no token comes back during the run.
	at := time.Now()
	f := customFixture(t, nil, func() time.Time { return at })
	mallory := token(t, "school-a", "mallory", time.Hour, false)
	ada := token(t, "school-a", "ada", time.Hour, false)
	doc := "flood-1"
	sv := []byte{0} // an empty state vector
	limited := 0
	for i := 0; i < userBurst+50; i++ {
		r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/sync", mallory, sv)
		switch {
		case r.status == http.StatusOK:
		case r.status == http.StatusTooManyRequests && r.body["code"] == CodeRateLimited:
			limited++
		default:
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
	}
	if limited < 40 {
		t.Fatalf("%d of %d requests were limited, want about 50 past the burst of %d", limited, userBurst+50, userBurst)
	}
	rows, err := store.LedgerRows(t.Context(), f.pool, doc)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range rows {
		if strings.Contains(string(r.Body), `"code":"rate_limited"`) {
			refused++
		}
	}
	if refused == 0 || refused > 10 {
		t.Errorf("%d refusals left %d rate_limited ledger rows, want a few (at least one)", limited, refused)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/sync", ada, sv); r.status != http.StatusOK {
		t.Errorf("another user of the school was held up: %d %s", r.status, r.raw)
	}
}

// TestAnExpiredTokenCannotWriteLedgersWithoutBound: an expired token is
// authentic (only too old), and its refusals are recorded under its
// school and user, a Yjs update's with its hash and clients; one row per
// request let a leaked old token write a student's ledger as fast as the
// network allowed. They count against the user's limit like any of the
// user's requests; past it they are recorded a few per document.
func TestAnExpiredTokenCannotWriteLedgersWithoutBound(t *testing.T) {
	at := time.Now()
	f := customFixture(t, nil, func() time.Time { return at })
	ada := token(t, "school-a", "ada", time.Hour, false)
	f.create(ada, "old-1", "Hello")
	expired := token(t, "school-a", "ada", -time.Minute, false)
	for i := 0; i < userBurst+50; i++ {
		if r := f.do(http.MethodPost, contract.PathDocuments+"/old-1/updates", expired, []byte{0, 0}); r.status != http.StatusUnauthorized {
			t.Fatalf("request %d with an expired token: %d %s", i, r.status, r.raw)
		}
	}
	rows, err := store.LedgerRows(t.Context(), f.pool, "old-1")
	if err != nil {
		t.Fatal(err)
	}
	expiredRows := 0
	for _, r := range rows {
		if strings.Contains(string(r.Body), `"code":"token_expired"`) {
			expiredRows++
		}
	}
	if expiredRows < userBurst || expiredRows > userBurst+10 {
		t.Errorf("%d refused requests left %d token_expired ledger rows, want the user's burst (%d) and a few more", userBurst+50, expiredRows, userBurst)
	}
	// The refusals left out are counted by the next record, as what they
	// were: expired-token refusals, not rate-limited requests.
	at = at.Add(10 * time.Second) // the document's record budget has one more; the user's is full again
	for i := 0; i <= userBurst; i++ {
		if r := f.do(http.MethodPost, contract.PathDocuments+"/old-1/updates", expired, []byte{0, 0}); r.status != http.StatusUnauthorized {
			t.Fatalf("a later request with the expired token: %d %s", r.status, r.raw)
		}
	}
	rows, err = store.LedgerRows(t.Context(), f.pool, "old-1")
	if err != nil {
		t.Fatal(err)
	}
	if last := string(rows[len(rows)-1].Body); !strings.Contains(last, "more expired-token refusals of this document were not recorded") {
		t.Errorf("the next record of an expired-token refusal does not count those left out as such: %s", last)
	}
}

// TestAnOldTokenDoesNotSpendItsStudentsLiveBudget: a leaked token that
// expired long ago is replayed at the gateway; its refusals are limited,
// but by a budget of their own: the student's valid requests still go
// through.
func TestAnOldTokenDoesNotSpendItsStudentsLiveBudget(t *testing.T) {
	at := time.Now()
	f := customFixture(t, nil, func() time.Time { return at })
	ada := token(t, "school-a", "ada", time.Hour, false)
	f.create(ada, "live-1", "Hello")
	old := token(t, "school-a", "ada", -24*time.Hour, false)
	for i := 0; i < userBurst+50; i++ {
		if r := f.do(http.MethodPost, contract.PathDocuments+"/live-1/sync", old, []byte{0}); r.status != http.StatusUnauthorized {
			t.Fatalf("request %d with the old token: %d %s", i, r.status, r.raw)
		}
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/live-1/sync", ada, []byte{0}); r.status != http.StatusOK {
		t.Errorf("the student's valid token after an old one was replayed: %d %s", r.status, r.raw)
	}
}
