package workers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"
)

// RollupFolding adds the events projected since the last fold to the
// roll-ups (throughput_minute and the dashboard's), each exactly once, and
// reports how many it added.
type RollupFolding interface {
	FoldRollups(ctx context.Context) (int, error)
}

// FolderConfig configures a Folder.
type FolderConfig struct {
	// Store whose roll-ups are brought up to date. Required.
	Store RollupFolding
	// Every is how often to fold. Default 2 seconds, the dashboard's own
	// refresh: the roll-ups show the projection at most that far behind.
	// Each fold updates every roll-up row its events touch once, whatever
	// their number, so folding half as often halves the roll-ups' cost.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Folder keeps the roll-ups up to date with the projection: the
// projector leaves each batch's events in an inbox, and every Every the
// folder adds whatever waits there, a few seconds' events in one
// transaction. Several processes may run it; each event is added once.
type Folder struct {
	cfg FolderConfig
}

// NewFolder validates cfg and returns a folder.
func NewFolder(cfg FolderConfig) (*Folder, error) {
	if cfg.Store == nil {
		return nil, errors.New("new folder: Store is required")
	}
	cfg.Every = cmp.Or(cfg.Every, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Folder{cfg: cfg}, nil
}

// Run folds until ctx ends, then returns nil. A failed fold (Postgres
// down) is logged and tried again next time; what waits stays in the inbox.
func (f *Folder) Run(ctx context.Context) error {
	return every(ctx, f.cfg.Every, f.cfg.Logger, "folder: add projected events to the dashboard's roll-ups", func(ctx context.Context) error {
		_, err := f.cfg.Store.FoldRollups(ctx)
		return err
	})
}
