package workers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"
)

// AuditChaining links the audit entries written since the last time into
// the audit log's hash chain, and reports how many it linked.
type AuditChaining interface {
	ChainAudit(ctx context.Context) (int, error)
}

// AuditChainerConfig configures an AuditChainer.
type AuditChainerConfig struct {
	// Store whose audit entries are chained. Required.
	Store AuditChaining
	// Every is how often to chain. Default 2 seconds: an entry is in the
	// chain, and covered by `spotflow audit verify`, that soon.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// AuditChainer keeps the audit log's hash chain up to date: writers only
// mark their entries pending, and every Every it links what waits, so no
// writer waits on another. Several processes may run it; one chains at a
// time.
type AuditChainer struct {
	cfg AuditChainerConfig
}

// NewAuditChainer validates cfg and returns a chainer.
func NewAuditChainer(cfg AuditChainerConfig) (*AuditChainer, error) {
	if cfg.Store == nil {
		return nil, errors.New("new audit chainer: Store is required")
	}
	cfg.Every = cmp.Or(cfg.Every, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &AuditChainer{cfg: cfg}, nil
}

// Run chains until ctx ends, then returns nil.
func (c *AuditChainer) Run(ctx context.Context) error {
	return every(ctx, c.cfg.Every, c.cfg.Logger, "audit chainer: link audit entries into the hash chain", func(ctx context.Context) error {
		_, err := c.cfg.Store.ChainAudit(ctx)
		return err
	})
}
