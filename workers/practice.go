package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spotflow/spotflow/events"
)

// ErrPracticeFailure is the failure a practice work item meets when its
// trainer chose events.OutcomeFail: permanent, so that the request fails and
// waits for an operator's replay, which completes it.
var ErrPracticeFailure = errors.New("practice: the simulated agency could not take the work item; an operator's replay completes it")

// PracticeAgency is the adapter of the practice queue: the simulated agency
// of training mode, which answers each practice work item as its trainer
// chose (events.Practice), whichever agency it names. It keeps no state:
// the same work item always gets the same answer, so redeliveries are
// harmless.
type PracticeAgency struct{}

var _ Adapter = PracticeAgency{}

// Deliver answers item as its practice scenario says. It refuses, as
// permanent, a work item made outside training mode.
func (PracticeAgency) Deliver(ctx context.Context, item events.WorkItem) (Receipt, error) {
	p := item.Practice
	if p == nil {
		return Receipt{}, events.Permanent(fmt.Errorf("practice: work item %s was not made in training mode", item.ID))
	}
	if err := p.Check(); err != nil {
		return Receipt{}, events.Permanent(fmt.Errorf("practice: work item %s: %w", item.ID, err))
	}
	switch p.Outcome {
	case events.OutcomeReject:
		return Receipt{Status: events.StatusRejected, Note: p.Reason}, nil
	case events.OutcomeFail:
		if item.Round == 0 {
			return Receipt{}, events.Permanent(ErrPracticeFailure)
		}
	case events.OutcomeSlow:
		t := time.NewTimer(p.Delay())
		defer t.Stop()
		select {
		case <-ctx.Done():
			return Receipt{}, ctx.Err()
		case <-t.C:
		}
	}
	return Receipt{Status: events.StatusCompleted}, nil
}
