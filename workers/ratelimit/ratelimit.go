// Package ratelimit keeps callers within their share: a token bucket per
// key (a desk, a source address), held in the memory of each process. With
// several intake processes each enforces the limits on what reaches it.
package ratelimit

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Buckets is a token bucket per key, each filling at Rate tokens a second up
// to Burst. Buckets idle long enough to be full again are forgotten, so
// memory follows the keys in use. It is safe for concurrent use.
type Buckets struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

// New returns buckets of perSecond tokens a second and burst at most; a
// perSecond of zero or less is no limit.
func New(perSecond float64, burst int) *Buckets {
	r := rate.Limit(perSecond)
	if perSecond <= 0 {
		r = rate.Inf
	}
	return &Buckets{rate: r, burst: max(burst, 1), buckets: make(map[string]*rate.Limiter)}
}

// Take takes a token of key's bucket at now. When the bucket is empty it
// takes nothing and returns false with how long until a token is there.
// Nil buckets are no limit.
func (b *Buckets) Take(key string, now time.Time) (bool, time.Duration) {
	if b == nil || b.rate == rate.Inf {
		return true, 0
	}
	lim := b.bucket(key, now)
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Empty reports whether key's bucket has no token at now, and how long
// until it has one, without taking any. Nil buckets are never empty.
func (b *Buckets) Empty(key string, now time.Time) (bool, time.Duration) {
	if b == nil || b.rate == rate.Inf {
		return false, 0
	}
	b.mu.Lock()
	lim, ok := b.buckets[key]
	b.mu.Unlock()
	if !ok || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - lim.TokensAt(now)) / float64(b.rate) * float64(time.Second))
}

func (b *Buckets) bucket(key string, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) > b.fullAfter() {
		b.sweep(now)
	}
	lim, ok := b.buckets[key]
	if !ok {
		lim = rate.NewLimiter(b.rate, b.burst)
		b.buckets[key] = lim
	}
	return lim
}

// fullAfter is how long an empty bucket takes to fill.
func (b *Buckets) fullAfter() time.Duration {
	return time.Duration(float64(b.burst) / float64(b.rate) * float64(time.Second))
}

// sweep forgets the buckets that are full at now: a new one is the same.
func (b *Buckets) sweep(now time.Time) {
	for k, lim := range b.buckets {
		if lim.TokensAt(now) >= float64(b.burst) {
			delete(b.buckets, k)
		}
	}
	b.swept = now
}

// Len is how many buckets are held.
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buckets)
}

// Host is the host of a "host:port" remote address, such as
// http.Request.RemoteAddr: the source address failures are counted by. An
// address without a port is itself.
func Host(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
