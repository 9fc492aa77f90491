package workers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spotflow/spotflow/events"
)

// RollupPruning deletes roll-up rows that no dashboard range reads any more.
type RollupPruning interface {
	PruneDashboard(ctx context.Context, now time.Time) (int64, error)
}

// PersonalDataPruning deletes personal data once nothing needs it: sealed
// copies no worker can use any more (as of now, with the reconciler
// re-driving requests stalled for reconcileAfter), and requests that ended
// before a time, with everything that belongs to them.
type PersonalDataPruning interface {
	ClearSealedCopies(ctx context.Context, now time.Time, reconcileAfter time.Duration) (events.Pruned, error)
	PruneRequests(ctx context.Context, before time.Time) (events.Pruned, error)
	// EndIdleVisits ends the desk application's visits started before
	// cutoff and left open, forgetting their citizens.
	EndIdleVisits(ctx context.Context, cutoff time.Time) (int64, error)
	// PruneTraining removes the training requests submitted, and the
	// training visits started, before before.
	PruneTraining(ctx context.Context, before time.Time) (events.Pruned, int64, error)
}

// PrunerStore is what the pruner needs of the database.
type PrunerStore interface {
	RollupPruning
	PersonalDataPruning
}

// PrunerConfig configures a Pruner.
type PrunerConfig struct {
	// Store whose roll-ups, sealed copies and requests are pruned. Required.
	Store PrunerStore
	// Every is how often to prune. Default 10 minutes.
	Every time.Duration
	// RequestRetention is how long a request is kept once it ended
	// (completed, rejected or failed, counted from its last change), with
	// its work items, timeline, idempotency key and dead letters; 0 keeps
	// them for ever. Requests under way are kept however old. Keep it
	// longer than the events stream's max age, or a projector reading the
	// stream again would record a removed request anew.
	RequestRetention time.Duration
	// ReconcileAfter is the reconciler's After (ReconcilerConfig.After): a
	// request's sealed copy is kept at most a day past it. Default 5
	// minutes, the reconciler's default.
	ReconcileAfter time.Duration
	// VisitLife is how long a visit in the desk application may stay open
	// before it is ended, and its citizen forgotten. Default 12 hours.
	VisitLife time.Duration
	// TrainingRetention is how long what training mode leaves (training
	// requests and visits) is kept, for trainers to go through. Default 7
	// days.
	TrainingRetention time.Duration
	// Now tells the time; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Pruner deletes what is kept past its use: at start and then every Every,
// the dashboard's minute and hour roll-ups past their retention, the sealed
// copies of requests and dead letters that nothing can use any more, the
// desk application's visits left open past VisitLife, training requests and
// visits past TrainingRetention, and,
// with a RequestRetention, the requests that ended longer ago than that. It
// works in batches of a few thousand rows and adds nothing to the
// projector's work. Several processes may run it; pruning twice is
// harmless.
type Pruner struct {
	cfg PrunerConfig
}

// NewPruner validates cfg and returns a pruner.
func NewPruner(cfg PrunerConfig) (*Pruner, error) {
	if cfg.Store == nil {
		return nil, errors.New("new pruner: Store is required")
	}
	if cfg.RequestRetention < 0 {
		return nil, errors.New("new pruner: RequestRetention must not be negative (0 keeps requests for ever)")
	}
	cfg.Every = cmp.Or(cfg.Every, 10*time.Minute)
	cfg.ReconcileAfter = cmp.Or(cfg.ReconcileAfter, 5*time.Minute)
	cfg.VisitLife = cmp.Or(cfg.VisitLife, 12*time.Hour)
	cfg.TrainingRetention = cmp.Or(cfg.TrainingRetention, 7*24*time.Hour)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Pruner{cfg: cfg}, nil
}

// Run prunes until ctx ends, then returns nil. A failed pruning is logged
// and tried again next time.
func (p *Pruner) Run(ctx context.Context) error {
	return repeat(ctx, p.cfg.Every, p.cfg.Logger, "pruner: pruning failed; trying again later", p.Prune)
}

// Prune prunes once: roll-ups, sealed copies, then requests past their
// retention. Each goes on when one before it failed; the errors are
// returned joined.
func (p *Pruner) Prune(ctx context.Context) error {
	now := p.cfg.Now()
	log := p.cfg.Logger
	var errs []error
	n, err := p.cfg.Store.PruneDashboard(ctx, now)
	switch {
	case err != nil:
		errs = append(errs, err)
	case n > 0:
		log.Info("pruner: pruned dashboard roll-ups", "rows", n)
	}
	cleared, err := p.cfg.Store.ClearSealedCopies(ctx, now, p.cfg.ReconcileAfter)
	if err != nil {
		errs = append(errs, err)
	}
	if cleared.SealedRequests > 0 || cleared.DeadLetterMessages > 0 {
		log.Info("pruner: deleted sealed copies no longer needed",
			"requests", cleared.SealedRequests, "dead_letters", cleared.DeadLetterMessages)
	}
	ended, err := p.cfg.Store.EndIdleVisits(ctx, now.Add(-p.cfg.VisitLife))
	switch {
	case err != nil:
		errs = append(errs, err)
	case ended > 0:
		log.Info("pruner: ended visits left open", "visits", ended)
	}
	practice, visits, err := p.cfg.Store.PruneTraining(ctx, now.Add(-p.cfg.TrainingRetention))
	if err != nil {
		errs = append(errs, err)
	}
	if practice.Requests > 0 || visits > 0 {
		log.Info("pruner: removed training past its retention", "requests", practice.Requests, "visits", visits)
	}
	if p.cfg.RequestRetention > 0 {
		pruned, err := p.cfg.Store.PruneRequests(ctx, now.Add(-p.cfg.RequestRetention))
		if err != nil {
			errs = append(errs, err)
		}
		if pruned.Requests > 0 || pruned.IntakeKeys > 0 || pruned.DeadLetters > 0 {
			log.Info("pruner: removed requests past their retention", "requests", pruned.Requests,
				"work_items", pruned.WorkItems, "timeline", pruned.Timeline, "intake_keys", pruned.IntakeKeys,
				"dead_letters", pruned.DeadLetters)
		}
	}
	return errors.Join(errs...)
}
