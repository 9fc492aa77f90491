package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// ReconcilerStore is what the reconciler needs of the database.
type ReconcilerStore interface {
	StalledRequests(ctx context.Context, cutoff time.Time, limit int) ([]events.StalledRequest, error)
	MarkRedriven(ctx context.Context, ids []string) error
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// JetStream to publish to. Required.
	JetStream jetstream.JetStream
	// Store finds stalled requests. Required.
	Store ReconcilerStore
	// After is how long an accepted request may go without progress in the
	// pipeline before it is published again. Keep it longer than the
	// streams' deduplication window (2 minutes), or the new copy of a
	// request that was lost is discarded as a duplicate of the lost one.
	// Default 5 minutes.
	After time.Duration
	// Every is how often the reconciler looks. Default 30 seconds.
	Every time.Duration
	// Batch caps how many requests one look re-drives. Default 1000.
	Batch int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Reconciler re-drives accepted requests whose progress stalled: it
// publishes each again with its original IDs, so that even a request that
// JetStream lost after acknowledging it (a power loss before the fsync, a
// lost replica) reaches a terminal state. Everything downstream is
// idempotent, so re-driving a request that was merely slow changes nothing.
// Several reconcilers may run at once; their publishes deduplicate.
type Reconciler struct {
	cfg ReconcilerConfig
	pub *natsbus.Publisher
}

// NewReconciler validates cfg.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.JetStream == nil || cfg.Store == nil {
		return nil, errors.New("new reconciler: JetStream and Store are required")
	}
	cfg.After = cmp.Or(cfg.After, 5*time.Minute)
	cfg.Every = cmp.Or(cfg.Every, 30*time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 1000)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Reconciler{cfg: cfg, pub: natsbus.NewPublisher(cfg.JetStream)}, nil
}

// Run looks for stalled requests every Every until ctx ends; a failed look
// is logged and tried again at the next tick.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := r.Reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.cfg.Logger.Warn("reconciler: look failed; trying again later", "err", err)
		} else if n > 0 {
			r.cfg.Logger.Warn("reconciler: re-drove stalled requests", "requests", n)
		}
	}
}

// Reconcile re-drives the requests stalled now and returns how many.
func (r *Reconciler) Reconcile(ctx context.Context) (int, error) {
	stalled, err := r.cfg.Store.StalledRequests(ctx, time.Now().Add(-r.cfg.After), r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	outs := make([]natsbus.Outgoing, 0, len(stalled))
	ids := make([]string, 0, len(stalled))
	// A request whose kept message cannot be read is marked as tried all
	// the same, so that it does not stay first in line and hold back the
	// others; it is looked at again when After has passed.
	var unreadable []string
	for _, s := range stalled {
		err := s.Unreadable
		var req *events.Request
		if err == nil {
			req, err = decodeRequest(s.Message)
		}
		if err != nil {
			r.cfg.Logger.Error("reconciler: kept request cannot be read; it cannot be re-driven", "request", s.ID, "err", err)
			unreadable = append(unreadable, s.ID)
			continue
		}
		outs = append(outs, natsbus.Outgoing{
			Subject: events.RequestSubject(req.Municipality, req.DeskID),
			ID:      events.MsgID(req.ID, req.Round),
			Value:   natsbus.Raw(s.Message),
		})
		ids = append(ids, req.ID)
	}
	if len(outs) > 0 {
		if err := r.pub.PublishAll(ctx, outs); err != nil {
			return 0, fmt.Errorf("reconcile: %w", err)
		}
	}
	if tried := append(ids, unreadable...); len(tried) > 0 {
		if err := r.cfg.Store.MarkRedriven(ctx, tried); err != nil {
			return 0, err
		}
	}
	return len(outs), nil
}
