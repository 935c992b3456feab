package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/migrations"
)

// DefaultConnectTimeout bounds every connection to a database whose DSN
// sets no connect_timeout. Without one a host that takes the TCP
// connection and never answers (a server hung, packets dropped after the
// handshake) holds the connect for as long as the caller's context allows:
// a reconcile's has no deadline.
const DefaultConnectTimeout = 10 * time.Second

// DefaultOpenWait is how long Cache.Get waits for a data plane being
// opened. Longer than DefaultConnectTimeout, so that a database that does
// not answer is reported by its connect error.
const DefaultOpenWait = 15 * time.Second

// openTimeout bounds an open the Cache carries on with in the background.
// It is past anything an open waits for on purpose (migrations.Up polls the
// migrations' lock for 30 minutes, then retries a locked table for as long
// again), so that a connection that hangs after it was made, which no
// connect timeout bounds, does not keep its DSN "being opened" for good.
const openTimeout = 90 * time.Minute

// Open connects to the database at dsn, applies pending migrations and
// returns its data plane. Connections time out after DefaultConnectTimeout
// unless the DSN sets connect_timeout.
func Open(ctx context.Context, dsn string) (*Postgres, *pgxpool.Pool, error) {
	cfg, err := parseConfig(dsn, DefaultConnectTimeout)
	if err != nil {
		return nil, nil, err
	}
	return open(ctx, cfg, func() {})
}

func parseConfig(dsn string, connectTimeout time.Duration) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: never echo it.
		return nil, fmt.Errorf("parse database URL: invalid connection string")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	return cfg, nil
}

// open is Open on a parsed configuration; connected is called once a
// connection is made, before the migrations.
func open(ctx context.Context, cfg *pgxpool.Config, connected func()) (*Postgres, *pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	// The pool connects lazily: connect here, so that a database that
	// cannot be reached is told apart from a migration that fails or
	// waits.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		if pgconn.Timeout(err) && ctx.Err() == nil {
			return nil, nil, fmt.Errorf("connect to %s: the database did not answer within %s: %w",
				cfg.ConnConfig.Host, cfg.ConnConfig.ConnectTimeout, err)
		}
		return nil, nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	connected()
	if err := migrations.Up(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return NewPostgres(pool), pool, nil
}

// Cache keeps one migrated data plane per DSN, for a controller that serves
// rollouts pointing at different databases.
//
// A DSN's data plane is opened once, in the background, whoever asks
// first; callers wait for it at most OpenWait, and no lock is held while
// it is opened: a database that is slow to answer, or a migration waiting
// for another process's lock, holds up only the rollouts that use it.
// Once an open of a DSN failed, Get answers its error at once and opens
// the DSN again in the background, until an open succeeds.
type Cache struct {
	// ConnectTimeout bounds every connection to a database whose DSN sets
	// no connect_timeout. Zero: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// OpenWait is how long Get waits for a data plane being opened, from
	// when its open started: later callers wait for what is left of it,
	// and none once it is spent, so a stalled open costs a reconcile at
	// most once. The open carries on; a Get after it finished has it.
	// Zero: DefaultOpenWait.
	OpenWait time.Duration
	// SchemaCheck is how often Get reads the schema's version of a data
	// plane it opened, to migrate again one that went back (a restored
	// backup). Zero: DefaultSchemaCheck.
	SchemaCheck time.Duration
	// Now, if set, stands in for PostgreSQL's clock in every data plane
	// the cache opens (Postgres.WithClock): for tests.
	Now func() time.Time

	mu    sync.Mutex
	opens map[string]*opening
	// failed: each DSN's last open's error while none has succeeded
	// since. Get does not wait for a DSN's open again once one failed: a
	// database that does not answer would cost every reconcile of its
	// rollouts a connect timeout, at every poll.
	failed  map[string]error
	pools   []*pgxpool.Pool
	closed  bool
	ctx     context.Context // of the opens in the background; Close cancels it
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// opening is one DSN's data plane: being opened until done is closed, then
// opened (store) or failed (err). A failed one leaves the Cache, so the
// next Get opens the DSN again.
type opening struct {
	host    string
	started time.Time
	// prev is the error of the DSN's open before this one, which failed:
	// Get answers it at once instead of waiting for this one.
	prev      error
	connected atomic.Bool
	// checked is when current last read the schema's version (UnixNano).
	checked atomic.Int64
	done    chan struct{}
	store   *Postgres
	err     error
}

// errCacheClosed is returned by Get after Close.
var errCacheClosed = errors.New("data plane cache closed")

// Get returns the data plane for dsn, opening and migrating it on first use.
func (c *Cache) Get(ctx context.Context, dsn string) (Store, error) {
	o, err := c.opening(dsn)
	if err != nil {
		return nil, err
	}
	select {
	case <-o.done:
		return c.current(ctx, dsn, o)
	default:
	}
	if o.prev != nil {
		// Tried again in the background: a later Get has its result.
		if o.connected.Load() {
			return nil, fmt.Errorf("migrate the database at %s: not done yet (another process may hold the migrations' lock); still trying", o.host)
		}
		return nil, fmt.Errorf("%w; trying again", o.prev)
	}
	wait := time.NewTimer(max(time.Until(o.started.Add(c.openWait())), 0))
	defer wait.Stop()
	select {
	case <-o.done:
		return c.current(ctx, dsn, o)
	case <-wait.C:
		if o.connected.Load() {
			return nil, fmt.Errorf("migrate the database at %s: not done within %s (another process may hold the migrations' lock); still trying", o.host, c.openWait())
		}
		return nil, fmt.Errorf("connect to %s: the database did not answer within %s; still trying", o.host, c.openWait())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// opening returns dsn's opening, starting it if there is none.
func (c *Cache) opening(dsn string) (*opening, error) {
	c.mu.Lock()
	o, ok := c.opens[dsn]
	c.mu.Unlock()
	if ok {
		return o, nil
	}
	// Parsed outside the lock: it may read a password file.
	cfg, err := parseConfig(dsn, c.connectTimeout())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errCacheClosed
	}
	if o, ok := c.opens[dsn]; ok {
		return o, nil
	}
	if c.opens == nil {
		c.opens = map[string]*opening{}
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	o = &opening{host: cfg.ConnConfig.Host, started: time.Now(), prev: c.failed[dsn], done: make(chan struct{})}
	c.opens[dsn] = o
	c.running.Add(1)
	// Not on the caller's context: the caller stops waiting after
	// OpenWait, and the next caller waits for this same open rather than
	// start one of its own.
	go func() {
		defer c.running.Done()
		ctx, cancel := context.WithTimeout(c.ctx, openTimeout)
		defer cancel()
		s, pool, err := open(ctx, cfg, func() { o.connected.Store(true) })
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case err != nil:
			if c.opens[dsn] == o {
				delete(c.opens, dsn)
				if !c.closed {
					if c.failed == nil {
						c.failed = map[string]error{}
					}
					c.failed[dsn] = err
				}
			}
			o.err = err
		case c.closed:
			pool.Close()
			o.err = errCacheClosed
		default:
			if c.Now != nil {
				s = s.WithClock(c.Now)
			}
			o.store = s
			c.pools = append(c.pools, pool)
			delete(c.failed, dsn)
		}
		close(o.done)
	}()
	return o, nil
}

// DefaultSchemaCheck is how often Cache.Get reads the schema's version of
// a data plane it opened.
const DefaultSchemaCheck = 10 * time.Second

// current is o's result, once done; a data plane whose schema went back
// below this binary's version (the database restored from a backup taken
// before an upgrade) is opened, so migrated, again. Without this it was
// never migrated again: every reconcile failed on what the older schema
// lacks, and syncers of a role that may not migrate waited at start for
// good. Read at most every SchemaCheck; a read that fails says
// nothing of the schema and leaves the data plane as it is.
func (c *Cache) current(ctx context.Context, dsn string, o *opening) (Store, error) {
	if o.err != nil {
		return nil, o.err
	}
	now := time.Now()
	if last := o.checked.Load(); last != 0 && now.Sub(time.Unix(0, last)) < c.schemaCheck() {
		return o.store, nil
	}
	o.checked.Store(now.UnixNano())
	at, err := migrations.Version(ctx, o.store.pool)
	if err != nil || at >= migrations.Latest() {
		return o.store, nil
	}
	slog.Warn("the database's schema went back below this version's (restored from a backup?): migrating it again", "host", o.host, "at", at, "need", migrations.Latest())
	c.mu.Lock()
	if c.opens[dsn] == o {
		delete(c.opens, dsn)
	}
	c.mu.Unlock()
	return c.Get(ctx, dsn)
}

func (c *Cache) schemaCheck() time.Duration {
	if c.SchemaCheck > 0 {
		return c.SchemaCheck
	}
	return DefaultSchemaCheck
}

func (c *Cache) connectTimeout() time.Duration {
	if c.ConnectTimeout > 0 {
		return c.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (c *Cache) openWait() time.Duration {
	if c.OpenWait > 0 {
		return c.OpenWait
	}
	return DefaultOpenWait
}

// Close closes every pool, after stopping the opens under way.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	pools := c.pools
	c.opens, c.pools, c.failed = nil, nil, nil
	c.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
	// An open under way sees its context cancelled and stops promptly.
	c.running.Wait()
}
