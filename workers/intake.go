package workers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// IntakeStore is what intake needs of the database.
type IntakeStore interface {
	DeskByToken(ctx context.Context, token string) (events.Desk, error)
	ClaimKey(ctx context.Context, c events.KeyClaim) (id string, published bool, err error)
	MarkPublished(ctx context.Context, requestID string, message []byte) error
	RequestForDesk(ctx context.Context, deskID, id string) (*events.RequestView, error)
	SearchRequests(ctx context.Context, q events.RequestQuery) ([]events.RequestSummary, error)
	HasMunicipality(ctx context.Context, municipality string) (bool, error)
}

// Publisher stores a message in JetStream and returns once it is stored.
type Publisher interface {
	Publish(ctx context.Context, out natsbus.Outgoing) error
}

// IntakeConfig configures Intake.
type IntakeConfig struct {
	// Store for desks, idempotency keys and request views. Required.
	Store IntakeStore
	// Publisher of submitted requests. Required.
	Publisher Publisher
	// Catalog to validate submissions against, as it stands at each
	// request. Required.
	Catalog Catalogs
	// MaxBody is the largest request body accepted. Default 64 KiB.
	MaxBody int64
	// PublishTimeout bounds the wait for JetStream to store a request; past
	// it the desk gets 503 and retries with the same key. Default 5 seconds.
	PublishTimeout time.Duration
	// DeskCacheTTL is how long a desk's credential is trusted without asking
	// the database again. Default 30 seconds.
	DeskCacheTTL time.Duration
	// Metrics counts accepted and refused submissions. Optional.
	Metrics *Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Intake is the desk API, version 1, and Open311 GeoReport v2 (open311.go),
// which takes the same path for submissions. It validates submissions, binds each to
// its idempotency key, and answers 202 only after JetStream has stored the
// request. It is safe for concurrent use and holds no state that other
// intake processes need.
type Intake struct {
	cfg IntakeConfig
	mux *http.ServeMux

	mu    sync.Mutex
	desks map[string]cachedDesk
}

type cachedDesk struct {
	desk    events.Desk
	expires time.Time
}

// NewIntake validates cfg and returns the desk API.
func NewIntake(cfg IntakeConfig) (*Intake, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Catalog == nil {
		return nil, errors.New("new intake: Store, Publisher and Catalog are required")
	}
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 64<<10)
	cfg.DeskCacheTTL = cmp.Or(cfg.DeskCacheTTL, 30*time.Second)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	in := &Intake{cfg: cfg, mux: http.NewServeMux(), desks: make(map[string]cachedDesk)}
	in.mux.HandleFunc("GET /v1/services", in.listServices)
	in.mux.HandleFunc("GET /v1/services/{code}", in.getService)
	in.mux.HandleFunc("POST /v1/requests", cfg.Metrics.countRefusals(in.withDesk(in.submit)))
	in.mux.HandleFunc("GET /v1/requests/{id}", in.withDesk(in.getRequest))
	in.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &apiError{Code: "not_found", Message: "no such endpoint"})
	})
	in.open311Routes()
	return in, nil
}

// ServeHTTP serves the desk API under /v1/ and Open311 GeoReport v2 under
// /open311/v2/ (open311.go).
func (in *Intake) ServeHTTP(w http.ResponseWriter, r *http.Request) { in.mux.ServeHTTP(w, r) }

// apiError is the body of every error answer: a stable code for programs, a
// message for people and, where one is at fault, the field.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *apiError) {
	if r, ok := w.(interface{ refused(code string) }); ok {
		r.refused(e.Code)
	}
	writeJSON(w, status, map[string]*apiError{"error": e})
}

type deskHandler func(w http.ResponseWriter, r *http.Request, desk events.Desk)

// withDesk authenticates the desk from its bearer token.
func (in *Intake) withDesk(h deskHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow"`)
			writeError(w, http.StatusUnauthorized, &apiError{Code: "unauthenticated", Message: "a desk token is required: Authorization: Bearer <token>", Field: "Authorization"})
			return
		}
		desk, err := in.desk(r.Context(), token)
		if errors.Is(err, events.ErrUnauthenticated) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, &apiError{Code: "unauthenticated", Message: "unknown desk token", Field: "Authorization"})
			return
		}
		if err != nil {
			in.cfg.Logger.Error("intake: authenticate desk", "err", err)
			writeError(w, http.StatusServiceUnavailable, &apiError{Code: "unavailable", Message: "cannot check the desk's credential right now; retry later"})
			return
		}
		h(w, r, desk)
	}
}

func (in *Intake) desk(ctx context.Context, token string) (events.Desk, error) {
	now := time.Now()
	in.mu.Lock()
	c, ok := in.desks[token]
	in.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.desk, nil
	}
	desk, err := in.cfg.Store.DeskByToken(ctx, token)
	if err != nil {
		return desk, err
	}
	in.mu.Lock()
	if len(in.desks) > 100000 {
		clear(in.desks)
	}
	in.desks[token] = cachedDesk{desk: desk, expires: now.Add(in.cfg.DeskCacheTTL)}
	in.mu.Unlock()
	return desk, nil
}

// submitted is the answer to an accepted submission.
type submitted struct {
	ID        string        `json:"id"`
	Status    events.Status `json:"status"`
	StatusURL string        `json:"status_url"`
}

func (in *Intake) submit(w http.ResponseWriter, r *http.Request, desk events.Desk) {
	key := r.Header.Get("Idempotency-Key")
	if code, msg := checkIdempotencyKey(key); code != "" {
		writeError(w, http.StatusBadRequest, &apiError{Code: code, Message: msg, Field: "Idempotency-Key"})
		return
	}
	sub, status, apiErr := in.decodeSubmission(w, r)
	if apiErr != nil {
		writeError(w, status, apiErr)
		return
	}
	id, _, err := in.accept(r.Context(), desk, key, sub)
	var fe *events.FieldError
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusUnprocessableEntity, &apiError{Code: fe.Code, Message: fe.Message, Field: fe.Field})
		return
	case errors.Is(err, events.ErrIdempotencyConflict):
		writeError(w, http.StatusConflict, &apiError{Code: "idempotency_conflict", Message: "this Idempotency-Key was used for a different request", Field: "Idempotency-Key"})
		return
	case errors.Is(err, events.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, &apiError{Code: "unavailable", Message: "the request could not be stored; retry with the same Idempotency-Key"})
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, &apiError{Code: "internal", Message: "cannot encode the request"})
		return
	}
	w.Header().Set("Location", "/v1/requests/"+id)
	writeJSON(w, http.StatusAccepted, submitted{ID: id, Status: events.StatusSubmitted, StatusURL: "/v1/requests/" + id})
}

// accept is the one path every submission takes, whatever API it came by:
// it validates sub against the catalogue in force, binds it to the desk's
// idempotency key, and publishes it, returning once JetStream has stored it.
// An empty key is derived from the submission itself: the same submission
// from the same desk on the same day (UTC) is the same request.
//
// It returns the request's ID and service. The error is a
// *events.FieldError when the submission does not fit the service,
// events.ErrIdempotencyConflict when the key was bound to another body, and
// wraps events.ErrUnavailable when the request could not be stored now (the
// caller may retry with the same key); any other error is a fault of
// spotflow's.
func (in *Intake) accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (string, *events.Service, error) {
	svc, err := in.cfg.Catalog.Current().Validate(sub)
	if err != nil {
		return "", nil, err
	}
	canonical, err := json.Marshal(sub)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode submission: %w", err)
	}
	now := time.Now().UTC()
	if key == "" {
		sum := sha256.Sum256(canonical)
		key = "derived:" + now.Format(time.DateOnly) + ":" + hex.EncodeToString(sum[:])
	}
	id, published, err := in.cfg.Store.ClaimKey(ctx, events.KeyClaim{
		DeskID: desk.ID, Key: key, ServiceCode: sub.ServiceCode, Body: canonical, NewID: events.NewID(now),
	})
	switch {
	case errors.Is(err, events.ErrIdempotencyConflict):
		return "", nil, err
	case err != nil:
		in.cfg.Logger.Error("intake: claim idempotency key", "desk", desk.ID, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: %w", err))
	}
	if published {
		in.cfg.Metrics.accepted(desk.Municipality, sub.ServiceCode)
		return id, svc, nil
	}
	req := events.Request{
		Schema:       events.SchemaRequest,
		ID:           id,
		DeskID:       desk.ID,
		Municipality: desk.Municipality,
		Mediator:     sub.Mediator,
		ServiceCode:  sub.ServiceCode,
		VisitID:      sub.VisitID,
		Citizen:      *sub.Citizen,
		Attributes:   sub.Attributes,
		SubmittedAt:  now,
	}
	message, err := json.Marshal(req)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode request: %w", err)
	}
	out := natsbus.Outgoing{Subject: events.RequestSubject(desk.Municipality, desk.ID), ID: id, Value: json.RawMessage(message)}
	publishCtx, cancel := context.WithTimeout(ctx, in.cfg.PublishTimeout)
	err = in.cfg.Publisher.Publish(publishCtx, out)
	cancel()
	if err != nil {
		in.cfg.Logger.Error("intake: publish request", "desk", desk.ID, "request", id, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: publish request %s: %w", id, err))
	}
	if err := in.cfg.Store.MarkPublished(ctx, id, message); err != nil {
		// JetStream has it, but until Postgres knows, the reconciler
		// could not re-drive it: the desk retries with the same key,
		// which publishes it again (deduplicated) and marks it.
		in.cfg.Logger.Error("intake: mark request published", "request", id, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: mark request %s published: %w", id, err))
	}
	in.cfg.Metrics.accepted(desk.Municipality, sub.ServiceCode)
	return id, svc, nil
}

func checkIdempotencyKey(key string) (code, message string) {
	switch {
	case key == "":
		return events.CodeRequired, "an Idempotency-Key header is required"
	case len(key) > 255 || strings.IndexFunc(key, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) >= 0:
		return events.CodeInvalidValue, "the Idempotency-Key must be 1 to 255 printable ASCII characters"
	}
	return "", ""
}

// Fields a submission may carry, by the object they belong to.
var (
	submissionFields = []string{"service_code", "citizen", "attributes", "visit_id", "mediator"}
	citizenFields    = []string{"national_id", "name"}
)

// decodeSubmission reads the body strictly: JSON only, within MaxBody, no
// unknown fields, every field of the right JSON type.
func (in *Intake) decodeSubmission(w http.ResponseWriter, r *http.Request) (*events.Submission, int, *apiError) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, &apiError{Code: "unsupported_media_type", Message: "the body must be application/json", Field: "Content-Type"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, http.StatusRequestEntityTooLarge, &apiError{Code: "body_too_large", Message: fmt.Sprintf("the body is larger than %d bytes", in.cfg.MaxBody), Field: "body"}
	}
	if err != nil {
		return nil, http.StatusBadRequest, &apiError{Code: "malformed_json", Message: "cannot read the body", Field: "body"}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, http.StatusBadRequest, &apiError{Code: "malformed_json", Message: "the body must be a JSON object", Field: "body"}
	}
	if f := unknownField(top, submissionFields, ""); f != "" {
		return nil, http.StatusBadRequest, &apiError{Code: events.CodeUnknownField, Message: fmt.Sprintf("unknown field %q", f), Field: f}
	}
	if raw, ok := top["citizen"]; ok {
		var citizen map[string]json.RawMessage
		if json.Unmarshal(raw, &citizen) == nil {
			if f := unknownField(citizen, citizenFields, "citizen."); f != "" {
				return nil, http.StatusBadRequest, &apiError{Code: events.CodeUnknownField, Message: fmt.Sprintf("unknown field %q", f), Field: f}
			}
		}
	}
	var sub events.Submission
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sub); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, http.StatusUnprocessableEntity, &apiError{Code: events.CodeInvalidType, Message: fmt.Sprintf("%s must be of JSON type %s", typeErr.Field, jsonType(typeErr)), Field: typeErr.Field}
		}
		return nil, http.StatusBadRequest, &apiError{Code: "malformed_json", Message: "the body is not valid JSON", Field: "body"}
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

func (in *Intake) getRequest(w http.ResponseWriter, r *http.Request, desk events.Desk) {
	v, err := in.cfg.Store.RequestForDesk(r.Context(), desk.ID, r.PathValue("id"))
	switch {
	case errors.Is(err, events.ErrNotFound):
		writeError(w, http.StatusNotFound, &apiError{Code: "not_found", Message: "this desk has no request with that id", Field: "id"})
	case err != nil:
		in.cfg.Logger.Error("intake: read request", "err", err)
		writeError(w, http.StatusServiceUnavailable, &apiError{Code: "unavailable", Message: "cannot read requests right now; retry later"})
	default:
		writeJSON(w, http.StatusOK, v)
	}
}
