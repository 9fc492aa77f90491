// Package agencyapi serves agencies' status reports over HTTPS, for the
// agencies that do not report on NATS: an agency that answered a delivery
// "accepted" today reports "completed" next week here.
//
//	POST /v1/agency/work-items/{work_item_id}/status
//	Authorization: Bearer <the agency's token, from `spotflow agency issue --http`>
//	Content-Type: application/json
//
//	{"id": "<event id>", "status": "in_progress", "note": "for the desk", "at": "2026-12-06T10:00:00Z", "round": 0}
//
// id identifies the event: the same id again is applied once and answered
// as the first time. It must begin with the work item's ID and a dot; a
// completed or rejected event's id is the work item's ID, a dot and the
// status (and ".r<round>" after a replay). status is accepted, in_progress,
// completed or rejected; note (optional, no personal data) is for the desk;
// at (optional) defaults to the time of the report; round (optional,
// default 0) echoes the work item's. The report is checked by exactly the
// rules a status event published on NATS is (events.CheckFrom, and the
// projection's round and terminal rules), published on the agency's status
// subject and answered 202 with the event. An agency can report only on its
// own work items: any other is 404, as is one that does not exist.
//
// Errors are JSON with a stable code, a message and the field at fault
// (package jsonapi). The package calls the pipeline through the small
// interfaces declared here, so it imports events and jsonapi only.
package agencyapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// Store authenticates agencies and reads where their work items stand.
type Store interface {
	// AgencyByToken is the agency whose token in force token is, or
	// events.ErrUnauthenticated.
	AgencyByToken(ctx context.Context, token string) (string, error)
	// Accepted reports whether intake accepted the request.
	Accepted(ctx context.Context, requestID string) (bool, error)
	// WorkItemState is where the projection holds the work item:
	// events.ErrNotFound when the request has no such work item,
	// events.ErrUnknownRequest when the projection holds none of the
	// request's work items yet.
	WorkItemState(ctx context.Context, requestID, agency string) (events.WorkItemState, error)
}

// Publisher stores a status event on the bus, with its ID as the message's
// deduplication ID, and returns once it is stored.
type Publisher interface {
	PublishStatus(ctx context.Context, ev events.StatusEvent) error
}

// Config configures the agency API.
type Config struct {
	// Store authenticates agencies and reads work items. Required.
	Store Store
	// FailedAuth refuses an address that presented unknown tokens too often,
	// before its token is looked up. Optional: without it none is.
	FailedAuth *ratelimit.Buckets
	// Publisher stores the reports. Required.
	Publisher Publisher
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the agency API. It is safe for concurrent use.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// maxReport bounds a report's body: a note is at most events.MaxNote bytes.
const maxReport = 16 << 10

// reportFields are the fields a report may carry.
var reportFields = []string{"id", "status", "note", "at", "round"}

// New validates cfg and returns the agency API.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Publisher == nil {
		return nil, errors.New("new agency API: Store and Publisher are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /v1/agency/work-items/{id}/status", a.withAgency(a.report))
	a.mux.HandleFunc("/v1/agency/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no such endpoint"})
	})
	return a, nil
}

// ServeHTTP serves the agency API under /v1/agency/.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// withAgency authenticates the agency from its bearer token. An address
// that presented unknown tokens too often is refused before its token is
// looked up.
func (a *API) withAgency(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		address := ratelimit.Host(r.RemoteAddr)
		if empty, wait := a.cfg.FailedAuth.Empty(address, a.cfg.Now()); empty {
			th := events.Throttled{Limit: events.LimitFailedAuth, RetryAfter: wait}
			jsonapi.WriteTooMany(w, th.RetryAfterSeconds(), jsonapi.Error{Code: "too_many_requests", Message: "too many failed authentications from this address: " + th.Error(), Field: "Authorization"})
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow"`)
			jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "an agency token is required: Authorization: Bearer <token>", Field: "Authorization"})
			return
		}
		agency, err := a.cfg.Store.AgencyByToken(r.Context(), token)
		if errors.Is(err, events.ErrUnauthenticated) {
			a.cfg.FailedAuth.Take(address, a.cfg.Now())
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow", error="invalid_token"`)
			jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "unknown or revoked agency token", Field: "Authorization"})
			return
		}
		if err != nil {
			a.cfg.Logger.Error("agency API: authenticate agency", "err", err)
			unavailable(w)
			return
		}
		h(w, r, agency)
	}
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable", Message: "cannot take the report right now; retry it, with the same id, later"})
}

// report is the body of a status report.
type report struct {
	ID     string        `json:"id"`
	Status events.Status `json:"status"`
	Note   string        `json:"note"`
	At     *time.Time    `json:"at"`
	Round  int           `json:"round"`
}

// accepted is the answer to a report taken.
type accepted struct {
	Event events.StatusEvent `json:"event"`
}

func (a *API) report(w http.ResponseWriter, r *http.Request, agency string) {
	ctx := r.Context()
	requestID, ok := strings.CutSuffix(r.PathValue("id"), "."+agency)
	if !ok || requestID == "" {
		notFound(w)
		return
	}
	rep, status, e := decodeReport(w, r)
	if e != nil {
		jsonapi.WriteError(w, status, *e)
		return
	}
	now := a.cfg.Now().UTC()
	ev := events.StatusEvent{
		Schema: events.SchemaStatus, ID: rep.ID, RequestID: requestID, Agency: agency,
		Status: rep.Status, At: now, Actor: "agency:" + agency, Note: rep.Note, Round: rep.Round,
	}
	if rep.At != nil {
		ev.At = rep.At.UTC()
	}
	if e := checkReport(&ev, now); e != nil {
		jsonapi.WriteError(w, http.StatusUnprocessableEntity, *e)
		return
	}

	st, err := a.cfg.Store.WorkItemState(ctx, requestID, agency)
	switch {
	case err == nil:
		if e := checkAgainst(&ev, st); e != nil {
			jsonapi.WriteError(w, http.StatusConflict, *e)
			return
		}
	case errors.Is(err, events.ErrUnknownRequest):
		// The projection may not hold the work items yet: a request intake
		// accepted is left to the projector, which judges the round and
		// terminal rules alone, as it does on NATS.
		known, err := a.cfg.Store.Accepted(ctx, requestID)
		if err != nil {
			a.cfg.Logger.Error("agency API: look up request", "err", err)
			unavailable(w)
			return
		}
		if !known {
			notFound(w)
			return
		}
	case errors.Is(err, events.ErrNotFound):
		notFound(w)
		return
	default:
		a.cfg.Logger.Error("agency API: look up work item", "err", err)
		unavailable(w)
		return
	}

	if err := a.cfg.Publisher.PublishStatus(ctx, ev); err != nil {
		a.cfg.Logger.Error("agency API: publish status", "agency", agency, "status", ev.Status, "err", err)
		unavailable(w)
		return
	}
	jsonapi.Write(w, http.StatusAccepted, accepted{Event: ev})
}

func notFound(w http.ResponseWriter) {
	jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no work item of this agency has this ID"})
}

// decodeReport reads the body strictly: JSON only, within maxReport, no
// unknown fields, every field of the right type, id and status present.
func decodeReport(w http.ResponseWriter, r *http.Request) (*report, int, *jsonapi.Error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, &jsonapi.Error{Code: "unsupported_media_type", Message: "the body must be application/json", Field: "Content-Type"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReport))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, http.StatusRequestEntityTooLarge, &jsonapi.Error{Code: "body_too_large", Message: fmt.Sprintf("the body is larger than %d bytes", maxReport), Field: "body"}
	}
	if err != nil {
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "cannot read the body", Field: "body"}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "the body must be a JSON object", Field: "body"}
	}
	for k := range top {
		if !slices.Contains(reportFields, k) {
			return nil, http.StatusBadRequest, &jsonapi.Error{Code: events.CodeUnknownField, Message: fmt.Sprintf("unknown field %q", k), Field: k}
		}
	}
	var rep report
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, http.StatusUnprocessableEntity, &jsonapi.Error{Code: events.CodeInvalidType, Message: fmt.Sprintf("%s is not of the right JSON type", typeErr.Field), Field: typeErr.Field}
		}
		var timeErr *time.ParseError
		if errors.As(err, &timeErr) {
			return nil, http.StatusUnprocessableEntity, &jsonapi.Error{Code: events.CodeInvalidValue, Message: "at must be a time in RFC 3339", Field: "at"}
		}
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "the body is not valid JSON", Field: "body"}
	}
	switch {
	case rep.ID == "":
		return nil, http.StatusUnprocessableEntity, &jsonapi.Error{Code: events.CodeRequired, Message: "id is required: it identifies the event, and the same id is applied once", Field: "id"}
	case rep.Status == "":
		return nil, http.StatusUnprocessableEntity, &jsonapi.Error{Code: events.CodeRequired, Message: "status is required", Field: "status"}
	}
	return &rep, 0, nil
}

// checkReport applies the rules every status event keeps, as the projector
// does, naming the field at fault.
func checkReport(ev *events.StatusEvent, now time.Time) *jsonapi.Error {
	switch ev.Status {
	case events.StatusAccepted, events.StatusInProgress, events.StatusCompleted, events.StatusRejected:
	default:
		return &jsonapi.Error{Code: events.CodeInvalidValue, Field: "status",
			Message: fmt.Sprintf("status %.40q: an agency reports accepted, in_progress, completed or rejected", ev.Status)}
	}
	if ev.Round < 0 {
		return &jsonapi.Error{Code: events.CodeInvalidValue, Field: "round", Message: "round cannot be negative"}
	}
	err := ev.CheckFrom(ev.Agency, now)
	if err == nil {
		return nil
	}
	field := map[string]string{events.RuleID: "id", events.RuleTime: "at", events.RuleNote: "note"}[events.RefusedRule(err)]
	return &jsonapi.Error{Code: "refused_" + events.RefusedRule(err), Field: cmp.Or(field, "status"), Message: err.Error()}
}

// checkAgainst applies the rules only the projection can judge, against
// where it holds the work item: the round must be one a replay opened, and
// a work item that ended in a round cannot end otherwise in it.
func checkAgainst(ev *events.StatusEvent, st events.WorkItemState) *jsonapi.Error {
	switch {
	case ev.Round > st.Round:
		return &jsonapi.Error{Code: "refused_" + events.RuleRound, Field: "round",
			Message: fmt.Sprintf("round %d was not opened by a replay; the work item is in round %d", ev.Round, st.Round)}
	case ev.Round == st.Round && ev.Status.Terminal() && st.Status.Terminal() && st.Status != ev.Status:
		return &jsonapi.Error{Code: "refused_" + events.RuleTerminal, Field: "status",
			Message: fmt.Sprintf("the work item already ended %s in round %d", st.Status, st.Round)}
	}
	return nil
}
