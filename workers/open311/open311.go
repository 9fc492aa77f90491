// Package open311 serves Open311 GeoReport v2
// (http://wiki.open311.org/GeoReport_v2) under /open311/v2/, so that
// municipal software that speaks it submits to and reads from spotflow
// unchanged. Every endpoint answers in XML or JSON
// by the extension of its last path segment. Submissions take the same path
// as the desk API's: validation against the catalogue, the desk's
// idempotency key, JetStream before any answer.
//
// Where the specification leaves a choice, spotflow makes these:
//   - api_key is a desk's token; jurisdiction_id is the desk's municipality,
//     optional with an api_key (which names it), and any other one is not
//     found for that desk.
//   - Reads of requests carry no personal data: no citizen, no attributes,
//     no location. A read by request ID (requests/{id}, tokens/{token},
//     requests with service_request_id) needs no api_key; listings
//     (requests by date, service or status, and FixMyStreet's
//     servicerequestupdates) need the desk's, and show its own requests
//     only.
//   - The citizen is sent as attribute[citizen_national_id] and
//     attribute[citizen_name] (or first_name and last_name), which every
//     service definition lists first; account_id is the mediator's id.
//   - Location, contact and description fields are accepted and not kept:
//     desk services are not located, and contact data is personal.
//   - A retried POST must not make a second request, and Open311 has no
//     idempotency key: an Idempotency-Key header is honoured when sent, and
//     otherwise the same submission from the same desk on the same day (UTC)
//     is the same request.
//   - Requests are answered in real time: POST returns service_request_id
//     and never a token. tokens/{token} answers for a token that is a
//     service_request_id, for clients that look one up anyway.
//   - When a request cannot be stored now the answer is 503 with
//     Retry-After, not the specification's 400, so clients know that sending
//     it again is safe.
//
// It calls the pipeline through small interfaces declared here (Intake,
// Store, Catalogs), so it imports events only, never NATS or Postgres.
package open311

import (
	"cmp"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Open311's paths, limits and the attributes that stand for the citizen.
const (
	prefix = "/open311/v2/"
	// requestsWindow is the longest span of GET requests, and its default.
	requestsWindow = 90 * 24 * time.Hour
	// requestsLimit caps the requests GET requests returns.
	requestsLimit = 1000
	// The codes of the attributes that carry the citizen's identity.
	citizenNationalIDAttribute = events.ReservedAttributePrefix + "national_id"
	citizenNameAttribute       = events.ReservedAttributePrefix + "name"
)

// Intake authenticates desks and accepts their submissions
// (workers.Intake).
type Intake interface {
	Authenticate(ctx context.Context, remoteAddr, token string) (events.Desk, error)
	Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (id string, svc *events.Service, err error)
}

// Store finds requests and jurisdictions.
type Store interface {
	SearchRequests(ctx context.Context, q events.RequestQuery) ([]events.RequestSummary, error)
	RequestUpdates(ctx context.Context, q events.UpdateQuery) ([]events.RequestUpdate, error)
	HasMunicipality(ctx context.Context, municipality string) (bool, error)
}

// Catalogs gives the service catalogue in force.
type Catalogs interface {
	Current() *events.Catalog
}

// Config configures the Open311 API.
type Config struct {
	// Intake authenticates desks and accepts submissions. Required.
	Intake Intake
	// Store finds requests. Required.
	Store Store
	// Catalog is the service catalogue, as it stands at each request.
	// Required.
	Catalog Catalogs
	// MaxBody is the largest request body accepted. Default 64 KiB.
	MaxBody int64
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API serves Open311 GeoReport v2. It is safe for concurrent use.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New validates cfg and returns the Open311 API.
func New(cfg Config) (*API, error) {
	if cfg.Intake == nil || cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("new open311: Intake, Store and Catalog are required")
	}
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 64<<10)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /open311/{file}", a.serveDiscovery)
	a.mux.HandleFunc("GET "+prefix+"{resource}", a.serveCollection)
	a.mux.HandleFunc("POST "+prefix+"{resource}", a.serveSubmit)
	a.mux.HandleFunc("GET "+prefix+"services/{code}", a.serveService)
	a.mux.HandleFunc("GET "+prefix+"requests/{id}", a.serveRequest)
	a.mux.HandleFunc("GET "+prefix+"tokens/{token}", a.serveToken)
	a.mux.HandleFunc("/open311/", func(w http.ResponseWriter, r *http.Request) {
		_, format := splitFormat(r.URL.Path)
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.Method+" "+r.URL.Path)
	})
	return a, nil
}

// ServeHTTP serves Open311 under /open311/.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// languageOf picks the catalogue language a request asks for: ?lang=xx, else
// its Accept-Language header; English when the catalogue lacks it.
func languageOf(r *http.Request, c *events.Catalog) string {
	return c.Language(cmp.Or(r.URL.Query().Get("lang"), r.Header.Get("Accept-Language")))
}

// splitFormat splits "requests.json" into "requests" and "json"; the format
// is xml, Open311's required one, when the extension names no other.
func splitFormat(segment string) (name, format string) {
	i := strings.LastIndexByte(segment, '.')
	if i < 0 || strings.ContainsRune(segment[i:], '/') {
		return segment, "xml"
	}
	switch ext := segment[i+1:]; ext {
	case "xml", "json":
		return segment[:i], ext
	}
	return segment, "xml"
}

// splitPathFormat splits the path value name into its value and format, and
// answers 404 when the extension is missing or unknown.
func splitPathFormat(w http.ResponseWriter, r *http.Request, name string) (value, format string, ok bool) {
	seg := r.PathValue(name)
	value, format = splitFormat(seg)
	if value == seg {
		writeError(w, "xml", http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path+"; add the format: .xml or .json")
		return "", "", false
	}
	return value, format, true
}

// nullable is a string that JSON renders as null when it is empty, as the
// specification's examples do; XML renders it as an empty element.
type nullable string

func (n nullable) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(n))
}

// write answers with v as XML under root, or as JSON.
func write(w http.ResponseWriter, format string, status int, root string, v any) {
	if format == "json" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?>`+"\n")
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	_ = enc.EncodeElement(v, xml.StartElement{Name: xml.Name{Local: root}})
	_ = enc.Flush()
	_, _ = fmt.Fprintln(w)
}

// apiError is one entry of the specification's error list. Code is the
// HTTP status, or a more specific one (409: the Idempotency-Key was used for
// another request).
type apiError struct {
	Code        int    `xml:"code" json:"code"`
	Description string `xml:"description" json:"description"`
}

type apiErrors struct {
	Errors []apiError `xml:"error"`
}

func writeError(w http.ResponseWriter, format string, status, code int, description string) {
	if format == "json" {
		write(w, format, status, "errors", []apiError{{code, description}})
		return
	}
	write(w, format, status, "errors", apiErrors{[]apiError{{code, description}}})
}

// authenticate authenticates the api_key, if any (required says whether one
// must be sent), and checks jurisdiction_id against it. It returns ok false
// once it has answered with an error.
// Without an api_key, a jurisdiction_id must be the municipality of some desk.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request, format string, required bool) (desk events.Desk, ok bool) {
	key := r.Form.Get("api_key")
	jurisdiction := r.Form.Get("jurisdiction_id")
	if fault := events.TextFault(jurisdiction, false); fault != "" {
		// No municipality is named so; the database would refuse to look.
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, "jurisdiction_id: the value "+fault)
		return desk, false
	}
	if key == "" {
		if required {
			writeError(w, format, http.StatusForbidden, http.StatusForbidden, "api_key was not provided: send the desk token as api_key")
			return desk, false
		}
		if jurisdiction != "" {
			found, err := a.cfg.Store.HasMunicipality(r.Context(), jurisdiction)
			if err != nil {
				a.cfg.Logger.Error("open311: find jurisdiction", "err", err)
				writeUnavailable(w, format, "cannot check the jurisdiction_id right now; retry later")
				return desk, false
			}
			if !found {
				writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("jurisdiction_id %q was not found", jurisdiction))
				return desk, false
			}
		}
		return desk, true
	}
	desk, err := a.cfg.Intake.Authenticate(r.Context(), r.RemoteAddr, key)
	var th *events.Throttled
	switch {
	case errors.As(err, &th):
		w.Header().Set("Retry-After", strconv.Itoa(th.RetryAfterSeconds()))
		writeError(w, format, http.StatusTooManyRequests, http.StatusTooManyRequests, "too many failed authentications from this address: "+th.Error())
		return desk, false
	case errors.Is(err, events.ErrUnauthenticated):
		writeError(w, format, http.StatusForbidden, http.StatusForbidden, "invalid api_key: it is not the token of any desk")
		return desk, false
	case err != nil:
		a.cfg.Logger.Error("open311: authenticate desk", "err", err)
		writeUnavailable(w, format, "cannot check the api_key right now; retry later")
		return desk, false
	case jurisdiction != "" && jurisdiction != desk.Municipality:
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("jurisdiction_id %q was not found for this api_key", jurisdiction))
		return desk, false
	}
	return desk, true
}

func writeUnavailable(w http.ResponseWriter, format, description string) {
	w.Header().Set("Retry-After", "1")
	writeError(w, format, http.StatusServiceUnavailable, http.StatusServiceUnavailable, description)
}

// discovery is the Service Discovery document
// (http://wiki.open311.org/Service_Discovery) of this endpoint.
type discovery struct {
	Changeset  string              `xml:"changeset" json:"changeset"`
	Contact    string              `xml:"contact" json:"contact"`
	KeyService string              `xml:"key_service" json:"key_service"`
	Endpoints  []discoveryEndpoint `xml:"endpoints>endpoint" json:"endpoints"`
}

type discoveryEndpoint struct {
	Specification string   `xml:"specification" json:"specification"`
	URL           string   `xml:"url" json:"url"`
	Changeset     string   `xml:"changeset" json:"changeset"`
	Type          string   `xml:"type" json:"type"`
	Formats       []string `xml:"formats>format" json:"formats"`
}

func (a *API) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	name, format := splitFormat(r.PathValue("file"))
	if name != "discovery" || name == r.PathValue("file") {
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path+"; discovery is served as discovery.xml and discovery.json")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// The changeset follows the catalogue: service definitions change with it.
	changeset := a.cfg.Catalog.Current().Version
	write(w, format, http.StatusOK, "discovery", discovery{
		Changeset:  changeset,
		Contact:    "The operator of this spotflow installation.",
		KeyService: "An api_key is a desk's token: the operator registers desks with `spotflow desk create`.",
		Endpoints: []discoveryEndpoint{{
			Specification: "http://wiki.open311.org/GeoReport_v2",
			URL:           scheme + "://" + r.Host + strings.TrimSuffix(prefix, "/"),
			Changeset:     changeset,
			Type:          "production",
			Formats:       []string{"text/xml", "application/json"},
		}},
	})
}
