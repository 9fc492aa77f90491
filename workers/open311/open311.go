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
//   - Reads of requests (requests, requests/{id}, tokens/{token}) need an
//     api_key too, and show the desk's own requests only; they carry no
//     personal data: no citizen, no attributes, no location.
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
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Open311's paths, limits and the attributes that stand for the citizen.
const (
	open311Prefix = "/open311/v2/"
	// open311Window is the longest span of GET requests, and its default.
	open311Window = 90 * 24 * time.Hour
	// open311Limit caps the requests GET requests returns.
	open311Limit = 1000
	// The codes of the attributes that carry the citizen's identity.
	citizenNationalIDAttribute = events.ReservedAttributePrefix + "national_id"
	citizenNameAttribute       = events.ReservedAttributePrefix + "name"
)

// Intake authenticates desks and accepts their submissions
// (workers.Intake).
type Intake interface {
	Authenticate(ctx context.Context, token string) (events.Desk, error)
	Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (id string, svc *events.Service, err error)
}

// Store finds requests and jurisdictions.
type Store interface {
	SearchRequests(ctx context.Context, q events.RequestQuery) ([]events.RequestSummary, error)
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
	a.mux.HandleFunc("GET /open311/{file}", a.open311Discovery)
	a.mux.HandleFunc("GET "+open311Prefix+"{resource}", a.open311Collection)
	a.mux.HandleFunc("POST "+open311Prefix+"{resource}", a.open311Submit)
	a.mux.HandleFunc("GET "+open311Prefix+"services/{code}", a.open311Service)
	a.mux.HandleFunc("GET "+open311Prefix+"requests/{id}", a.open311Request)
	a.mux.HandleFunc("GET "+open311Prefix+"tokens/{token}", a.open311Token)
	a.mux.HandleFunc("/open311/", func(w http.ResponseWriter, r *http.Request) {
		_, format := splitFormat(r.URL.Path)
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.Method+" "+r.URL.Path)
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

// open311Format splits the path value name into its value and format, and
// answers 404 when the extension is missing or unknown.
func open311Format(w http.ResponseWriter, r *http.Request, name string) (value, format string, ok bool) {
	seg := r.PathValue(name)
	value, format = splitFormat(seg)
	if value == seg {
		writeOpen311Error(w, "xml", http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path+"; add the format: .xml or .json")
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

// writeOpen311 answers with v as XML under root, or as JSON.
func writeOpen311(w http.ResponseWriter, format string, status int, root string, v any) {
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

// open311Error is one entry of the specification's error list. Code is the
// HTTP status, or a more specific one (409: the Idempotency-Key was used for
// another request).
type open311Error struct {
	Code        int    `xml:"code" json:"code"`
	Description string `xml:"description" json:"description"`
}

type open311Errors struct {
	Errors []open311Error `xml:"error"`
}

func writeOpen311Error(w http.ResponseWriter, format string, status, code int, description string) {
	if format == "json" {
		writeOpen311(w, format, status, "errors", []open311Error{{code, description}})
		return
	}
	writeOpen311(w, format, status, "errors", open311Errors{[]open311Error{{code, description}}})
}

// open311Desk authenticates the api_key, if any (required says whether one
// must be sent), and checks jurisdiction_id against it. It returns ok false
// once it has answered with an error.
// Without an api_key, a jurisdiction_id must be the municipality of some desk.
func (a *API) open311Desk(w http.ResponseWriter, r *http.Request, format string, required bool) (desk events.Desk, ok bool) {
	key := r.Form.Get("api_key")
	jurisdiction := r.Form.Get("jurisdiction_id")
	if key == "" {
		if required {
			writeOpen311Error(w, format, http.StatusForbidden, http.StatusForbidden, "api_key was not provided: send the desk token as api_key")
			return desk, false
		}
		if jurisdiction != "" {
			found, err := a.cfg.Store.HasMunicipality(r.Context(), jurisdiction)
			if err != nil {
				a.cfg.Logger.Error("open311: find jurisdiction", "err", err)
				writeOpen311Unavailable(w, format, "cannot check the jurisdiction_id right now; retry later")
				return desk, false
			}
			if !found {
				writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("jurisdiction_id %q was not found", jurisdiction))
				return desk, false
			}
		}
		return desk, true
	}
	desk, err := a.cfg.Intake.Authenticate(r.Context(), key)
	switch {
	case errors.Is(err, events.ErrUnauthenticated):
		writeOpen311Error(w, format, http.StatusForbidden, http.StatusForbidden, "invalid api_key: it is not the token of any desk")
		return desk, false
	case err != nil:
		a.cfg.Logger.Error("open311: authenticate desk", "err", err)
		writeOpen311Unavailable(w, format, "cannot check the api_key right now; retry later")
		return desk, false
	case jurisdiction != "" && jurisdiction != desk.Municipality:
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("jurisdiction_id %q was not found for this api_key", jurisdiction))
		return desk, false
	}
	return desk, true
}

func writeOpen311Unavailable(w http.ResponseWriter, format, description string) {
	w.Header().Set("Retry-After", "1")
	writeOpen311Error(w, format, http.StatusServiceUnavailable, http.StatusServiceUnavailable, description)
}

// open311Collection serves GET services.{format} and GET requests.{format}.
func (a *API) open311Collection(w http.ResponseWriter, r *http.Request) {
	resource, format, ok := open311Format(w, r, "resource")
	if !ok {
		return
	}
	switch resource {
	case "services":
		a.open311Services(w, r, format)
	case "requests":
		a.open311Requests(w, r, format)
	default:
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path)
	}
}

// open311ServiceView is an entry of GET services.
type open311ServiceView struct {
	ServiceCode string `xml:"service_code" json:"service_code"`
	ServiceName string `xml:"service_name" json:"service_name"`
	Description string `xml:"description" json:"description"`
	Metadata    bool   `xml:"metadata" json:"metadata"`
	Type        string `xml:"type" json:"type"`
	Keywords    string `xml:"keywords" json:"keywords"`
	Group       string `xml:"group" json:"group"`
}

type open311ServiceList struct {
	Services []open311ServiceView `xml:"service"`
}

func (a *API) open311Services(w http.ResponseWriter, r *http.Request, format string) {
	_ = r.ParseForm()
	if _, ok := a.open311Desk(w, r, format, false); !ok {
		return
	}
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	list := make([]open311ServiceView, len(catalog.Services))
	for i, s := range catalog.Services {
		list[i] = open311ServiceView{
			ServiceCode: s.Code,
			ServiceName: s.Name.In(lang),
			Description: s.Description.In(lang),
			// Every service asks at least for the citizen.
			Metadata: true,
			Type:     "realtime",
			Keywords: strings.Join(s.Keywords, ", "),
			Group:    s.Group,
		}
	}
	w.Header().Set("Content-Language", lang)
	if format == "json" {
		writeOpen311(w, format, http.StatusOK, "services", list)
		return
	}
	writeOpen311(w, format, http.StatusOK, "services", open311ServiceList{list})
}

// open311Definition is GET services/{code}: the service's attributes, the
// citizen's first.
type open311Definition struct {
	ServiceCode string             `xml:"service_code" json:"service_code"`
	Attributes  []open311Attribute `xml:"attributes>attribute" json:"attributes"`
}

type open311Attribute struct {
	Variable            bool            `xml:"variable" json:"variable"`
	Code                string          `xml:"code" json:"code"`
	Datatype            events.Datatype `xml:"datatype" json:"datatype"`
	Required            bool            `xml:"required" json:"required"`
	DatatypeDescription nullable        `xml:"datatype_description" json:"datatype_description"`
	Order               int             `xml:"order" json:"order"`
	Description         string          `xml:"description" json:"description"`
	// Values of a list attribute: <values><value>… in XML, an array in JSON.
	Values    []open311Value    `xml:"-" json:"values,omitempty"`
	XMLValues *open311ValueList `xml:"values,omitempty" json:"-"`
}

type open311ValueList struct {
	Values []open311Value `xml:"value"`
}

type open311Value struct {
	Key  string `xml:"key" json:"key"`
	Name string `xml:"name" json:"name"`
}

func (a *API) open311Service(w http.ResponseWriter, r *http.Request) {
	code, format, ok := open311Format(w, r, "code")
	if !ok {
		return
	}
	_ = r.ParseForm()
	if _, ok := a.open311Desk(w, r, format, false); !ok {
		return
	}
	catalog := a.cfg.Catalog.Current()
	s, found := catalog.Service(code)
	if !found {
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", code))
		return
	}
	lang := languageOf(r, catalog)
	def := open311Definition{ServiceCode: s.Code, Attributes: []open311Attribute{
		{Variable: true, Code: citizenNationalIDAttribute, Datatype: events.DatatypeString, Required: true, Order: 1,
			Description: catalog.CitizenFields.NationalID.In(lang)},
		{Variable: true, Code: citizenNameAttribute, Datatype: events.DatatypeString, Required: true, Order: 2,
			Description: catalog.CitizenFields.Name.In(lang)},
	}}
	for _, a := range s.Attributes {
		attr := open311Attribute{
			Variable: true, Code: a.Code, Datatype: a.Datatype, Required: a.Required,
			Order: a.Order + 2, Description: a.Description.In(lang),
		}
		for _, v := range a.Values {
			attr.Values = append(attr.Values, open311Value{Key: v.Key, Name: v.Name.In(lang)})
		}
		if attr.Values != nil {
			attr.XMLValues = &open311ValueList{attr.Values}
		}
		def.Attributes = append(def.Attributes, attr)
	}
	w.Header().Set("Content-Language", lang)
	writeOpen311(w, format, http.StatusOK, "service_definition", def)
}

// open311Created is the answer to POST requests.
type open311Created struct {
	ServiceRequestID string   `xml:"service_request_id" json:"service_request_id"`
	ServiceNotice    nullable `xml:"service_notice" json:"service_notice"`
	AccountID        nullable `xml:"account_id" json:"account_id"`
}

type open311CreatedList struct {
	Requests []open311Created `xml:"request"`
}

// attributeParam matches attribute[code] and attribute[code][].
var attributeParam = regexp.MustCompile(`^attribute\[([^\[\]]*)\](\[\])?$`)

func (a *API) open311Submit(w http.ResponseWriter, r *http.Request) {
	resource, format, ok := open311Format(w, r, "resource")
	if !ok {
		return
	}
	if resource != "requests" {
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: POST "+r.URL.Path)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, "the body must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeOpen311Error(w, format, http.StatusBadRequest, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", a.cfg.MaxBody))
			return
		}
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, "the body is not a valid form: "+err.Error())
		return
	}
	desk, ok := a.open311Desk(w, r, format, true)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if fe := events.CheckIdempotencyKey(key); fe != nil {
			writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, fe.Message)
			return
		}
	}
	catalog := a.cfg.Catalog.Current()
	sub, status, desc := open311Submission(r.Form, catalog)
	if desc != "" {
		writeOpen311Error(w, format, status, status, desc)
		return
	}
	id, svc, err := a.cfg.Intake.Accept(r.Context(), desk, key, sub)
	var fe *events.FieldError
	switch {
	case errors.As(err, &fe) && fe.Code == events.CodeUnknownService:
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", sub.ServiceCode))
		return
	case errors.As(err, &fe):
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, open311Field(fe.Field)+": "+fe.Message)
		return
	case errors.Is(err, events.ErrIdempotencyConflict):
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusConflict, "this Idempotency-Key was used for a different request")
		return
	case errors.Is(err, events.ErrUnavailable):
		writeOpen311Unavailable(w, format, "the request could not be stored; send it again")
		return
	case err != nil:
		a.cfg.Logger.Error("open311: accept request", "err", err)
		writeOpen311Error(w, format, http.StatusInternalServerError, http.StatusInternalServerError, "cannot take the request")
		return
	}
	lang := languageOf(r, catalog)
	created := open311Created{
		ServiceRequestID: id,
		ServiceNotice:    nullable(catalog.Notice(svc, lang, time.Now().Add(svc.SLA()))),
		AccountID:        nullable(sub.Mediator),
	}
	w.Header().Set("Location", open311Prefix+"requests/"+id+"."+format)
	if format == "json" {
		writeOpen311(w, format, http.StatusOK, "service_requests", []open311Created{created})
		return
	}
	writeOpen311(w, format, http.StatusOK, "service_requests", open311CreatedList{[]open311Created{created}})
}

// open311Submission turns a POST requests form into a submission, typing
// each attribute by the service's definition so that Validate judges it as
// it would a desk's JSON. When the form cannot be one (no service_code, an
// unknown service, several values for an attribute that takes one), desc
// says why and status is the HTTP status to answer with.
func open311Submission(form url.Values, catalog *events.Catalog) (sub *events.Submission, status int, desc string) {
	code := form.Get("service_code")
	if code == "" {
		return nil, http.StatusBadRequest, "service_code was not provided"
	}
	svc, ok := catalog.Service(code)
	if !ok {
		return nil, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", code)
	}
	sub = &events.Submission{
		ServiceCode: code,
		Citizen:     &events.Citizen{},
		Attributes:  map[string]json.RawMessage{},
		Mediator:    form.Get("account_id"),
	}
	values := map[string][]string{}
	var order []string
	for param, vs := range form {
		m := attributeParam.FindStringSubmatch(param)
		if m == nil {
			continue
		}
		if _, seen := values[m[1]]; !seen {
			order = append(order, m[1])
		}
		for _, v := range vs {
			// An empty value is no value, as Open311's optional
			// arguments are.
			if v = strings.TrimSpace(v); v != "" {
				values[m[1]] = append(values[m[1]], v)
			}
		}
	}
	slices.Sort(order)
	for _, attr := range order {
		vs := values[attr]
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			i := slices.IndexFunc(svc.Attributes, func(a events.Attribute) bool { return a.Code == attr })
			if i < 0 || svc.Attributes[i].Datatype != events.DatatypeMultiValueList {
				return nil, http.StatusBadRequest, fmt.Sprintf("attribute[%s]: takes one value, got %d", attr, len(vs))
			}
		}
		switch attr {
		case citizenNationalIDAttribute, citizenNameAttribute:
			if attr == citizenNationalIDAttribute {
				sub.Citizen.NationalID = vs[0]
			} else {
				sub.Citizen.Name = vs[0]
			}
			continue
		}
		i := slices.IndexFunc(svc.Attributes, func(a events.Attribute) bool { return a.Code == attr })
		if i < 0 {
			// Unknown to the service: Validate names it.
			sub.Attributes[attr], _ = json.Marshal(vs[0])
			continue
		}
		a := svc.Attributes[i]
		switch {
		case a.Datatype == events.DatatypeMultiValueList:
			sub.Attributes[attr], _ = json.Marshal(vs)
		case a.Datatype == events.DatatypeNumber:
			if f, err := strconv.ParseFloat(vs[0], 64); err == nil {
				sub.Attributes[attr], _ = json.Marshal(f)
			} else {
				// Validate refuses a string where a number is due.
				sub.Attributes[attr], _ = json.Marshal(vs[0])
			}
		default:
			sub.Attributes[attr], _ = json.Marshal(vs[0])
		}
	}
	if sub.Citizen.Name == "" {
		sub.Citizen.Name = strings.TrimSpace(strings.TrimSpace(form.Get("first_name")) + " " + strings.TrimSpace(form.Get("last_name")))
	}
	return sub, 0, ""
}

// open311Field names a field of a submission the way an Open311 client sent it.
func open311Field(field string) string {
	switch {
	case field == "citizen" || field == "citizen.national_id":
		return "attribute[" + citizenNationalIDAttribute + "]"
	case field == "citizen.name":
		return "attribute[" + citizenNameAttribute + "]"
	case field == "mediator":
		return "account_id"
	case strings.HasPrefix(field, "attributes."):
		return "attribute[" + strings.TrimPrefix(field, "attributes.") + "]"
	}
	return field
}

// open311RequestView is a request as GET requests shows it.
type open311RequestView struct {
	ServiceRequestID  string   `xml:"service_request_id" json:"service_request_id"`
	Status            string   `xml:"status" json:"status"`
	StatusNotes       nullable `xml:"status_notes" json:"status_notes"`
	ServiceName       string   `xml:"service_name" json:"service_name"`
	ServiceCode       string   `xml:"service_code" json:"service_code"`
	Description       nullable `xml:"description" json:"description"`
	AgencyResponsible nullable `xml:"agency_responsible" json:"agency_responsible"`
	ServiceNotice     nullable `xml:"service_notice" json:"service_notice"`
	RequestedDatetime string   `xml:"requested_datetime" json:"requested_datetime"`
	UpdatedDatetime   string   `xml:"updated_datetime" json:"updated_datetime"`
	ExpectedDatetime  nullable `xml:"expected_datetime" json:"expected_datetime"`
}

type open311RequestList struct {
	Requests []open311RequestView `xml:"request"`
}

// w3 is the specification's date-time format: ISO 8601 with a time zone.
func w3(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (a *API) viewOpen311(catalog *events.Catalog, lang string, s events.RequestSummary) open311RequestView {
	v := open311RequestView{
		ServiceRequestID:  s.ID,
		Status:            s.Status.Open311(),
		StatusNotes:       nullable(s.Note),
		ServiceName:       s.ServiceCode,
		ServiceCode:       s.ServiceCode,
		RequestedDatetime: w3(s.SubmittedAt),
		UpdatedDatetime:   w3(s.UpdatedAt),
	}
	if svc, ok := catalog.Service(s.ServiceCode); ok {
		expected := s.SubmittedAt.Add(svc.SLA())
		names := make([]string, 0, len(svc.Agencies))
		for _, code := range svc.Agencies {
			if a, ok := catalog.Agency(code); ok {
				names = append(names, a.Name.In(lang))
			}
		}
		v.ServiceName = svc.Name.In(lang)
		v.AgencyResponsible = nullable(strings.Join(names, ", "))
		v.ServiceNotice = nullable(catalog.Notice(svc, lang, expected))
		v.ExpectedDatetime = nullable(w3(expected))
	}
	return v
}

func (a *API) writeOpen311Requests(w http.ResponseWriter, r *http.Request, format string, found []events.RequestSummary) {
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	list := make([]open311RequestView, len(found))
	for i, s := range found {
		list[i] = a.viewOpen311(catalog, lang, s)
	}
	w.Header().Set("Content-Language", lang)
	if format == "json" {
		writeOpen311(w, format, http.StatusOK, "service_requests", list)
		return
	}
	writeOpen311(w, format, http.StatusOK, "service_requests", open311RequestList{list})
}

// commaList gathers a parameter given as a comma-separated list, several
// times, or both.
func commaList(form url.Values, name string) []string {
	var out []string
	for _, v := range form[name] {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" && !slices.Contains(out, item) {
				out = append(out, item)
			}
		}
	}
	return out
}

// parseW3 reads a date-time in the specification's format, or a date (taken
// as midnight UTC).
func parseW3(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

func (a *API) open311Requests(w http.ResponseWriter, r *http.Request, format string) {
	_ = r.ParseForm()
	desk, ok := a.open311Desk(w, r, format, true)
	if !ok {
		return
	}
	q := events.RequestQuery{DeskID: desk.ID, Limit: open311Limit}
	if ids := commaList(r.Form, "service_request_id"); len(ids) > 0 {
		// The specification: this overrides all other arguments.
		q.IDs = ids
		a.searchOpen311(w, r, format, q)
		return
	}
	q.ServiceCodes = commaList(r.Form, "service_code")
	for _, st := range commaList(r.Form, "status") {
		if st != "open" && st != "closed" {
			writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, fmt.Sprintf("status %q is neither open nor closed", st))
			return
		}
		for _, s := range events.Statuses {
			if s.Open311() == st {
				q.Statuses = append(q.Statuses, s)
			}
		}
	}
	var err error
	for _, d := range []struct {
		param string
		into  *time.Time
	}{{"start_date", &q.From}, {"end_date", &q.To}} {
		if v := r.Form.Get(d.param); v != "" {
			if *d.into, err = parseW3(v); err != nil {
				writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest,
					fmt.Sprintf("%s %q is not a w3 date-time such as 2010-01-01T00:00:00Z", d.param, v))
				return
			}
		}
	}
	switch now := time.Now(); {
	case q.From.IsZero() && q.To.IsZero():
		q.From, q.To = now.Add(-open311Window), now
	case q.To.IsZero():
		q.To = q.From.Add(open311Window)
	case q.From.IsZero():
		q.From = q.To.Add(-open311Window)
	case q.To.Before(q.From):
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, "end_date is before start_date")
		return
	case q.To.Sub(q.From) > open311Window:
		writeOpen311Error(w, format, http.StatusBadRequest, http.StatusBadRequest, "start_date and end_date may not span more than 90 days")
		return
	}
	a.searchOpen311(w, r, format, q)
}

func (a *API) searchOpen311(w http.ResponseWriter, r *http.Request, format string, q events.RequestQuery) {
	found, err := a.cfg.Store.SearchRequests(r.Context(), q)
	if err != nil {
		a.cfg.Logger.Error("open311: search requests", "desk", q.DeskID, "err", err)
		writeOpen311Unavailable(w, format, "cannot read requests right now; retry later")
		return
	}
	a.writeOpen311Requests(w, r, format, found)
}

// open311One reads one request of the desk by id, answering 404 when the
// desk has none with that id. ok is false once it has answered.
func (a *API) open311One(w http.ResponseWriter, r *http.Request, name, what string) (found events.RequestSummary, format string, ok bool) {
	id, format, ok := open311Format(w, r, name)
	if !ok {
		return found, format, false
	}
	_ = r.ParseForm()
	desk, ok := a.open311Desk(w, r, format, true)
	if !ok {
		return found, format, false
	}
	list, err := a.cfg.Store.SearchRequests(r.Context(), events.RequestQuery{DeskID: desk.ID, IDs: []string{id}, Limit: 1})
	if err != nil {
		a.cfg.Logger.Error("open311: read request", "desk", desk.ID, "err", err)
		writeOpen311Unavailable(w, format, "cannot read requests right now; retry later")
		return found, format, false
	}
	if len(list) == 0 {
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("%s %q was not found", what, id))
		return found, format, false
	}
	return list[0], format, true
}

func (a *API) open311Request(w http.ResponseWriter, r *http.Request) {
	found, format, ok := a.open311One(w, r, "id", "service_request_id")
	if !ok {
		return
	}
	a.writeOpen311Requests(w, r, format, []events.RequestSummary{found})
}

// open311TokenView is the answer to GET tokens/{token}.
type open311TokenView struct {
	ServiceRequestID string `xml:"service_request_id" json:"service_request_id"`
	Token            string `xml:"token" json:"token"`
}

type open311TokenList struct {
	Requests []open311TokenView `xml:"request"`
}

func (a *API) open311Token(w http.ResponseWriter, r *http.Request) {
	found, format, ok := a.open311One(w, r, "token", "token")
	if !ok {
		return
	}
	view := open311TokenView{ServiceRequestID: found.ID, Token: found.ID}
	if format == "json" {
		writeOpen311(w, format, http.StatusOK, "service_requests", []open311TokenView{view})
		return
	}
	writeOpen311(w, format, http.StatusOK, "service_requests", open311TokenList{[]open311TokenView{view}})
}

// open311Discovery is the Service Discovery document
// (http://wiki.open311.org/Service_Discovery) of this endpoint.
type open311Discovery struct {
	Changeset  string                     `xml:"changeset" json:"changeset"`
	Contact    string                     `xml:"contact" json:"contact"`
	KeyService string                     `xml:"key_service" json:"key_service"`
	Endpoints  []open311DiscoveryEndpoint `xml:"endpoints>endpoint" json:"endpoints"`
}

type open311DiscoveryEndpoint struct {
	Specification string   `xml:"specification" json:"specification"`
	URL           string   `xml:"url" json:"url"`
	Changeset     string   `xml:"changeset" json:"changeset"`
	Type          string   `xml:"type" json:"type"`
	Formats       []string `xml:"formats>format" json:"formats"`
}

func (a *API) open311Discovery(w http.ResponseWriter, r *http.Request) {
	name, format := splitFormat(r.PathValue("file"))
	if name != "discovery" || name == r.PathValue("file") {
		writeOpen311Error(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path+"; discovery is served as discovery.xml and discovery.json")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// The changeset follows the catalogue: service definitions change with it.
	changeset := a.cfg.Catalog.Current().Version
	writeOpen311(w, format, http.StatusOK, "discovery", open311Discovery{
		Changeset:  changeset,
		Contact:    "The operator of this spotflow installation.",
		KeyService: "An api_key is a desk's token: the operator registers desks with `spotflow desk create`.",
		Endpoints: []open311DiscoveryEndpoint{{
			Specification: "http://wiki.open311.org/GeoReport_v2",
			URL:           scheme + "://" + r.Host + strings.TrimSuffix(open311Prefix, "/"),
			Changeset:     changeset,
			Type:          "production",
			Formats:       []string{"text/xml", "application/json"},
		}},
	})
}
