package gateway

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/yawp/persistence-operator/internal/contract"
)

// Refusals of requests without a valid token are recorded in the named
// document's ledger, but anyone can send them: unchecked, a stream of bad
// tokens would bloat a student's ledger. So each gateway records at most
// unauthBurst of them per document at once and one per unauthEvery after
// that; the ones it leaves out are counted, and the next recorded entry
// says how many. Over all documents it records at most unauthAllBurst at
// once and unauthAllPerSecond after that, and it tracks at most
// unauthMaxDocs documents: refusals of further ones are not recorded
// until tracked ones have been quiet for a while (clearing the table
// instead, as it once did, gave every document its budget again, so a
// client spraying fresh IDs wrote to the ledger without bound).
const (
	unauthEvery        = 10 * time.Second
	unauthBurst        = 5
	unauthMaxDocs      = 10000
	unauthAllPerSecond = 20
	unauthAllBurst     = 200
)

// A user's REST requests that write the ledger (creates, saves, Yjs
// updates, sync step 1s) are limited to userPerSecond, with bursts of
// userBurst: far more than an editor sends (the local-first one syncs over
// the WebSocket, which has its own limit) or an import script needs, and
// few enough that one token cannot write a school's ledgers as fast as the
// network allows. Refusals are 429 rate_limited, recorded
// like unauthenticated ones (a few per document, then counted). At most
// userMaxTracked users are tracked at once.
const (
	userPerSecond  = 200
	userBurst      = 1000
	userMaxTracked = 100000
	// CodeRateLimited is the code of a request over its user's limit.
	CodeRateLimited = "rate_limited"
	// codeTokenExpired refuses an authentic token past its expiry.
	codeTokenExpired = "token_expired"
	// CodeUnauthenticated refuses a request without a token, or with one
	// the gateway's token key did not sign (401).
	CodeUnauthenticated = "unauthenticated"
)

type userLimiter struct {
	mu    sync.Mutex
	users map[string]*userBucket
	swept time.Time // the last sweep of idle buckets, at most one a second
}

type userBucket struct {
	lim  *rate.Limiter
	last time.Time
}

// allow reports whether one more request of tenant's user is within its
// limit at now.
func (l *userLimiter) allow(tenant, user string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users == nil {
		l.users = map[string]*userBucket{}
	}
	k := tenant + "\x00" + user
	b := l.users[k]
	if b == nil {
		if len(l.users) >= userMaxTracked && now.Sub(l.swept) >= time.Second {
			// A bucket idle long enough to be full again says nothing.
			l.swept = now
			for id, o := range l.users {
				if now.Sub(o.last) > time.Duration(userBurst/userPerSecond+1)*time.Second {
					delete(l.users, id)
				}
			}
		}
		b = &userBucket{lim: rate.NewLimiter(userPerSecond, userBurst)}
		if len(l.users) < userMaxTracked {
			l.users[k] = b
		}
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// unauthenticated is the tenant recorded for a refusal without a valid token.
const unauthenticated = contract.UnauthenticatedTenant

type refusalLimiter struct {
	// what names the refusals in the note of the next recorded one
	// ("unauthenticated", "rate-limited").
	what string
	mu   sync.Mutex
	docs map[string]*docRefusals
	all  *rate.Limiter // over every document
}

type docRefusals struct {
	lim     *rate.Limiter
	skipped int
	last    time.Time
}

// admit reports whether a refusal of doc is recorded and,
// if so, the note to add to its reason about refusals left out before it.
func (l *refusalLimiter) admit(doc string, now time.Time) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.docs == nil {
		l.docs = map[string]*docRefusals{}
		l.all = rate.NewLimiter(unauthAllPerSecond, unauthAllBurst)
	}
	d := l.docs[doc]
	if d == nil {
		if len(l.docs) >= unauthMaxDocs {
			// Forget documents quiet long enough for a full budget; the
			// map stays bounded.
			for id, o := range l.docs {
				if now.Sub(o.last) > unauthEvery*unauthBurst {
					delete(l.docs, id)
				}
			}
			if len(l.docs) >= unauthMaxDocs {
				return false, "" // not tracked, not recorded
			}
		}
		d = &docRefusals{lim: rate.NewLimiter(rate.Every(unauthEvery), unauthBurst)}
		l.docs[doc] = d
	}
	d.last = now
	if !d.lim.AllowN(now, 1) || !l.all.AllowN(now, 1) {
		d.skipped++
		return false, ""
	}
	note := ""
	if d.skipped > 0 {
		note = fmt.Sprintf(" (%d more %s refusals of this document were not recorded)", d.skipped, l.what)
		d.skipped = 0
	}
	return true, note
}
