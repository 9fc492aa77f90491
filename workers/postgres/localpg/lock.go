package localpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// lock takes an exclusive flock on the file at path, polling so that ctx can
// end the wait, and returns the function that releases it. The kernel releases
// the lock if the process dies, so a killed spotflow never leaves it held.
// Each call opens the file anew, so goroutines of one process exclude each
// other as processes do.
func lock(ctx context.Context, path string, log *slog.Logger) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock postgres cluster: %w", err)
	}
	release := func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for waiting := false; ; waiting = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return release, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock postgres cluster %s: %w", path, err)
		}
		if !waiting {
			log.Info("waiting for another user of the postgres cluster", "lock", path)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock postgres cluster %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}
