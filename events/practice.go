package events

import (
	"errors"
	"fmt"
	"time"
)

// ErrVisitUnderWay: a session cannot switch to or from training mode while
// its mediator has a visit under way.
var ErrVisitUnderWay = errors.New("a visit is under way")

// Training mode: a request a mediator submits while practising goes
// through the whole pipeline like any other, but only to the practice
// queue (WorkSubject(SourcePractice)), where a simulated agency does what
// the trainer chose. It is counted nowhere (dashboards, service levels,
// open data) and no agency ever sees it.

// Outcome is what the simulated agencies do with a practice request.
type Outcome string

const (
	// OutcomeComplete: the agencies complete it at once.
	OutcomeComplete Outcome = "complete"
	// OutcomeReject: the agencies reject it with the trainer's reason.
	OutcomeReject Outcome = "reject"
	// OutcomeSlow: the agencies take the trainer's delay, then complete it.
	OutcomeSlow Outcome = "slow"
	// OutcomeFail: delivery fails, so the request is failed until an
	// operator replays it; the replay completes.
	OutcomeFail Outcome = "fail"
)

// Outcomes lists the outcomes in the order a trainer is offered them.
var Outcomes = []Outcome{OutcomeComplete, OutcomeReject, OutcomeSlow, OutcomeFail}

// Limits of a practice scenario.
const (
	// MaxPracticeDelay is the longest a slow practice agency takes.
	MaxPracticeDelay = time.Hour
	// DefaultPracticeDelay is how long a slow practice agency takes when
	// the trainer did not say.
	DefaultPracticeDelay = 2 * time.Minute
)

// Practice marks a request or work item as made in training mode and says
// what the simulated agencies do with it.
type Practice struct {
	Outcome Outcome `json:"outcome"`
	// Reason is the note of a rejection (OutcomeReject).
	Reason string `json:"reason,omitempty"`
	// DelaySeconds is how long a slow agency takes (OutcomeSlow).
	DelaySeconds int `json:"delay_seconds,omitempty"`
}

// Check reports what is wrong with p, or nil.
func (p *Practice) Check() error {
	switch p.Outcome {
	case OutcomeComplete, OutcomeFail:
	case OutcomeReject:
		if reason := noteFault(p.Reason); reason != "" {
			return fmt.Errorf("practice: the reason %s", reason)
		}
	case OutcomeSlow:
		if p.DelaySeconds < 0 || time.Duration(p.DelaySeconds)*time.Second > MaxPracticeDelay {
			return fmt.Errorf("practice: delay %d s outside 0–%d s", p.DelaySeconds, int(MaxPracticeDelay.Seconds()))
		}
	default:
		return fmt.Errorf("practice: unknown outcome %q", p.Outcome)
	}
	return nil
}

// Delay is how long a slow practice agency takes.
func (p *Practice) Delay() time.Duration {
	if p.DelaySeconds == 0 {
		return DefaultPracticeDelay
	}
	return time.Duration(p.DelaySeconds) * time.Second
}

// Scenario is what a trainer chose for one trainee's practice requests;
// SetBy is empty for the default, OutcomeComplete.
type Scenario struct {
	Username string
	Practice Practice
	SetBy    string
	SetAt    time.Time
}

// Trainee is a mediator as a trainer's page lists them, with the scenario
// their practice requests follow.
type Trainee struct {
	Mediator Mediator
	Scenario Scenario
}

// PracticeVisit is one visit a mediator made in training mode, as a
// trainer's page lists it.
type PracticeVisit struct {
	ID        string
	Username  string
	Name      string
	StartedAt time.Time
	EndedAt   time.Time
	Requests  []PracticeRequest
}

// PracticeRequest is one request of a practice visit and where it stands.
type PracticeRequest struct {
	ID          string
	ServiceCode string
	Status      Status
	Note        string
}
