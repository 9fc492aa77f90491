package workers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"
)

// RollupPruning deletes roll-up rows that no dashboard range reads any more.
type RollupPruning interface {
	PruneDashboard(ctx context.Context, now time.Time) (int64, error)
}

// PrunerConfig configures a Pruner.
type PrunerConfig struct {
	// Store whose roll-ups are pruned. Required.
	Store RollupPruning
	// Every is how often to prune. Default 10 minutes.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Pruner keeps the dashboard's minute and hour roll-ups from growing
// without bound: at start and then every Every, it deletes the rows past
// their retention. Several processes may run it; deleting twice is harmless.
type Pruner struct {
	cfg PrunerConfig
}

// NewPruner validates cfg and returns a pruner.
func NewPruner(cfg PrunerConfig) (*Pruner, error) {
	if cfg.Store == nil {
		return nil, errors.New("new pruner: Store is required")
	}
	cfg.Every = cmp.Or(cfg.Every, 10*time.Minute)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Pruner{cfg: cfg}, nil
}

// Run prunes until ctx ends, then returns nil. A failed pruning is logged
// and tried again next time.
func (p *Pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Every)
	defer t.Stop()
	for {
		n, err := p.cfg.Store.PruneDashboard(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.cfg.Logger.Warn("pruner: prune dashboard roll-ups", "err", err)
		case n > 0:
			p.cfg.Logger.Info("pruner: pruned dashboard roll-ups", "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
