package events

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"time"
)

// Schema identifiers carried in every message's "schema" field. A consumer
// refuses a schema it does not know rather than guess at its meaning. The
// JSON Schemas live under schemas/messages.
const (
	SchemaRequest  = "spotflow.request.v1"
	SchemaWorkItem = "spotflow.work_item.v1"
	SchemaStatus   = "spotflow.status.v1"
)

// Citizen is the person served. Its fields are personal data: they travel to
// the responsible agencies and nowhere else, and never appear in logs (the
// type redacts itself when formatted or logged).
type Citizen struct {
	NationalID string `json:"national_id"`
	Name       string `json:"name"`
}

// LogValue keeps the citizen out of structured logs.
func (Citizen) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String keeps the citizen out of formatted output.
func (Citizen) String() string { return "[redacted]" }

// GoString keeps the citizen out of %#v output.
func (Citizen) GoString() string { return "[redacted]" }

// Request is a desk's validated submission as published on the events
// stream (subject RequestSubject). It is immutable once published.
type Request struct {
	Schema       string `json:"schema"`
	ID           string `json:"id"`
	DeskID       string `json:"desk_id"`
	Municipality string `json:"municipality"`
	Mediator     string `json:"mediator,omitempty"`
	ServiceCode  string `json:"service_code"`
	VisitID      string `json:"visit_id,omitempty"`
	// Consent is the citizen's consent, when the desk recorded it.
	Consent     *ConsentGiven              `json:"consent,omitempty"`
	Citizen     Citizen                    `json:"citizen"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	SubmittedAt time.Time                  `json:"submitted_at"`
	// Round counts operator replays of the request; 0 for the original.
	Round int `json:"round,omitempty"`
	// Practice marks a request made in training mode (see Practice).
	Practice *Practice `json:"practice,omitempty"`
}

// WorkItem is a request's share for one agency, as queued on the agency's
// work subject. ID is stable for the life of the work item and is the
// idempotency key every delivery to the agency carries: an agency that sees
// an ID twice must apply it once.
type WorkItem struct {
	Schema       string                     `json:"schema"`
	ID           string                     `json:"id"`
	RequestID    string                     `json:"request_id"`
	Agency       string                     `json:"agency"`
	ServiceCode  string                     `json:"service_code"`
	DeskID       string                     `json:"desk_id"`
	Municipality string                     `json:"municipality"`
	VisitID      string                     `json:"visit_id,omitempty"`
	Citizen      Citizen                    `json:"citizen"`
	Attributes   map[string]json.RawMessage `json:"attributes"`
	SubmittedAt  time.Time                  `json:"submitted_at"`
	// Round counts operator replays of the work item (or of its request);
	// 0 for the original. A replay keeps the ID, so the agency still
	// recognises a work item it has already applied.
	Round int `json:"round,omitempty"`
	// Practice marks a work item of a request made in training mode: it
	// travels on the practice queue only, never on an agency's.
	Practice *Practice `json:"practice,omitempty"`
}

// WorkItemID names the work item of a request for an agency.
func WorkItemID(requestID, agency string) string { return requestID + "." + agency }

// StatusEvent records one status change of a request (Agency empty) or of
// one of its work items. ID identifies the event for deduplication: the same
// ID published or delivered twice is applied once.
type StatusEvent struct {
	Schema    string    `json:"schema"`
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	Agency    string    `json:"agency,omitempty"`
	Status    Status    `json:"status"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor,omitempty"`
	Note      string    `json:"note,omitempty"`
	// Agencies lists the agencies a routed event fanned the request out to;
	// it is set on routed events only.
	Agencies []string `json:"agencies,omitempty"`
	// Round is the replay round the event belongs to. An event of a newer
	// round than the projection holds supersedes the status of the older
	// one: that is how a replayed work item leaves "failed".
	Round int `json:"round,omitempty"`
	// DispatchedAt, on an event of a work item, is when the work item was
	// delivered to its agency, for an answer that came so soon that the
	// dispatched event travels in the answer's message rather than in one
	// of its own. The projection records both events (see Split).
	DispatchedAt time.Time `json:"dispatched_at,omitzero"`
	// Practice marks an event of a work item made in training mode; the
	// practice agency publishes its answers (SourceOf).
	Practice bool `json:"practice,omitempty"`
}

// Split returns the events a status message stands for: the work item's
// dispatched event first when DispatchedAt is set (with the ID, actor and
// round it has when published on its own), then ev without it.
func (ev StatusEvent) Split() []StatusEvent {
	if ev.DispatchedAt.IsZero() || ev.Agency == "" {
		ev.DispatchedAt = time.Time{}
		return []StatusEvent{ev}
	}
	dispatched := StatusEvent{
		Schema:    ev.Schema,
		ID:        RoundEventID(ev.RequestID, ev.Agency, StatusDispatched, ev.Round),
		RequestID: ev.RequestID,
		Agency:    ev.Agency,
		Status:    StatusDispatched,
		At:        ev.DispatchedAt,
		Actor:     ActorDispatcher,
		Round:     ev.Round,
		Practice:  ev.Practice,
	}
	ev.DispatchedAt = time.Time{}
	return []StatusEvent{dispatched, ev}
}

// ActorDispatcher is the actor of the events spotflow's dispatcher records:
// a work item dispatched, or failed because it could not be delivered.
const ActorDispatcher = "dispatcher"

// EventID is the deterministic ID of the event that moves a request, or one
// of its work items when agency is not empty, to status. Publishing the same
// step twice therefore yields the same ID, which JetStream and the projection
// both deduplicate.
func EventID(requestID, agency string, status Status) string {
	return RoundEventID(requestID, agency, status, 0)
}

// RoundEventID is EventID for a replay round: round 0 is the original and
// adds nothing, later rounds add ".r<round>".
func RoundEventID(requestID, agency string, status Status, round int) string {
	id := requestID
	if agency != "" {
		id += "." + agency
	}
	id += "." + string(status)
	if round > 0 {
		id += ".r" + strconv.Itoa(round)
	}
	return id
}

// SubmittedEvent is the status event a submitted request stands for.
func (r *Request) SubmittedEvent() StatusEvent {
	return StatusEvent{
		Schema:    SchemaStatus,
		ID:        EventID(r.ID, "", StatusSubmitted),
		RequestID: r.ID,
		Status:    StatusSubmitted,
		At:        r.SubmittedAt,
		Actor:     "desk:" + r.DeskID,
	}
}

// WorkItemFor builds the work item of r for agency.
func (r *Request) WorkItemFor(agency string) WorkItem {
	return WorkItem{
		Schema:       SchemaWorkItem,
		ID:           WorkItemID(r.ID, agency),
		RequestID:    r.ID,
		Agency:       agency,
		ServiceCode:  r.ServiceCode,
		DeskID:       r.DeskID,
		Municipality: r.Municipality,
		VisitID:      r.VisitID,
		Citizen:      r.Citizen,
		Attributes:   r.Attributes,
		SubmittedAt:  r.SubmittedAt,
		Round:        r.Round,
		Practice:     r.Practice,
	}
}

// Queue is the subject item travels on: its agency's work queue, or the
// practice queue for a work item made in training mode.
func (item *WorkItem) Queue() string {
	if item.Practice != nil {
		return WorkSubject(SourcePractice)
	}
	return WorkSubject(item.Agency)
}

// Change is one thing a projection applies: a submitted request or a status
// event. Exactly one of the two is set.
type Change struct {
	Request *Request
	Event   *StatusEvent
}

// RequestID is the ID of the request the change concerns.
func (c Change) RequestID() string {
	if c.Request != nil {
		return c.Request.ID
	}
	if c.Event != nil {
		return c.Event.RequestID
	}
	return ""
}

// LogValue keeps a request's personal data out of structured logs.
func (r Request) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("desk", r.DeskID), slog.String("service", r.ServiceCode))
}

// LogValue keeps a work item's personal data out of structured logs.
func (w WorkItem) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", w.ID), slog.String("agency", w.Agency), slog.String("service", w.ServiceCode))
}

// MsgID is the Nats-Msg-Id of a message of the given round: the message's
// own ID for the original, with ".r<round>" added for replays, so that a
// replay is stored even within JetStream's deduplication window.
func MsgID(id string, round int) string {
	if round == 0 {
		return id
	}
	return id + ".r" + strconv.Itoa(round)
}

// CheckText refuses a work item whose identifying fields (its IDs, agency,
// service, desk, municipality and visit) are not clean single-line text
// (TextFault): spotflow makes them so, and a consumer could not store,
// look up or dead-letter a work item by them otherwise. It returns a
// *FieldError naming the field, or nil.
func (w *WorkItem) CheckText() error {
	return firstTextFault(
		"id", w.ID, "request_id", w.RequestID, "agency", w.Agency, "service_code", w.ServiceCode,
		"desk_id", w.DeskID, "municipality", w.Municipality, "visit_id", w.VisitID)
}

// CheckText refuses a status event whose IDs, agency, actor or routed
// agencies are not clean single-line text (TextFault), which the
// projection could not store or look up. Its note is CheckFrom's concern.
// It returns a *FieldError naming the field, or nil.
func (ev *StatusEvent) CheckText() error {
	if err := firstTextFault("id", ev.ID, "request_id", ev.RequestID, "agency", ev.Agency, "actor", ev.Actor); err != nil {
		return err
	}
	for _, a := range ev.Agencies {
		if err := firstTextFault("agencies", a); err != nil {
			return err
		}
	}
	return nil
}

// firstTextFault checks pairs of field names and values, and returns the
// error of the first value TextFault refuses as a single line.
func firstTextFault(fieldsAndValues ...string) error {
	for i := 0; i+1 < len(fieldsAndValues); i += 2 {
		if fault := TextFault(fieldsAndValues[i+1], false); fault != "" {
			return textError(fieldsAndValues[i], fault)
		}
	}
	return nil
}
