package deskapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/deskapi"
	"github.com/spotflow/spotflow/workers/intaketest"
)

// deskAPI is the desk API served over HTTP, with a real intake, store and
// JetStream, and a desk registered with it.
type deskAPI struct {
	*intaketest.Desk
	srv *httptest.Server
}

// startIntake serves the desk API over a fresh intake. wrap, when set, wraps
// the real publisher.
func startIntake(t *testing.T, maxBody int64, wrap func(workers.Publisher) workers.Publisher) *deskAPI {
	t.Helper()
	d := intaketest.Start(t, wrap)
	api, err := deskapi.New(deskapi.Config{Intake: d.Intake, Store: d.Store, Catalog: d.Catalog, MaxBody: maxBody, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new desk API: %v", err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &deskAPI{Desk: d, srv: srv}
}

// call is one HTTP request to the desk API; zero fields are left out.
type call struct {
	method, path, token, contentType, key, body string
	acceptLanguage                              string
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// apiError is the body of an error reply.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (r reply) err(t *testing.T) apiError {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil {
		t.Fatalf("%d reply %s is not a JSON error (%v)", r.status, r.body, err)
	}
	return *e.Error
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d reply %s: %v", r.status, r.body, err)
	}
}

func (api *deskAPI) do(t *testing.T, c call) reply {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), c.method, api.srv.URL+c.path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	if c.key != "" {
		req.Header.Set("Idempotency-Key", c.key)
	}
	if c.acceptLanguage != "" {
		req.Header.Set("Accept-Language", c.acceptLanguage)
	}
	resp, err := api.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// submit posts a submission as the API's desk.
func (api *deskAPI) submit(t *testing.T, key, body string) reply {
	t.Helper()
	return api.do(t, call{method: "POST", path: "/v1/requests", token: api.Token, contentType: "application/json", key: key, body: body})
}

type accepted struct {
	ID        string        `json:"id"`
	Status    events.Status `json:"status"`
	StatusURL string        `json:"status_url"`
}

// mustAccept checks a 202 reply and returns its request ID.
func mustAccept(t *testing.T, r reply) string {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d %s, want 202", r.status, r.body)
	}
	var a accepted
	r.decode(t, &a)
	if a.ID == "" || a.Status != events.StatusSubmitted || a.StatusURL != "/v1/requests/"+a.ID {
		t.Fatalf("202 reply %s, want an id, status submitted and its status_url", r.body)
	}
	if loc := r.header.Get("Location"); loc != a.StatusURL {
		t.Errorf("Location = %q, want %q", loc, a.StatusURL)
	}
	return a.ID
}

const changeOfAddressBody = `{
	"service_code": "change-of-address",
	"citizen": {"national_id": "12345678", "name": "Maria Silva"},
	"attributes": {"street": "Rua Augusta 1", "postal_code": "1100-048", "locality": "Lisboa"},
	"mediator": "m-17"
}`

func TestDeskAPI_AcceptsASubmissionOnce(t *testing.T) {
	t.Parallel()
	api := startIntake(t, 0, nil)

	id := mustAccept(t, api.submit(t, "key-1", changeOfAddressBody))
	msgs := natstest.Messages(t, api.JS, events.EventsStream)
	if len(msgs) != 1 {
		t.Fatalf("the events stream holds %d messages, want 1", len(msgs))
	}
	if want := events.RequestSubject("lisboa", api.Desk.Desk.ID); msgs[0].Subject != want {
		t.Errorf("published on %s, want %s", msgs[0].Subject, want)
	}
	var req events.Request
	if err := json.Unmarshal(msgs[0].Data, &req); err != nil {
		t.Fatalf("decode published request: %v", err)
	}
	if req.Schema != events.SchemaRequest || req.ID != id || req.DeskID != api.Desk.Desk.ID || req.Municipality != "lisboa" ||
		req.ServiceCode != "change-of-address" || req.Mediator != "m-17" || req.SubmittedAt.IsZero() {
		t.Errorf("published request = %+v, want the submission as %s of %s", req, id, api.Desk.Desk.ID)
	}
	if req.Citizen.NationalID != "12345678" || req.Citizen.Name != "Maria Silva" || string(req.Attributes["street"]) != `"Rua Augusta 1"` {
		t.Errorf("published request lost the citizen or attributes: %s", msgs[0].Data)
	}

	t.Run("the same key and body answer the same request without publishing again", func(t *testing.T) {
		// Another layout of the same JSON is the same body.
		same := `{"mediator":"m-17","attributes":{"locality":"Lisboa","postal_code":"1100-048","street":"Rua Augusta 1"},` +
			`"citizen":{"name":"Maria Silva","national_id":"12345678"},"service_code":"change-of-address"}`
		if again := mustAccept(t, api.submit(t, "key-1", same)); again != id {
			t.Errorf("id %s, want %s", again, id)
		}
		if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 1 {
			t.Errorf("the events stream holds %d messages, want 1", n)
		}
	})

	t.Run("the same key with another body is a conflict", func(t *testing.T) {
		other := strings.Replace(changeOfAddressBody, "Rua Augusta 1", "Rua do Ouro 2", 1)
		r := api.submit(t, "key-1", other)
		if e := r.err(t); r.status != http.StatusConflict || e.Code != "idempotency_conflict" || e.Field != "Idempotency-Key" {
			t.Errorf("status %d %+v, want 409 idempotency_conflict on Idempotency-Key", r.status, e)
		}
		if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 1 {
			t.Errorf("the events stream holds %d messages, want 1", n)
		}
	})

	t.Run("the desk reads its request back as submitted", func(t *testing.T) {
		r := api.do(t, call{method: "GET", path: "/v1/requests/" + id, token: api.Token})
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s, want 200", r.status, r.body)
		}
		var v events.RequestView
		r.decode(t, &v)
		if v.ID != id || v.Status != events.StatusSubmitted || v.ServiceCode != "change-of-address" {
			t.Errorf("request view = %+v", v)
		}
	})

	t.Run("another desk cannot tell the request exists", func(t *testing.T) {
		_, other, err := api.Store.CreateDesk(t.Context(), "porto", "Loja do Cidadão Porto")
		if err != nil {
			t.Fatalf("create desk: %v", err)
		}
		for _, path := range []string{"/v1/requests/" + id, "/v1/requests/no-such-request"} {
			r := api.do(t, call{method: "GET", path: path, token: other})
			if e := r.err(t); r.status != http.StatusNotFound || e.Code != "not_found" {
				t.Errorf("GET %s as another desk: %d %+v, want 404 not_found", path, r.status, e)
			}
		}
		r := api.do(t, call{method: "GET", path: "/v1/requests/" + id})
		if r.status != http.StatusUnauthorized {
			t.Errorf("GET without a token: %d, want 401", r.status)
		}
		// Keys belong to their desk: the other desk's key-1 is its own.
		r = api.do(t, call{method: "POST", path: "/v1/requests", token: other, contentType: "application/json", key: "key-1", body: changeOfAddressBody})
		if theirs := mustAccept(t, r); theirs == id {
			t.Errorf("another desk's key-1 answered this desk's request %s", id)
		}
	})

	t.Run("a new key is a new request", func(t *testing.T) {
		if next := mustAccept(t, api.submit(t, "key-2", changeOfAddressBody)); next == id {
			t.Errorf("a new key answered the first request %s", id)
		}
		if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 3 {
			t.Errorf("the events stream holds %d messages, want 3 (two of this desk's, one of the other's)", n)
		}
	})
}

func TestDeskAPI_RefusesInvalidSubmissions(t *testing.T) {
	t.Parallel()
	api := startIntake(t, 2048, nil)
	const citizen = `"citizen": {"national_id": "12345678", "name": "Maria Silva"}`
	valid := changeOfAddressBody
	tests := []struct {
		name                    string
		token, contentType, key string
		body                    string
		status                  int
		code, field             string
	}{
		{name: "a missing token", token: "-", body: valid, status: 401, code: "unauthenticated", field: "Authorization"},
		{name: "an unknown token", token: "sfd_not-a-desk", body: valid, status: 401, code: "unauthenticated", field: "Authorization"},
		{name: "a body that is not JSON by its Content-Type", contentType: "text/plain", body: valid, status: 415, code: "unsupported_media_type", field: "Content-Type"},
		{name: "a missing Content-Type", contentType: "-", body: valid, status: 415, code: "unsupported_media_type", field: "Content-Type"},
		{name: "a body over MaxBody", body: strings.Replace(valid, `"m-17"`, `"`+strings.Repeat("m", 4096)+`"`, 1), status: 413, code: "body_too_large", field: "body"},
		{name: "malformed JSON", body: `{"service_code": "change-of-address",`, status: 400, code: "malformed_json", field: "body"},
		{name: "a JSON array", body: `[1, 2]`, status: 400, code: "malformed_json", field: "body"},
		{name: "an unknown top-level field", body: `{"service_code": "change-of-address", "age": 40, ` + citizen + `}`, status: 400, code: "unknown_field", field: "age"},
		{name: "an unknown citizen field", body: `{"service_code": "change-of-address", "citizen": {"national_id": "12345678", "name": "Maria Silva", "age": 40}}`, status: 400, code: "unknown_field", field: "citizen.age"},
		{name: "an unknown service", body: `{"service_code": "moon-landing-permit", ` + citizen + `, "attributes": {}}`, status: 422, code: "unknown_service", field: "service_code"},
		{name: "a missing service", body: `{` + citizen + `}`, status: 422, code: "required", field: "service_code"},
		{name: "a service code that is a number", body: `{"service_code": 42, ` + citizen + `}`, status: 422, code: "invalid_type", field: "service_code"},
		{name: "a citizen that is a string", body: `{"service_code": "birth-certificate", "citizen": "Maria"}`, status: 422, code: "invalid_type", field: "citizen"},
		{name: "a missing citizen", body: `{"service_code": "birth-certificate", "attributes": {"format": "paper"}}`, status: 422, code: "required", field: "citizen"},
		{name: "a missing required attribute", body: `{"service_code": "change-of-address", ` + citizen + `, "attributes": {"postal_code": "1100-048", "locality": "Lisboa"}}`, status: 422, code: "required", field: "attributes.street"},
		{name: "a wrongly typed attribute", body: `{"service_code": "tax-id-certificate", ` + citizen + `, "attributes": {"tax_number": "123456789", "year": "2025"}}`, status: 422, code: "invalid_type", field: "attributes.year"},
		{name: "an attribute the service lacks", body: `{"service_code": "birth-certificate", ` + citizen + `, "attributes": {"format": "paper", "colour": "blue"}}`, status: 422, code: "unknown_field", field: "attributes.colour"},
		{name: "a value the list does not allow", body: `{"service_code": "birth-certificate", ` + citizen + `, "attributes": {"format": "vellum"}}`, status: 422, code: "invalid_value", field: "attributes.format"},
		{name: "a missing Idempotency-Key", key: "-", body: valid, status: 400, code: "required", field: "Idempotency-Key"},
	}
	for i, tt := range tests {
		t.Run(tt.name+" is refused and nothing is published", func(t *testing.T) {
			c := call{method: "POST", path: "/v1/requests", token: api.Token, contentType: "application/json", key: fmt.Sprintf("key-%d", i), body: tt.body}
			// Each case overrides a header; "-" leaves the header out.
			for _, f := range []struct {
				set *string
				to  string
			}{{&c.token, tt.token}, {&c.contentType, tt.contentType}, {&c.key, tt.key}} {
				switch f.to {
				case "":
				case "-":
					*f.set = ""
				default:
					*f.set = f.to
				}
			}
			r := api.do(t, c)
			e := r.err(t)
			if r.status != tt.status || e.Code != tt.code || e.Field != tt.field {
				t.Errorf("%d %+v, want %d with code %q on field %q", r.status, e, tt.status, tt.code, tt.field)
			}
			if e.Message == "" {
				t.Errorf("the error has no message for people")
			}
			if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 0 {
				t.Fatalf("the events stream holds %d messages after a refusal, want 0", n)
			}
		})
	}

	t.Run("a valid submission at the same limits is accepted", func(t *testing.T) {
		mustAccept(t, api.submit(t, "key-valid", valid))
	})
}

func TestDeskAPI_ServesTheCatalogue(t *testing.T) {
	t.Parallel()
	api := startIntake(t, 0, nil)

	type service struct {
		Code       string   `json:"code"`
		Name       string   `json:"name"`
		Agencies   []string `json:"agencies"`
		Attributes []struct {
			Code     string `json:"code"`
			Datatype string `json:"datatype"`
			Required bool   `json:"required"`
		} `json:"attributes"`
	}
	r := api.do(t, call{method: "GET", path: "/v1/services"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/services: %d %s", r.status, r.body)
	}
	var list struct {
		Services []service `json:"services"`
	}
	r.decode(t, &list)
	if len(list.Services) < 6 {
		t.Fatalf("%d services listed, want at least 6", len(list.Services))
	}
	for _, s := range list.Services {
		if s.Code == "" || s.Name == "" || len(s.Agencies) == 0 || len(s.Attributes) == 0 {
			t.Errorf("service %+v lacks a code, name, agency or attributes", s)
		}
	}

	r = api.do(t, call{method: "GET", path: "/v1/services/change-of-address"})
	var one service
	r.decode(t, &one)
	if r.status != http.StatusOK || one.Code != "change-of-address" || len(one.Agencies) != 4 {
		t.Errorf("GET change-of-address: %d %+v, want it with its four agencies", r.status, one)
	}
	if codes := func() []string {
		var c []string
		for _, a := range one.Attributes {
			c = append(c, a.Code)
		}
		return c
	}(); !slices.Contains(codes, "street") {
		t.Errorf("change-of-address attributes %v lack street", codes)
	}

	r = api.do(t, call{method: "GET", path: "/v1/services/moon-landing-permit"})
	if e := r.err(t); r.status != http.StatusNotFound || e.Code != "not_found" {
		t.Errorf("GET an unknown service: %d %+v, want 404 not_found", r.status, e)
	}
}

func TestDeskAPI_ListsServicesInTheDesksLanguageFallingBackToEnglish(t *testing.T) {
	t.Parallel()
	api := startIntake(t, 0, nil)
	type service struct {
		Code        string `json:"code"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Attributes  []struct {
			Code        string `json:"code"`
			Description string `json:"description"`
			Values      []struct {
				Key  string `json:"key"`
				Name string `json:"name"`
			} `json:"values"`
		} `json:"attributes"`
	}
	tests := []struct {
		name            string
		path, accept    string
		wantLang        string
		wantName        string // of driving-licence-renewal
		wantCategoryB   string // label of its category B
		wantAttribute   string // description of its licence_number
		wantDescription string
	}{
		{"Greek by ?lang", "/v1/services?lang=el", "", "el", "Ανανέωση άδειας οδήγησης", "Ελαφρά οχήματα", "Αριθμός άδειας οδήγησης", "Ανανέωση άδειας οδήγησης που λήγει ή έχει λήξει."},
		{"Portuguese by ?lang", "/v1/services?lang=pt", "", "pt", "Revalidação da carta de condução", "Ligeiros", "Número da carta de condução", "Revalidar uma carta de condução a caducar ou caducada."},
		{"Italian by Accept-Language", "/v1/services", "it-IT,it;q=0.9,en;q=0.5", "it", "Rinnovo della patente di guida", "Veicoli leggeri", "Numero della patente di guida", "Rinnovare una patente di guida in scadenza o scaduta."},
		{"?lang wins over Accept-Language", "/v1/services?lang=fr", "es", "fr", "Renouvellement du permis de conduire", "Véhicules légers", "Numéro du permis de conduire", "Renouveler un permis de conduire qui arrive à expiration ou qui a expiré."},
		{"English for a language the catalogue lacks", "/v1/services?lang=de", "", "en", "Driving licence renewal", "Light vehicles", "Driving licence number", "Renew a driving licence that is about to expire or has expired."},
		{"English by default", "/v1/services", "", "en", "Driving licence renewal", "Light vehicles", "Driving licence number", "Renew a driving licence that is about to expire or has expired."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.do(t, call{method: "GET", path: tt.path, acceptLanguage: tt.accept})
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", tt.path, r.status, r.body)
			}
			if got := r.header.Get("Content-Language"); got != tt.wantLang {
				t.Errorf("Content-Language %q, want %q", got, tt.wantLang)
			}
			var list struct {
				Services []service `json:"services"`
			}
			r.decode(t, &list)
			if len(list.Services) < 24 {
				t.Errorf("%d services, want at least 24", len(list.Services))
			}
			i := slices.IndexFunc(list.Services, func(s service) bool { return s.Code == "driving-licence-renewal" })
			if i < 0 {
				t.Fatal("no driving-licence-renewal")
			}
			s := list.Services[i]
			if s.Name != tt.wantName || s.Description != tt.wantDescription {
				t.Errorf("name %q, description %q; want %q, %q", s.Name, s.Description, tt.wantName, tt.wantDescription)
			}
			if s.Attributes[0].Description != tt.wantAttribute || s.Attributes[1].Values[1].Name != tt.wantCategoryB {
				t.Errorf("attribute %q, category B %q; want %q, %q", s.Attributes[0].Description, s.Attributes[1].Values[1].Name, tt.wantAttribute, tt.wantCategoryB)
			}
		})
	}
	r := api.do(t, call{method: "GET", path: "/v1/services/trademark-registration?lang=el"})
	var one service
	r.decode(t, &one)
	if one.Name != "Καταχώριση εμπορικού σήματος" {
		t.Errorf("GET trademark-registration in Greek: name %q", one.Name)
	}
}

func TestDeskAPI_Answers503UntilJetStreamStoresTheRequest(t *testing.T) {
	t.Parallel()
	flaky := &intaketest.FlakyPublisher{}
	flaky.Down.Store(true)
	api := startIntake(t, 0, func(p workers.Publisher) workers.Publisher {
		flaky.Next = p
		return flaky
	})

	r := api.submit(t, "key-1", changeOfAddressBody)
	if e := r.err(t); r.status != http.StatusServiceUnavailable || e.Code != "unavailable" {
		t.Fatalf("%d %+v, want 503 unavailable", r.status, e)
	}
	if r.header.Get("Retry-After") == "" {
		t.Errorf("a 503 without Retry-After")
	}
	asked := flaky.Asked()
	if len(asked) != 1 {
		t.Fatalf("publisher asked %d times, want 1", len(asked))
	}
	if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 0 {
		t.Fatalf("the events stream holds %d messages, want 0", n)
	}
	// Not stored, so not there for the desk.
	if r := api.do(t, call{method: "GET", path: "/v1/requests/" + asked[0], token: api.Token}); r.status != http.StatusNotFound {
		t.Errorf("GET the unstored request: %d, want 404", r.status)
	}

	flaky.Down.Store(false)
	if id := mustAccept(t, api.submit(t, "key-1", changeOfAddressBody)); id != asked[0] {
		t.Errorf("the retry answered %s, want the id first claimed, %s", id, asked[0])
	}
	if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 1 {
		t.Errorf("the events stream holds %d messages, want 1", n)
	}
	if r := api.do(t, call{method: "GET", path: "/v1/requests/" + asked[0], token: api.Token}); r.status != http.StatusOK {
		t.Errorf("GET the stored request: %d %s, want 200", r.status, r.body)
	}

	// Once stored, a retry answers from the database without publishing.
	if id := mustAccept(t, api.submit(t, "key-1", changeOfAddressBody)); id != asked[0] {
		t.Errorf("a later retry answered %s, want %s", id, asked[0])
	}
	if got := flaky.Asked(); !reflect.DeepEqual(got, []string{asked[0], asked[0]}) {
		t.Errorf("publisher asked for %v, want the same id twice and no more", got)
	}
}
