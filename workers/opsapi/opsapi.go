// Package opsapi serves the operator API under /v1/ops/: list, inspect and
// replay dead letters, and erase a citizen, for scripts holding a named
// machine credential (spotflow operator token issue) or the configured
// operator token. It calls the pipeline through the small interfaces
// declared here (Store, Replayer, Tokens), so it imports events and jsonapi
// only.
package opsapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
)

// Store reads dead letters.
type Store interface {
	// ViewDeadLetter reads a dead letter and records, in the audit log,
	// who viewed it and why.
	ViewDeadLetter(ctx context.Context, id int64, by events.By) (events.DeadLetter, error)
	ListDeadLetters(ctx context.Context, q events.DeadLetterQuery) ([]events.DeadLetter, error)
	// EraseCitizen erases the personal data kept of the citizen with a
	// national ID, and records in the audit log who did and why.
	EraseCitizen(ctx context.Context, nationalID string, by events.By) (events.Erasure, error)
}

// Replayer puts a dead letter back in its queue on behalf of an operator
// (workers.Replayer).
type Replayer interface {
	Replay(ctx context.Context, id int64, by events.By) error
}

// Tokens finds the named machine credential in force whose token a caller
// presents, or events.ErrUnauthenticated (*postgres.Store).
type Tokens interface {
	OperatorByToken(ctx context.Context, token string) (events.OperatorToken, error)
}

// Config configures the operator API.
type Config struct {
	// Store of dead letters. Required.
	Store Store
	// Replayer puts dead letters back. Required.
	Replayer Replayer
	// Tokens recognises machine credentials, the configured operator
	// token among them (postgres.Store.RegisterOperatorToken). Required.
	Tokens Tokens
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the operator API under /v1/ops/: list, inspect and replay dead
// letters, and erase a citizen. Every view, replay and erasure is in the
// audit log under the credential's name ("token:NAME"); a viewer's
// credential may only list. Dead letters are listed without their
// payloads, which hold personal data.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New validates cfg and returns the operator API.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Replayer == nil || cfg.Tokens == nil {
		return nil, errors.New("new operator API: Store, Replayer and Tokens are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	o := &API{cfg: cfg, mux: http.NewServeMux()}
	o.mux.HandleFunc("GET /v1/ops/dead-letters", o.list)
	o.mux.HandleFunc("GET /v1/ops/dead-letters/{id}", changing(o.show))
	o.mux.HandleFunc("POST /v1/ops/dead-letters/{id}/replay", changing(o.replayOne))
	o.mux.HandleFunc("POST /v1/ops/dead-letters/replay", changing(o.replayAll))
	o.mux.HandleFunc("POST /v1/ops/citizens/erase", changing(o.eraseCitizen))
	return o, nil
}

// callerKey keys the caller's credential in a request's context.
type callerKey struct{}

// ServeHTTP serves /v1/ops/ to holders of an operator's machine credential.
func (o *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := o.caller(r)
	switch {
	case errors.Is(err, events.ErrUnauthenticated):
		jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "an operator token is required", Field: "Authorization"})
	case err != nil:
		o.unavailable(w, err)
	default:
		o.cfg.Logger.Info("operator API", "credential", t.Actor(), "role", t.Role, "method", r.Method, "path", r.URL.Path)
		o.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
	}
}

// caller is the machine credential r presents as a Bearer token.
func (o *API) caller(r *http.Request) (events.OperatorToken, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return events.OperatorToken{}, events.ErrUnauthenticated
	}
	return o.cfg.Tokens.OperatorByToken(r.Context(), token)
}

// changing refuses, 403, a credential of the viewer role: it may list only.
func changing(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t, _ := r.Context().Value(callerKey{}).(events.OperatorToken); !t.Role.MayChange() {
			jsonapi.WriteError(w, http.StatusForbidden, jsonapi.Error{Code: "forbidden", Message: "this credential is a viewer's: it may list dead letters only", Field: "Authorization"})
			return
		}
		h(w, r)
	}
}

// operator is the credential r was served for, as the audit log names it.
func operator(r *http.Request) string {
	t, _ := r.Context().Value(callerKey{}).(events.OperatorToken)
	return t.Actor()
}

func (o *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	dead, err := o.cfg.Store.ListDeadLetters(r.Context(), events.DeadLetterQuery{Agency: q.Get("agency"), Municipality: q.Get("municipality"),
		Pending: q.Get("pending") == "true", Limit: limit})
	if err != nil {
		o.unavailable(w, err)
		return
	}
	jsonapi.Write(w, http.StatusOK, map[string]any{"dead_letters": nonNilDead(dead)})
}

func (o *API) show(w http.ResponseWriter, r *http.Request) {
	id, ok := deadLetterID(w, r)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.Header.Get("X-Reason"))
	if reason == "" {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeRequired, Message: "say why you view this dead letter, in X-Reason: it is recorded in the audit log", Field: "X-Reason"})
		return
	}
	d, err := o.cfg.Store.ViewDeadLetter(r.Context(), id, events.By{Actor: operator(r), Reason: reason})
	switch {
	case errors.Is(err, events.ErrNotFound):
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no dead letter has that id", Field: "id"})
	case errors.Is(err, events.ErrPersonalDataDeleted):
		jsonapi.Write(w, http.StatusOK, d) // its record, without the message it no longer has
	case err != nil:
		o.unavailable(w, err)
	default:
		jsonapi.Write(w, http.StatusOK, d)
	}
}

func (o *API) replayOne(w http.ResponseWriter, r *http.Request) {
	id, ok := deadLetterID(w, r)
	if !ok {
		return
	}
	err := o.cfg.Replayer.Replay(r.Context(), id, events.By{Actor: operator(r), Reason: strings.TrimSpace(r.Header.Get("X-Reason"))})
	switch {
	case errors.Is(err, events.ErrNotFound):
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no dead letter has that id", Field: "id"})
	case errors.Is(err, events.ErrPersonalDataDeleted):
		jsonapi.WriteError(w, http.StatusGone, messageDeleted)
	case err != nil:
		o.unavailable(w, err)
	default:
		jsonapi.Write(w, http.StatusAccepted, map[string]any{"replayed": []int64{id}})
	}
}

// replayAll replays every dead letter not replayed yet, of one agency when
// ?agency= is given, of one municipality's requests when ?municipality= is.
func (o *API) replayAll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dead, err := o.cfg.Store.ListDeadLetters(r.Context(), events.DeadLetterQuery{Agency: q.Get("agency"), Municipality: q.Get("municipality"),
		Pending: true, Limit: 10000})
	if err != nil {
		o.unavailable(w, err)
		return
	}
	replayed, deleted := []int64{}, []int64{}
	for _, d := range dead {
		err := o.cfg.Replayer.Replay(r.Context(), d.ID, events.By{Actor: operator(r), Reason: strings.TrimSpace(r.Header.Get("X-Reason"))})
		if errors.Is(err, events.ErrPersonalDataDeleted) {
			deleted = append(deleted, d.ID)
			continue
		}
		if err != nil {
			o.cfg.Logger.Error("ops: replay", "dead_letter", d.ID, "err", err)
			jsonapi.Write(w, http.StatusServiceUnavailable, map[string]any{
				"replayed":        replayed,
				"message_deleted": deleted,
				"error":           jsonapi.Error{Code: "unavailable", Message: "replay stopped at dead letter " + strconv.FormatInt(d.ID, 10) + "; run it again"},
			})
			return
		}
		replayed = append(replayed, d.ID)
	}
	jsonapi.Write(w, http.StatusAccepted, map[string]any{"replayed": replayed, "message_deleted": deleted})
}

// messageDeleted answers a replay of a dead letter whose message was
// deleted.
var messageDeleted = jsonapi.Error{
	Code:    "message_deleted",
	Message: "this dead letter's message was deleted (its citizen was erased, or its request ended): it cannot be replayed",
	Field:   "id",
}

// eraseCitizen erases the citizen whose national ID the body gives,
// {"national_id": "..."}, on behalf of the operator, who must say why in
// X-Reason, and answers what was erased (events.Erasure). The national ID
// is never logged nor answered.
func (o *API) eraseCitizen(w http.ResponseWriter, r *http.Request) {
	reason := strings.TrimSpace(r.Header.Get("X-Reason"))
	if reason == "" {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeRequired, Message: "say why you erase this citizen, in X-Reason: it is recorded in the audit log", Field: "X-Reason"})
		return
	}
	var body struct {
		NationalID string `json:"national_id"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeMalformedJSON, Message: `the body must be {"national_id": "..."}`, Field: "body"})
		return
	}
	e, err := o.cfg.Store.EraseCitizen(r.Context(), body.NationalID, events.By{Actor: operator(r), Reason: reason})
	var fe *events.FieldError
	switch {
	case errors.As(err, &fe):
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: fe.Code, Message: fe.Message, Field: fe.Field})
	case errors.Is(err, events.ErrUnavailable) || r.Context().Err() != nil:
		o.unavailable(w, err)
	case err != nil:
		// Such as a citizen key that is not the pipeline's: retrying
		// will not help. The error never holds the national ID.
		o.cfg.Logger.Error("ops: erase citizen", "err", err)
		jsonapi.WriteError(w, http.StatusInternalServerError, jsonapi.Error{Code: "erasure_failed", Message: err.Error()})
	default:
		jsonapi.Write(w, http.StatusOK, e)
	}
}

func deadLetterID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeInvalidValue, Message: "a dead letter id is a number", Field: "id"})
		return 0, false
	}
	return id, true
}

func (o *API) unavailable(w http.ResponseWriter, err error) {
	o.cfg.Logger.Error("ops", "err", err)
	jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable", Message: "cannot reach the database or NATS right now; retry later"})
}

func nonNilDead(d []events.DeadLetter) []events.DeadLetter {
	if d == nil {
		return []events.DeadLetter{}
	}
	return d
}
