package dataplane

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/migrations"
)

// Open connects to the database at dsn, applies pending migrations and
// returns its data plane.
func Open(ctx context.Context, dsn string) (*Postgres, *pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: never echo it.
		return nil, nil, fmt.Errorf("parse database URL: invalid connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := migrations.Up(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return NewPostgres(pool), pool, nil
}

// Cache keeps one migrated data plane per DSN, for a controller that serves
// rollouts pointing at different databases.
type Cache struct {
	mu     sync.Mutex
	stores map[string]*Postgres
	pools  []*pgxpool.Pool
}

// Get returns the data plane for dsn, opening and migrating it on first use.
func (c *Cache) Get(ctx context.Context, dsn string) (Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stores[dsn]; ok {
		return s, nil
	}
	s, pool, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if c.stores == nil {
		c.stores = map[string]*Postgres{}
	}
	c.stores[dsn] = s
	c.pools = append(c.pools, pool)
	return s, nil
}

// Close closes every pool.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pools {
		p.Close()
	}
	c.stores, c.pools = nil, nil
}
