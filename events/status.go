// Package events is spotflow's domain vocabulary: requests, work items, status
// events, the service catalogue, the subjects and streams they travel on, and
// the errors that classify what went wrong. It imports no infrastructure; the
// JetStream glue lives in events/natsbus and the Postgres store in
// workers/postgres.
package events

// Status is a step in the life of a request or of one of its work items.
// Statuses are ordered: a projection applies a status only when it ranks
// higher than the one it holds, so redelivered or reordered events never move
// a request backwards.
type Status string

const (
	// StatusSubmitted: a desk's request was validated and stored by JetStream.
	StatusSubmitted Status = "submitted"
	// StatusRouted: the router resolved the agencies responsible for the
	// service and queued one work item per agency.
	StatusRouted Status = "routed"
	// StatusDispatched: an adapter is handing the work item to the agency's
	// back office.
	StatusDispatched Status = "dispatched"
	// StatusAccepted: the agency acknowledged the work item.
	StatusAccepted Status = "accepted"
	// StatusInProgress: the agency reported that it is working on it.
	StatusInProgress Status = "in_progress"
	// StatusCompleted: the agency finished the work item (terminal). A request
	// is completed when all of its work items are.
	StatusCompleted Status = "completed"
	// StatusRejected: the agency refused the work item (terminal). A request is
	// rejected as soon as any of its work items is.
	StatusRejected Status = "rejected"
	// StatusFailed: the work item could not be delivered and was dead-lettered
	// with a reason; an operator may replay it.
	StatusFailed Status = "failed"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{
	StatusSubmitted, StatusRouted, StatusDispatched, StatusAccepted,
	StatusInProgress, StatusCompleted, StatusRejected, StatusFailed,
}

// Rank orders statuses along the lifecycle; terminal statuses share the top
// rank except failed, which a replay may still overtake. Unknown statuses rank
// zero.
func (s Status) Rank() int {
	switch s {
	case StatusSubmitted:
		return 1
	case StatusRouted:
		return 2
	case StatusDispatched:
		return 3
	case StatusAccepted:
		return 4
	case StatusInProgress:
		return 5
	case StatusFailed:
		return 6
	case StatusCompleted, StatusRejected:
		return 7
	}
	return 0
}

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool { return s.Rank() > 0 }

// Terminal reports whether no further status can follow s without an
// operator's intervention.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusRejected || s == StatusFailed
}

// Open311 maps the status onto Open311 GeoReport v2's "open" or "closed".
func (s Status) Open311() string {
	if s == StatusCompleted || s == StatusRejected {
		return "closed"
	}
	return "open"
}

// Aggregate derives a request's status from its work items' statuses:
// rejected as soon as any is rejected; otherwise the least advanced of those
// still under way; once none is, failed if any failed, else completed.
func Aggregate(items []Status) Status {
	if len(items) == 0 {
		return StatusSubmitted
	}
	var least Status
	anyFailed := false
	for _, s := range items {
		switch {
		case s == StatusRejected:
			return StatusRejected
		case s == StatusFailed:
			anyFailed = true
		case !s.Terminal() && (least == "" || s.Rank() < least.Rank()):
			least = s
		}
	}
	switch {
	case least != "":
		return least
	case anyFailed:
		return StatusFailed
	}
	return StatusCompleted
}
