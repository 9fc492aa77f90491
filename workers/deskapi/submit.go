package deskapi

import (
	"bytes"
	"encoding/json"
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
	switch {
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
	jsonapi.Write(w, http.StatusAccepted, submitted{ID: id, Status: events.StatusSubmitted, StatusURL: "/v1/requests/" + id})
}

// Fields a submission may carry, by the object they belong to.
var (
	submissionFields = []string{"service_code", "citizen", "attributes", "visit_id", "mediator"}
	citizenFields    = []string{"national_id", "name"}
)

// decodeSubmission reads the body strictly: JSON only, within MaxBody, no
// unknown fields, every field of the right JSON type.
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
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "cannot read the body", Field: "body"}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "the body must be a JSON object", Field: "body"}
	}
	if f := unknownField(top, submissionFields, ""); f != "" {
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: events.CodeUnknownField, Message: fmt.Sprintf("unknown field %q", f), Field: f}
	}
	if raw, ok := top["citizen"]; ok {
		var citizen map[string]json.RawMessage
		if json.Unmarshal(raw, &citizen) == nil {
			if f := unknownField(citizen, citizenFields, "citizen."); f != "" {
				return nil, http.StatusBadRequest, &jsonapi.Error{Code: events.CodeUnknownField, Message: fmt.Sprintf("unknown field %q", f), Field: f}
			}
		}
	}
	var sub events.Submission
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sub); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, http.StatusUnprocessableEntity, &jsonapi.Error{Code: events.CodeInvalidType, Message: fmt.Sprintf("%s must be of JSON type %s", typeErr.Field, jsonType(typeErr)), Field: typeErr.Field}
		}
		return nil, http.StatusBadRequest, &jsonapi.Error{Code: "malformed_json", Message: "the body is not valid JSON", Field: "body"}
	}
	return &sub, 0, nil
}

func unknownField(obj map[string]json.RawMessage, known []string, prefix string) string {
	for k := range obj {
		found := false
		for _, f := range known {
			found = found || f == k
		}
		if !found {
			return prefix + k
		}
	}
	return ""
}

func jsonType(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "string":
		return "string"
	case "map", "struct", "ptr":
		return "object"
	case "slice":
		return "array"
	}
	return e.Type.String()
}
