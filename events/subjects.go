package events

import "strings"

// Streams and subjects. Every message spotflow publishes travels on one of
// these; the agency queue contract (docs/agencies.md) is written in terms of
// them.
const (
	// EventsStream holds what happened: submitted requests and every status
	// event, kept for a retention period (limits retention) so projections
	// can be rebuilt and consumers added later.
	EventsStream = "SPOTFLOW_EVENTS"
	// WorkStream is the agencies' work queue (work-queue retention): a work
	// item leaves it when the agency's consumer acknowledges it.
	WorkStream = "SPOTFLOW_WORK"

	// RequestSubjects matches every submitted request:
	// spotflow.requests.<municipality>.<desk>.
	RequestSubjects = requestPrefix + ">"
	// StatusSubjects matches every status event: spotflow.status.<source>,
	// where source is an agency code or a pipeline role.
	StatusSubjects = statusPrefix + ">"
	// WorkSubjects matches every work item: spotflow.work.<agency>.
	WorkSubjects = workPrefix + "*"

	// RouterConsumer is the durable consumer the router shares across its
	// processes.
	RouterConsumer = "router"
	// ProjectorConsumer is the durable consumer the projector shares across
	// its processes.
	ProjectorConsumer = "projector"

	// AdvisoryStream keeps JetStream's advisories that a work item's
	// deliveries ran out, which the server publishes but does not store.
	AdvisoryStream = "SPOTFLOW_ADVISORIES"
	// MaxDeliveriesAdvisories matches those advisories for the work stream.
	MaxDeliveriesAdvisories = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + WorkStream + ".*"
	// UndeliveredConsumer is the durable consumer that turns those
	// advisories into dead letters.
	UndeliveredConsumer = "undelivered"
)

// The subjects' prefixes, spelled here only.
const (
	requestPrefix = "spotflow.requests."
	statusPrefix  = "spotflow.status."
	workPrefix    = "spotflow.work."
)

// RequestSubject is where the given desk's requests are published.
func RequestSubject(municipality, desk string) string {
	return requestPrefix + municipality + "." + desk
}

// WorkSubject is the subject of an agency's work queue.
func WorkSubject(agency string) string { return workPrefix + agency }

// StatusSubject is where a source (an agency or a pipeline role) publishes
// status events.
func StatusSubject(source string) string { return statusPrefix + source }

// IsWorkSubject reports whether subject is an agency's work queue.
func IsWorkSubject(subject string) bool { return strings.HasPrefix(subject, workPrefix) }

// StatusSource is the source that published on a status subject, and
// whether subject is one.
func StatusSource(subject string) (source string, ok bool) {
	return strings.CutPrefix(subject, statusPrefix)
}

// AgencyConsumer names the durable consumer of an agency's work queue.
func AgencyConsumer(agency string) string { return "agency-" + agency }

// IsRequestSubject reports whether subject carries a submitted request.
func IsRequestSubject(subject string) bool {
	return strings.HasPrefix(subject, requestPrefix)
}

// ValidToken reports whether s can stand as one token of a subject and as a
// code in the catalogue: lowercase letters, digits, '-' and '_', starting
// with a letter or digit, at most 64 characters.
func ValidToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}
