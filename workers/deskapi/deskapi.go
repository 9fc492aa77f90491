// Package deskapi serves the desk API, version 1, under /v1/: the service
// catalogue, submitting a request with an Idempotency-Key, and reading a
// desk's requests back with their timelines. Errors are JSON with a stable
// code, a message and the offending field (package jsonapi).
//
// It calls the pipeline through small interfaces declared here (Intake,
// Store, Catalogs), so it imports events and jsonapi only, never NATS or
// Postgres.
package deskapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
)

// Intake authenticates desks and accepts their submissions
// (workers.Intake).
type Intake interface {
	Authenticate(ctx context.Context, remoteAddr, token string) (events.Desk, error)
	Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (id string, svc *events.Service, err error)
}

// Store reads a desk's requests back.
type Store interface {
	RequestForDesk(ctx context.Context, deskID, id string) (*events.RequestView, error)
}

// Catalogs gives the service catalogue in force.
type Catalogs interface {
	Current() *events.Catalog
}

// Config configures the desk API.
type Config struct {
	// Intake authenticates desks and accepts submissions. Required.
	Intake Intake
	// Store reads requests back. Required.
	Store Store
	// Catalog is the service catalogue, as it stands at each request.
	// Required.
	Catalog Catalogs
	// MaxBody is the largest request body accepted. Default 64 KiB.
	MaxBody int64
	// Refused, when set, is told the error code of every submission
	// refused.
	Refused func(code string)
	// StoredAt, when set, tells the desk where an accepted request is
	// stored: "desk" at a desk's edge, which forwards it to the hub when
	// it can.
	StoredAt string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the desk API. It is safe for concurrent use.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New validates cfg and returns the desk API.
func New(cfg Config) (*API, error) {
	if cfg.Intake == nil || cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("new desk API: Intake, Store and Catalog are required")
	}
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 64<<10)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /v1/services", a.listServices)
	a.mux.HandleFunc("GET /v1/services/{code}", a.getService)
	a.mux.HandleFunc("POST /v1/requests", jsonapi.CountRefusals(cfg.Refused, a.withDesk(a.submit)))
	a.mux.HandleFunc("GET /v1/requests/{id}", a.withDesk(a.getRequest))
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no such endpoint"})
	})
	return a, nil
}

// ServeHTTP serves the desk API under /v1/.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type deskHandler func(w http.ResponseWriter, r *http.Request, desk events.Desk)

// withDesk authenticates the desk from its bearer token. An address that
// failed too often is refused (by the intake) before its token is looked at.
func (a *API) withDesk(h deskHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			token = ""
		}
		desk, err := a.cfg.Intake.Authenticate(r.Context(), r.RemoteAddr, token)
		var th *events.Throttled
		switch {
		case errors.As(err, &th):
			jsonapi.WriteTooMany(w, th.RetryAfterSeconds(), jsonapi.Error{Code: "too_many_requests", Message: "too many failed authentications from this address: " + th.Error(), Field: "Authorization"})
			return
		case errors.Is(err, events.ErrUnauthenticated) && token == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow"`)
			jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "a desk token is required: Authorization: Bearer <token>", Field: "Authorization"})
			return
		case errors.Is(err, events.ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow", error="invalid_token"`)
			jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "unknown desk token", Field: "Authorization"})
			return
		case err != nil:
			a.cfg.Logger.Error("desk API: authenticate desk", "err", err)
			jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable", Message: "cannot check the desk's credential right now; retry later"})
			return
		}
		h(w, r, desk)
	}
}

func (a *API) getRequest(w http.ResponseWriter, r *http.Request, desk events.Desk) {
	id := r.PathValue("id")
	var v *events.RequestView
	err := events.ErrNotFound
	// No request has an id that is not clean text; the database would
	// refuse to look.
	if events.TextFault(id, false) == "" {
		v, err = a.cfg.Store.RequestForDesk(r.Context(), desk.ID, id)
	}
	switch {
	case errors.Is(err, events.ErrNotFound):
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "this desk has no request with that id", Field: "id"})
	case err != nil:
		a.cfg.Logger.Error("desk API: read request", "err", err)
		jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable", Message: "cannot read requests right now; retry later"})
	default:
		jsonapi.Write(w, http.StatusOK, v)
	}
}
