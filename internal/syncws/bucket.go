package syncws

import (
	"context"
	"sync"
	"time"
)

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// wait takes one token, sleeping for it when the wait is at most max; it
// reports false (taking nothing) when the wait would be longer.
func (b *bucket) wait(ctx context.Context, max time.Duration) bool {
	b.mu.Lock()
	now := time.Now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.mu.Unlock()
		return true
	}
	d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	if d > max {
		b.mu.Unlock()
		return false
	}
	b.tokens-- // reserve: goes negative, later callers wait longer
	b.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// full reports whether the bucket has refilled to its burst.
func (b *bucket) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens+time.Since(b.last).Seconds()*b.rate >= b.burst
}
