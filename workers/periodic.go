package workers

import (
	"context"
	"log/slog"
	"time"
)

// every runs job every interval until ctx ends, then returns nil. A failure
// (Postgres down) is logged once, as what will be retried, and its end
// once; the job is simply tried again at the next tick.
func every(ctx context.Context, interval time.Duration, log *slog.Logger, what string, job func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := job(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			log.Warn(what+"; retrying every tick", "err", err)
		case err == nil && failing:
			log.Info(what + ": working again")
		}
		failing = err != nil
	}
}

// repeat runs job at once and then every interval until ctx ends, then
// returns nil. A failure is logged, as what it was doing, unless ctx ended;
// the job is simply run again at the next tick.
func repeat(ctx context.Context, interval time.Duration, log *slog.Logger, what string, job func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := job(ctx); err != nil && ctx.Err() == nil {
			log.Warn(what, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
