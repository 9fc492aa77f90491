package workers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// DeskAdmission decides whether a desk may submit now (*DeskLimits).
type DeskAdmission interface {
	// Admit takes one of desk's submissions at now, or refuses it with an
	// *events.Throttled.
	Admit(desk string, now time.Time) error
	// Accepted counts a request of desk accepted.
	Accepted(desk string)
}

// OpenRequestCounter counts the requests of each desk under way.
type OpenRequestCounter interface {
	OpenRequestsByDesk(ctx context.Context, window time.Duration, now time.Time) (map[string]int, error)
}

// DeskLimitsConfig configures DeskLimits.
type DeskLimitsConfig struct {
	// Rate is how many submissions a second a desk may make, on average,
	// to one intake process; zero or less is no limit.
	Rate float64
	// Burst is how many a desk may make at once.
	Burst int
	// MaxOpen is how many requests a desk may have under way (submitted,
	// not yet completed, rejected or failed); zero or less is no limit. It
	// keeps one desk from filling the events stream.
	MaxOpen int
	// Store counts open requests. Required when MaxOpen is set.
	Store OpenRequestCounter
	// Refresh is how often the open requests are counted again. Default 2
	// seconds.
	Refresh time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// openWindow is how far back open requests are counted.
const openWindow = 30 * 24 * time.Hour

// DeskLimits keeps each desk within its share of intake: a token bucket of
// submissions, and a cap on its requests under way. The open requests are
// counted every Refresh from Postgres, plus what this process accepted
// since; so the cap holds to within what desks submit in a few seconds,
// which the rate bounds. It is safe for concurrent use.
type DeskLimits struct {
	cfg     DeskLimitsConfig
	buckets *ratelimit.Buckets

	mu       sync.Mutex
	open     map[string]int // counted at the last refresh
	accepted map[string]int // by this process since
}

// NewDeskLimits validates cfg and returns the limits.
func NewDeskLimits(cfg DeskLimitsConfig) (*DeskLimits, error) {
	if cfg.MaxOpen > 0 && cfg.Store == nil {
		return nil, errors.New("new desk limits: a Store is required to cap open requests")
	}
	cfg.Refresh = cmp.Or(cfg.Refresh, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &DeskLimits{
		cfg: cfg, buckets: ratelimit.New(cfg.Rate, cfg.Burst),
		open: map[string]int{}, accepted: map[string]int{},
	}, nil
}

// Admit takes one of desk's submissions at now, or refuses it with an
// *events.Throttled.
func (l *DeskLimits) Admit(desk string, now time.Time) error {
	if l.cfg.MaxOpen > 0 {
		l.mu.Lock()
		open := l.open[desk] + l.accepted[desk]
		l.mu.Unlock()
		if open >= l.cfg.MaxOpen {
			return &events.Throttled{Limit: events.LimitOpen, RetryAfter: l.cfg.Refresh}
		}
	}
	if ok, wait := l.buckets.Take(desk, now); !ok {
		return &events.Throttled{Limit: events.LimitRate, RetryAfter: wait}
	}
	return nil
}

// Accepted counts a request of desk accepted, until the next count.
func (l *DeskLimits) Accepted(desk string) {
	if l.cfg.MaxOpen <= 0 {
		return
	}
	l.mu.Lock()
	l.accepted[desk]++
	l.mu.Unlock()
}

// Run counts the open requests every Refresh until ctx ends. Without a cap
// it returns at once.
func (l *DeskLimits) Run(ctx context.Context) error {
	if l.cfg.MaxOpen <= 0 {
		return nil
	}
	return repeat(ctx, l.cfg.Refresh, l.cfg.Logger, "desk limits: keeping the last count of open requests", func(ctx context.Context) error {
		return l.Count(ctx, time.Now())
	})
}

// Count counts the open requests of every desk again.
func (l *DeskLimits) Count(ctx context.Context, now time.Time) error {
	open, err := l.cfg.Store.OpenRequestsByDesk(ctx, openWindow, now)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.open, l.accepted = open, map[string]int{}
	l.mu.Unlock()
	return nil
}
