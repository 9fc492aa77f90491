// Package workers holds spotflow's pipeline roles, one type a file: Intake,
// the path every submission takes whatever API brings it; the Router, which
// fans a request out to its agencies' work queues; the Dispatcher, which
// hands work items to agencies through an Adapter; the Projector, which
// records every status change in Postgres; and the workers that keep them
// honest (Reconciler, Undelivered, Replayer, Pruner, Folder), with the
// catalogue file they share and their Metrics. Each role is one type with a
// Config, a New function that validates it, and a blocking Run that returns
// nil on cancellation; any number of processes may run each role side by
// side, sharing the durable consumers.
//
// It imports the domain (events), its JetStream glue (events/natsbus) and
// Prometheus; it reaches Postgres and agencies only through the small
// interfaces it declares, which workers/postgres and the adapter packages
// implement. The HTTP surfaces are packages of their own (deskapi, open311,
// dashboard, opsapi) that call the roles through interfaces of theirs.
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
