// Package opsapi serves the operator API under /v1/ops/: list, inspect and
// replay dead letters. It calls the pipeline through the small interfaces
// declared here (Store, Replayer), so it imports events and jsonapi only.
package opsapi

import (
	"cmp"
	"context"
	"crypto/subtle"
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
	DeadLetter(ctx context.Context, id int64) (events.DeadLetter, error)
	ListDeadLetters(ctx context.Context, agency string, pending bool, limit int) ([]events.DeadLetter, error)
}

// Replayer puts a dead letter back in its queue on behalf of an operator
// (workers.Replayer).
type Replayer interface {
	Replay(ctx context.Context, id int64, actor string) error
}

// Config configures the operator API.
type Config struct {
	// Store of dead letters. Required.
	Store Store
	// Replayer puts dead letters back. Required.
	Replayer Replayer
	// Token is the operators' bearer token. Required: without one the
	// operator API is not served.
	Token string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the operator API under /v1/ops/: list, inspect and replay dead
// letters. Operators name themselves in the X-Operator header; every replay
// is in the audit log under that name. Dead letters are shown without their
// payloads, which hold personal data.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New validates cfg and returns the operator API.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Replayer == nil || cfg.Token == "" {
		return nil, errors.New("new operator API: Store, Replayer and Token are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	o := &API{cfg: cfg, mux: http.NewServeMux()}
	o.mux.HandleFunc("GET /v1/ops/dead-letters", o.list)
	o.mux.HandleFunc("GET /v1/ops/dead-letters/{id}", o.show)
	o.mux.HandleFunc("POST /v1/ops/dead-letters/{id}/replay", o.replayOne)
	o.mux.HandleFunc("POST /v1/ops/dead-letters/replay", o.replayAll)
	return o, nil
}

// ServeHTTP serves /v1/ops/ to operators holding the token.
func (o *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(token), []byte(o.cfg.Token)) != 1 {
		jsonapi.WriteError(w, http.StatusUnauthorized, jsonapi.Error{Code: "unauthenticated", Message: "an operator token is required", Field: "Authorization"})
		return
	}
	o.mux.ServeHTTP(w, r)
}

func operator(r *http.Request) string {
	return "operator:" + cmp.Or(strings.TrimSpace(r.Header.Get("X-Operator")), "unnamed")
}

func (o *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	dead, err := o.cfg.Store.ListDeadLetters(r.Context(), q.Get("agency"), q.Get("pending") == "true", limit)
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
	d, err := o.cfg.Store.DeadLetter(r.Context(), id)
	switch {
	case errors.Is(err, events.ErrNotFound):
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no dead letter has that id", Field: "id"})
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
	err := o.cfg.Replayer.Replay(r.Context(), id, operator(r))
	switch {
	case errors.Is(err, events.ErrNotFound):
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no dead letter has that id", Field: "id"})
	case err != nil:
		o.unavailable(w, err)
	default:
		jsonapi.Write(w, http.StatusAccepted, map[string]any{"replayed": []int64{id}})
	}
}

// replayAll replays every dead letter not replayed yet, of one agency when
// ?agency= is given.
func (o *API) replayAll(w http.ResponseWriter, r *http.Request) {
	dead, err := o.cfg.Store.ListDeadLetters(r.Context(), r.URL.Query().Get("agency"), true, 10000)
	if err != nil {
		o.unavailable(w, err)
		return
	}
	replayed := []int64{}
	for _, d := range dead {
		if err := o.cfg.Replayer.Replay(r.Context(), d.ID, operator(r)); err != nil {
			o.cfg.Logger.Error("ops: replay", "dead_letter", d.ID, "err", err)
			jsonapi.Write(w, http.StatusServiceUnavailable, map[string]any{
				"replayed": replayed,
				"error":    jsonapi.Error{Code: "unavailable", Message: "replay stopped at dead letter " + strconv.FormatInt(d.ID, 10) + "; run it again"},
			})
			return
		}
		replayed = append(replayed, d.ID)
	}
	jsonapi.Write(w, http.StatusAccepted, map[string]any{"replayed": replayed})
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
