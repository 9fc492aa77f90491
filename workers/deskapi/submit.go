package deskapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
)

// submitted is the answer to an accepted submission.
type submitted struct {
	ID        string        `json:"id"`
	Status    events.Status `json:"status"`
	StatusURL string        `json:"status_url"`
	// StoredAt is "desk" for a request an edge holds until it can forward
	// it to the hub.
	StoredAt string `json:"stored_at,omitempty"`
}

func (a *API) submit(w http.ResponseWriter, r *http.Request, desk events.Desk) {
	key := r.Header.Get("Idempotency-Key")
	if fe := events.CheckIdempotencyKey(key); fe != nil {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: fe.Code, Message: fe.Message, Field: fe.Field})
		return
	}
	sub, status, apiErr := a.decodeSubmission(w, r)
	if apiErr != nil {
		jsonapi.WriteError(w, status, *apiErr)
		return
	}
	id, _, err := a.cfg.Intake.Accept(r.Context(), desk, key, sub)
	var fe *events.FieldError
	var th *events.Throttled
	switch {
	case errors.As(err, &th):
		jsonapi.WriteTooMany(w, th.RetryAfterSeconds(), jsonapi.Error{Code: "too_many_requests", Message: "this desk is " + th.Error()})
		return
	case errors.As(err, &fe):
		jsonapi.WriteError(w, http.StatusUnprocessableEntity, jsonapi.Error{Code: fe.Code, Message: fe.Message, Field: fe.Field})
		return
	case errors.Is(err, events.ErrIdempotencyConflict):
		jsonapi.WriteError(w, http.StatusConflict, jsonapi.Error{Code: "idempotency_conflict", Message: "this Idempotency-Key was used for a different request", Field: "Idempotency-Key"})
		return
	case errors.Is(err, events.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable", Message: "the request could not be stored; retry with the same Idempotency-Key"})
		return
	case err != nil:
		jsonapi.WriteError(w, http.StatusInternalServerError, jsonapi.Error{Code: "internal", Message: "cannot encode the request"})
		return
	}
	w.Header().Set("Location", "/v1/requests/"+id)
	jsonapi.Write(w, http.StatusAccepted, submitted{ID: id, Status: events.StatusSubmitted, StatusURL: "/v1/requests/" + id, StoredAt: a.cfg.StoredAt})
}

// decodeSubmission reads the body strictly: JSON only, within MaxBody, and
// as events.DecodeSubmission reads a submission. What is wrong with the
// JSON itself is 400; a text or number that is not acceptable is 422, as
// anything else that does not fit the service is.
func (a *API) decodeSubmission(w http.ResponseWriter, r *http.Request) (*events.Submission, int, *jsonapi.Error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, &jsonapi.Error{Code: "unsupported_media_type", Message: "the body must be application/json", Field: "Content-Type"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, http.StatusRequestEntityTooLarge, &jsonapi.Error{Code: "body_too_large", Message: fmt.Sprintf("the body is larger than %d bytes", a.cfg.MaxBody), Field: "body"}
	}
	if err != nil {
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: events.CodeMalformedJSON, Message: "cannot read the body", Field: "body"}
	}
	sub, fe := events.DecodeSubmission(body)
	if fe != nil {
		status := http.StatusBadRequest
		if fe.Code == events.CodeInvalidType || fe.Code == events.CodeInvalidValue {
			status = http.StatusUnprocessableEntity
		}
		return nil, status, &jsonapi.Error{Code: fe.Code, Message: fe.Message, Field: fe.Field}
	}
	return sub, 0, nil
}
