package simagency

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
)

// maxWorkItemBytes bounds the body of a delivery.
const maxWorkItemBytes = 1 << 20

// ErrUnknownAgency is returned for an agency a Server does not simulate.
var ErrUnknownAgency = errors.New("unknown agency")

// ServerConfig configures a Server.
type ServerConfig struct {
	// Dir holds one journal per agency (<Dir>/<agency>.jsonl), created if
	// missing. Required. Give each server its own directory.
	Dir string
	// Profiles by agency, "*" for the default, as ParseProfiles returns.
	Profiles map[string]Profile
	// Agencies the server simulates. Required, at least one.
	Agencies []string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Server simulates many agencies' back offices behind the agency HTTP
// contract of package workers/httpadapter, at
// POST /agencies/{agency}/work-items, recording every application in the
// agency's Journal so that it applies a work item once even across its own
// restarts. It also serves fault controls for tests:
//
//	PUT /control/{agency}   {"down": true, "latency": "5s"} (both optional)
//	GET /control/{agency}   {"agency", "down", "latency", "applied", "duplicates"}
//
// A Server is safe for concurrent use. Close it once its HTTP server has
// stopped.
type Server struct {
	agencies map[string]*simulated
	log      *slog.Logger
	mux      *http.ServeMux
}

// simulated is one agency of a Server.
type simulated struct {
	code    string
	profile Profile
	journal *Journal

	mu      sync.Mutex
	down    bool
	latency time.Duration
}

// NewServer validates cfg and opens every agency's journal.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Dir == "" || len(cfg.Agencies) == 0 {
		return nil, errors.New("new agency server: a directory and at least one agency are required")
	}
	s := &Server{
		agencies: make(map[string]*simulated, len(cfg.Agencies)),
		log:      cmp.Or(cfg.Logger, slog.Default()).With("role", "simagency"),
	}
	for _, code := range cfg.Agencies {
		if _, dup := s.agencies[code]; dup {
			continue
		}
		j, err := OpenJournal(cfg.Dir, code)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("new agency server: %w", err)
		}
		p := For(cfg.Profiles, code)
		s.agencies[code] = &simulated{code: code, profile: p, journal: j, latency: p.Latency}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /agencies/{agency}/work-items", s.deliver)
	mux.HandleFunc("GET /control/{agency}", s.getControl)
	mux.HandleFunc("PUT /control/{agency}", s.putControl)
	s.mux = mux
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Agencies returns the codes of the simulated agencies, sorted.
func (s *Server) Agencies() []string {
	codes := make([]string, 0, len(s.agencies))
	for c := range s.agencies {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// SetDown takes agency down (every delivery answers 503) or brings it back.
func (s *Server) SetDown(agency string, down bool) error {
	a, ok := s.agencies[agency]
	if !ok {
		return fmt.Errorf("set %s down: %w", agency, ErrUnknownAgency)
	}
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
	return nil
}

// SetLatency changes how long agency takes to answer each delivery.
func (s *Server) SetLatency(agency string, d time.Duration) error {
	a, ok := s.agencies[agency]
	if !ok {
		return fmt.Errorf("set %s latency: %w", agency, ErrUnknownAgency)
	}
	if d < 0 {
		return fmt.Errorf("set %s latency: negative latency %v", agency, d)
	}
	a.mu.Lock()
	a.latency = d
	a.mu.Unlock()
	return nil
}

// Close closes every agency's journal. Deliveries after Close answer 500.
func (s *Server) Close() error {
	var errs []error
	for _, a := range s.agencies {
		errs = append(errs, a.journal.Close())
	}
	return errors.Join(errs...)
}

func (a *simulated) settings() (down bool, latency time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.down, a.latency
}

// deliver implements the agency contract for one delivery.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request) {
	a, ok := s.agencies[r.PathValue("agency")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_agency", "no such agency")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "want application/json")
		return
	}
	// Read the whole body: the server notices a caller that goes away (and
	// cancels the request's context, ending the latency) only after that.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWorkItemBytes))
	if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "work item over 1 MiB")
		return
	}
	var item events.WorkItem
	if err != nil || json.Unmarshal(body, &item) != nil {
		writeError(w, http.StatusBadRequest, "malformed_json", "the body is not a work item")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	switch {
	case item.Schema != events.SchemaWorkItem || item.ID == "" || item.RequestID == "" || item.Agency == "":
		writeError(w, http.StatusBadRequest, "not_a_work_item", "want a "+events.SchemaWorkItem+" with id, request_id and agency")
		return
	case key == "":
		writeError(w, http.StatusBadRequest, "required", "the Idempotency-Key header is required")
		return
	case key != item.ID:
		writeError(w, http.StatusBadRequest, "idempotency_key_mismatch", "the Idempotency-Key header differs from the work item's id")
		return
	case item.Agency != a.code:
		writeError(w, http.StatusUnprocessableEntity, "wrong_agency", "the work item is for another agency")
		return
	}

	if down, _ := a.settings(); down {
		unavailable(w)
		return
	}
	if _, latency := a.settings(); latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return // the caller is gone; nothing was applied
		case <-t.C:
		}
	}
	// Down may have been set while we waited; a down agency applies nothing.
	if down, _ := a.settings(); down || (a.profile.TransientRate > 0 && rand.Float64() < a.profile.TransientRate) {
		unavailable(w)
		return
	}

	status, dup, err := a.journal.Apply(item.ID, func() events.Status {
		if share(item.ID) < a.profile.RejectRate {
			return events.StatusRejected
		}
		return events.StatusCompleted
	})
	if err != nil {
		s.log.Error("journal apply failed", "agency", a.code, "work_item", item.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "journal", "the agency could not record the work item")
		return
	}
	note := ""
	switch {
	case dup:
		note = "already received"
	case status == events.StatusRejected:
		note = "rejected by the simulated " + a.code
	}
	s.log.Debug("work item applied", "agency", a.code, "work_item", item.ID, "status", status, "duplicate", dup)
	writeJSON(w, http.StatusOK, answer{Status: status, Note: note})
}

// answer is the body of a successful delivery.
type answer struct {
	Status events.Status `json:"status"`
	Note   string        `json:"note,omitempty"`
}

// control is the body of PUT /control/{agency}; absent fields are left as
// they are.
type control struct {
	Down    *bool   `json:"down"`
	Latency *string `json:"latency"`
}

// controlState is the answer of the control endpoints.
type controlState struct {
	Agency     string `json:"agency"`
	Down       bool   `json:"down"`
	Latency    string `json:"latency"`
	Applied    int    `json:"applied"`
	Duplicates int    `json:"duplicates"`
}

func (s *Server) getControl(w http.ResponseWriter, r *http.Request) {
	a, ok := s.agencies[r.PathValue("agency")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_agency", "no such agency")
		return
	}
	writeJSON(w, http.StatusOK, a.state())
}

func (s *Server) putControl(w http.ResponseWriter, r *http.Request) {
	a, ok := s.agencies[r.PathValue("agency")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_agency", "no such agency")
		return
	}
	var c control
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json", "want {\"down\": bool, \"latency\": \"duration\"}")
		return
	}
	var latency time.Duration
	if c.Latency != nil {
		d, err := time.ParseDuration(*c.Latency)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "invalid_value", "latency must be a non-negative Go duration such as \"250ms\"")
			return
		}
		latency = d
	}
	a.mu.Lock()
	if c.Down != nil {
		a.down = *c.Down
	}
	if c.Latency != nil {
		a.latency = latency
	}
	a.mu.Unlock()
	st := a.state()
	s.log.Info("agency controls changed", "agency", a.code, "down", st.Down, "latency", st.Latency)
	writeJSON(w, http.StatusOK, st)
}

func (a *simulated) state() controlState {
	down, latency := a.settings()
	return controlState{
		Agency:     a.code,
		Down:       down,
		Latency:    latency.String(),
		Applied:    a.journal.Applied(),
		Duplicates: a.journal.Duplicates(),
	}
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "unavailable", "the simulated agency is temporarily unavailable")
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": errCode, "message": msg}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
