// Package workers holds spotflow's roles: intake (the desk API), the router,
// the dispatcher that hands work items to agencies through adapters, and the
// projector that records every status change in Postgres. Each role is one
// type with a Config, a New function that validates it, and a blocking Run
// (or, for intake, an http.Handler); any number of processes may run each
// role side by side, sharing the durable consumers.
package workers

import (
	"context"

	"github.com/spotflow/spotflow/events"
)

// Adapter hands work items to one agency's back office.
//
// The same work item may be delivered more than once (after a crash, a
// timeout or a replay); item.ID is its idempotency key and the agency must
// apply it once. Deliver returns the status the agency reached (accepted,
// in_progress, completed or rejected) with an optional note for the desk. An
// error marked with events.Permanent is a definitive refusal to take the work
// item and dead-letters it; any other error is transient and retried.
// Implementations must be safe for concurrent use.
type Adapter interface {
	Deliver(ctx context.Context, item events.WorkItem) (Receipt, error)
}

// Receipt is an agency's answer to a delivery.
type Receipt struct {
	Status events.Status
	// Note is shown to the desk in the request's timeline; it must not
	// carry personal data.
	Note string
}
