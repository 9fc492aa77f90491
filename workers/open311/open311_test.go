package open311_test

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/open311"
)

// The fields of each Open311 answer, in the order of the specification's
// examples (http://wiki.open311.org/GeoReport_v2). Requests leave out the
// location fields (address, address_id, zipcode, lat, long) and media_url:
// desk services are not located, and a citizen's address is personal data.
var (
	serviceFields    = []string{"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
	definitionFields = []string{"service_code", "attributes"}
	attributeFields  = []string{"variable", "code", "datatype", "required", "datatype_description", "order", "description"}
	listFields       = append(slices.Clone(attributeFields), "values")
	valueFields      = []string{"key", "name"}
	createdFields    = []string{"service_request_id", "service_notice", "account_id"}
	requestFields    = []string{"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
		"agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime"}
	tokenFields = []string{"service_request_id", "token"}
	errorFields = []string{"code", "description"}
)

// node is an XML element read generically: its name, its text and its
// children in document order.
type node struct {
	Name     string
	Text     string
	Children []*node
}

func (n *node) childNames() []string {
	var names []string
	for _, c := range n.Children {
		names = append(names, c.Name)
	}
	return names
}

// child returns the text of the only child called name.
func (n *node) child(t *testing.T, name string) string {
	t.Helper()
	var found []*node
	for _, c := range n.Children {
		if c.Name == name {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("<%s> has %d <%s>, want 1 (children %v)", n.Name, len(found), name, n.childNames())
	}
	return found[0].Text
}

// parseXML reads an Open311 XML answer with encoding/xml: it must start
// with the XML declaration, declare UTF-8, use no namespace, and hold one
// root element.
func parseXML(t *testing.T, body []byte) *node {
	t.Helper()
	if !strings.HasPrefix(string(body), `<?xml version="1.0" encoding="utf-8"?>`) {
		t.Fatalf("XML answer does not start with the XML declaration: %.80s", body)
	}
	dec := xml.NewDecoder(strings.NewReader(string(body)))
	var stack []*node
	var root *node
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parse XML: %v\n%s", err, body)
		}
		switch tok := tok.(type) {
		case xml.ProcInst:
			if tok.Target != "xml" || !strings.Contains(string(tok.Inst), `encoding="utf-8"`) {
				t.Errorf("XML declaration %q, want UTF-8", tok.Inst)
			}
		case xml.StartElement:
			if tok.Name.Space != "" || len(tok.Attr) > 0 {
				t.Errorf("<%s> has a namespace or attributes; Open311 XML has neither", tok.Name.Local)
			}
			n := &node{Name: tok.Name.Local}
			if len(stack) == 0 {
				if root != nil {
					t.Fatalf("XML answer has two root elements")
				}
				root = n
			} else {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, n)
			}
			stack = append(stack, n)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(tok)
			}
		case xml.EndElement:
			n := stack[len(stack)-1]
			if len(n.Children) > 0 {
				n.Text = ""
			}
			stack = stack[:len(stack)-1]
		}
	}
	if root == nil {
		t.Fatalf("XML answer has no element: %s", body)
	}
	return root
}

// jsonKeys lists an object's keys in document order.
func jsonKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s is not a JSON object", raw)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// jsonArray decodes a JSON answer whose top level is an array, as the
// Spark convention makes every Open311 list.
func jsonArray(t *testing.T, body []byte) []json.RawMessage {
	t.Helper()
	var list []json.RawMessage
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("JSON answer is not an array: %v\n%s", err, body)
	}
	return list
}

func sameFields(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s has fields %v, want %v", what, got, want)
	}
}

// deskAPI is Open311 served over HTTP, with a real intake, store and
// JetStream, and a desk registered with it.
type deskAPI struct {
	*intaketest.Desk
	srv *httptest.Server
}

// startIntake serves Open311 over a fresh intake. wrap, when set, wraps the
// real publisher.
func startIntake(t *testing.T, wrap func(workers.Publisher) workers.Publisher) *deskAPI {
	t.Helper()
	d := intaketest.Start(t, wrap)
	api, err := open311.New(open311.Config{Intake: d.Intake, Store: d.Store, Catalog: d.Catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new open311: %v", err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &deskAPI{Desk: d, srv: srv}
}

// reply is an HTTP answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d reply %s: %v", r.status, r.body, err)
	}
}

// open311 sends one Open311 request: form goes in the query string of a
// GET and as the form-encoded body of a POST.
func (api *deskAPI) open311(t *testing.T, method, path string, form url.Values, header ...string) reply {
	t.Helper()
	var body io.Reader
	target := api.srv.URL + path
	if method == http.MethodGet && len(form) > 0 {
		target += "?" + form.Encode()
	} else if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := api.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// wantContentType checks the content type the specification gives each format.
func wantContentType(t *testing.T, r reply, format string) {
	t.Helper()
	want := map[string]string{"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}[format]
	if got := r.header.Get("Content-Type"); got != want {
		t.Errorf("Content-Type %q, want %q", got, want)
	}
}

// wantOpen311Error checks an error answer in either format: the status, and
// the specification's error list with one error whose code and description
// are as expected.
func wantOpen311Error(t *testing.T, r reply, format string, status, code int, description string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
	}
	wantContentType(t, r, format)
	var gotCode, gotDesc string
	if format == "xml" {
		root := parseXML(t, r.body)
		if root.Name != "errors" || len(root.Children) != 1 || root.Children[0].Name != "error" {
			t.Fatalf("error answer %s, want <errors><error>", r.body)
		}
		sameFields(t, "<error>", root.Children[0].childNames(), errorFields)
		gotCode, gotDesc = root.Children[0].child(t, "code"), root.Children[0].child(t, "description")
	} else {
		list := jsonArray(t, r.body)
		if len(list) != 1 {
			t.Fatalf("error answer %s, want a list of one error", r.body)
		}
		sameFields(t, "error", jsonKeys(t, list[0]), errorFields)
		var e struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal(list[0], &e); err != nil {
			t.Fatalf("error %s: %v", list[0], err)
		}
		gotCode, gotDesc = strconv.Itoa(e.Code), e.Description
	}
	if want := strconv.Itoa(code); gotCode != want {
		t.Errorf("error code %s, want %s", gotCode, want)
	}
	if !strings.Contains(gotDesc, description) {
		t.Errorf("error description %q does not say %q", gotDesc, description)
	}
}

var formats = []string{"xml", "json"}

func TestOpen311_ListsServicesAsTheSpecificationShowsThem(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			r := api.open311(t, "GET", "/open311/v2/services."+format, nil)
			if r.status != http.StatusOK {
				t.Fatalf("GET services.%s: %d %s", format, r.status, r.body)
			}
			wantContentType(t, r, format)
			type service struct {
				Code, Name, Description, Metadata, Type, Keywords, Group string
			}
			var list []service
			if format == "xml" {
				root := parseXML(t, r.body)
				if root.Name != "services" {
					t.Fatalf("root <%s>, want <services>", root.Name)
				}
				for _, s := range root.Children {
					if s.Name != "service" {
						t.Fatalf("<services> holds <%s>, want <service>", s.Name)
					}
					sameFields(t, "<service>", s.childNames(), serviceFields)
					list = append(list, service{s.child(t, "service_code"), s.child(t, "service_name"), s.child(t, "description"),
						s.child(t, "metadata"), s.child(t, "type"), s.child(t, "keywords"), s.child(t, "group")})
				}
			} else {
				for _, raw := range jsonArray(t, r.body) {
					sameFields(t, "service", jsonKeys(t, raw), serviceFields)
					var s struct {
						Code        string `json:"service_code"`
						Name        string `json:"service_name"`
						Description string `json:"description"`
						Metadata    bool   `json:"metadata"`
						Type        string `json:"type"`
						Keywords    string `json:"keywords"`
						Group       string `json:"group"`
					}
					if err := json.Unmarshal(raw, &s); err != nil {
						t.Fatal(err)
					}
					list = append(list, service{s.Code, s.Name, s.Description, map[bool]string{true: "true", false: "false"}[s.Metadata], s.Type, s.Keywords, s.Group})
				}
			}
			if len(list) < 24 {
				t.Errorf("%d services, want at least 24", len(list))
			}
			i := slices.IndexFunc(list, func(s service) bool { return s.Code == "change-of-address" })
			if i < 0 {
				t.Fatal("no change-of-address")
			}
			want := service{"change-of-address", "Change of address", "Change the citizen's address with every agency that holds it.",
				"true", "realtime", "address, move, residence, morada, mudança de casa", "civil-registry"}
			if list[i] != want {
				t.Errorf("change-of-address = %+v, want %+v", list[i], want)
			}
		})
	}
}

func TestOpen311_SpeaksTheLanguageAskedFor(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	tests := []struct {
		name     string
		query    url.Values
		header   []string
		wantName string
	}{
		{"Greek by ?lang", url.Values{"lang": {"el"}}, nil, "Αλλαγή διεύθυνσης"},
		{"Portuguese by Accept-Language", nil, []string{"Accept-Language", "pt-PT,pt;q=0.9"}, "Alteração de morada"},
		{"Spanish", url.Values{"lang": {"es"}}, nil, "Cambio de domicilio"},
		{"French", url.Values{"lang": {"fr"}}, nil, "Changement d'adresse"},
		{"Italian", url.Values{"lang": {"it"}}, nil, "Cambio di indirizzo"},
		{"English for a language the catalogue lacks", url.Values{"lang": {"fi"}}, nil, "Change of address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.open311(t, "GET", "/open311/v2/services.xml", tt.query, tt.header...)
			root := parseXML(t, r.body)
			var names []string
			for _, s := range root.Children {
				names = append(names, s.child(t, "service_name"))
			}
			if !slices.Contains(names, tt.wantName) {
				t.Errorf("service names %v lack %q", names, tt.wantName)
			}
		})
	}
	r := api.open311(t, "GET", "/open311/v2/services/driving-licence-renewal.json", url.Values{"lang": {"el"}})
	var def struct {
		Attributes []struct {
			Code        string `json:"code"`
			Description string `json:"description"`
			Values      []struct {
				Key  string `json:"key"`
				Name string `json:"name"`
			} `json:"values"`
		} `json:"attributes"`
	}
	r.decode(t, &def)
	if got := def.Attributes[0].Description; got != "Αριθμός ταυτότητας του εξυπηρετούμενου πολίτη" {
		t.Errorf("the citizen's national ID is described as %q in Greek", got)
	}
	if got := def.Attributes[3].Values[0].Name; def.Attributes[3].Code != "categories" || got != "Μοτοσικλέτες" {
		t.Errorf("attribute 3 is %s, its first label %q; want categories, Μοτοσικλέτες", def.Attributes[3].Code, got)
	}
}

func TestOpen311_DefinesAServiceWithTheCitizenFirst(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	type value struct{ Key, Name string }
	type attribute struct {
		Variable, Code, Datatype, Required, DatatypeDescription, Order, Description string
		Values                                                                      []value
	}
	want := []attribute{
		{"true", "citizen_national_id", "string", "true", "", "1", "National ID number of the citizen served", nil},
		{"true", "citizen_name", "string", "true", "", "2", "Full name of the citizen served", nil},
		{"true", "licence_number", "string", "true", "", "3", "Driving licence number", nil},
		{"true", "categories", "multivaluelist", "true", "", "4", "Categories to renew", []value{
			{"A", "Motorcycles"}, {"B", "Light vehicles"}, {"C", "Heavy goods vehicles"}, {"D", "Heavy passenger vehicles"}}},
		{"true", "medical_certificate_date", "datetime", "false", "", "5", "Date of the medical certificate", nil},
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			r := api.open311(t, "GET", "/open311/v2/services/driving-licence-renewal."+format, url.Values{"jurisdiction_id": {"lisboa"}})
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			wantContentType(t, r, format)
			var got []attribute
			var code string
			if format == "xml" {
				root := parseXML(t, r.body)
				if root.Name != "service_definition" {
					t.Fatalf("root <%s>, want <service_definition>", root.Name)
				}
				sameFields(t, "<service_definition>", root.childNames(), definitionFields)
				code = root.child(t, "service_code")
				for _, a := range root.Children[1].Children {
					if a.Name != "attribute" {
						t.Fatalf("<attributes> holds <%s>", a.Name)
					}
					at := attribute{a.child(t, "variable"), a.child(t, "code"), a.child(t, "datatype"), a.child(t, "required"),
						a.child(t, "datatype_description"), a.child(t, "order"), a.child(t, "description"), nil}
					if at.Datatype == "multivaluelist" || at.Datatype == "singlevaluelist" {
						sameFields(t, "<attribute>", a.childNames(), listFields)
						for _, v := range a.Children[len(a.Children)-1].Children {
							sameFields(t, "<value>", v.childNames(), valueFields)
							at.Values = append(at.Values, value{v.child(t, "key"), v.child(t, "name")})
						}
					} else {
						sameFields(t, "<attribute>", a.childNames(), attributeFields)
					}
					got = append(got, at)
				}
			} else {
				raw := json.RawMessage(r.body)
				sameFields(t, "service_definition", jsonKeys(t, raw), definitionFields)
				var def struct {
					Code       string            `json:"service_code"`
					Attributes []json.RawMessage `json:"attributes"`
				}
				r.decode(t, &def)
				code = def.Code
				for _, rawAttr := range def.Attributes {
					var a struct {
						Variable            bool    `json:"variable"`
						Code                string  `json:"code"`
						Datatype            string  `json:"datatype"`
						Required            bool    `json:"required"`
						DatatypeDescription *string `json:"datatype_description"`
						Order               int     `json:"order"`
						Description         string  `json:"description"`
						Values              []value `json:"values"`
					}
					if err := json.Unmarshal(rawAttr, &a); err != nil {
						t.Fatal(err)
					}
					if a.DatatypeDescription != nil {
						t.Errorf("datatype_description %q, want null as in the specification's example", *a.DatatypeDescription)
					}
					if a.Values != nil {
						sameFields(t, "attribute", jsonKeys(t, rawAttr), listFields)
					} else {
						sameFields(t, "attribute", jsonKeys(t, rawAttr), attributeFields)
					}
					b := map[bool]string{true: "true", false: "false"}
					got = append(got, attribute{b[a.Variable], a.Code, a.Datatype, b[a.Required], "", strconv.Itoa(a.Order), a.Description, a.Values})
				}
			}
			if code != "driving-licence-renewal" {
				t.Errorf("service_code %q", code)
			}
			if len(got) != len(want) {
				t.Fatalf("attributes %+v, want %+v", got, want)
			}
			for i := range want {
				if !slices.Equal(got[i].Values, want[i].Values) || got[i].Code != want[i].Code || got[i].Order != want[i].Order ||
					got[i].Datatype != want[i].Datatype || got[i].Required != want[i].Required || got[i].Variable != want[i].Variable ||
					got[i].Description != want[i].Description || got[i].DatatypeDescription != want[i].DatatypeDescription {
					t.Errorf("attribute %d = %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
	for _, format := range formats {
		r := api.open311(t, "GET", "/open311/v2/services/moon-landing-permit."+format, nil)
		wantOpen311Error(t, r, format, http.StatusNotFound, http.StatusNotFound, `service_code "moon-landing-permit" was not found`)
		r = api.open311(t, "GET", "/open311/v2/services/birth-certificate."+format, url.Values{"jurisdiction_id": {"atlantis"}})
		wantOpen311Error(t, r, format, http.StatusNotFound, http.StatusNotFound, `jurisdiction_id "atlantis" was not found`)
		r = api.open311(t, "GET", "/open311/v2/services."+format, url.Values{"jurisdiction_id": {"atlantis"}})
		wantOpen311Error(t, r, format, http.StatusNotFound, http.StatusNotFound, `jurisdiction_id "atlantis" was not found`)
	}
}

// licenceForm is a valid POST requests form for a driving-licence renewal
// of two categories, its citizen named in Greek.
func licenceForm(api *deskAPI) url.Values {
	return url.Values{
		"api_key":                             {api.Token},
		"jurisdiction_id":                     {"lisboa"},
		"service_code":                        {"driving-licence-renewal"},
		"attribute[citizen_national_id]":      {"87654321"},
		"attribute[citizen_name]":             {"Μαρία Παπαδοπούλου"},
		"attribute[licence_number]":           {"L-7654321"},
		"attribute[categories][]":             {"B", "C"},
		"attribute[medical_certificate_date]": {"2026-01-15"},
		"account_id":                          {"mediador-7"},
		"lat":                                 {"38.7139"},
		"long":                                {"-9.1394"},
		"email":                               {"maria@example.org"},
		"description":                         {"Renovação antes da viagem"},
	}
}

// createdID checks a POST requests answer in either format and returns the
// service_request_id.
func createdID(t *testing.T, r reply, format string) (id, notice, account string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("POST requests.%s: %d %s", format, r.status, r.body)
	}
	wantContentType(t, r, format)
	if format == "xml" {
		root := parseXML(t, r.body)
		if root.Name != "service_requests" || len(root.Children) != 1 || root.Children[0].Name != "request" {
			t.Fatalf("answer %s, want <service_requests><request>", r.body)
		}
		req := root.Children[0]
		sameFields(t, "<request>", req.childNames(), createdFields)
		return req.child(t, "service_request_id"), req.child(t, "service_notice"), req.child(t, "account_id")
	}
	list := jsonArray(t, r.body)
	if len(list) != 1 {
		t.Fatalf("answer %s, want a list of one", r.body)
	}
	sameFields(t, "request", jsonKeys(t, list[0]), createdFields)
	var c struct {
		ID      string  `json:"service_request_id"`
		Notice  string  `json:"service_notice"`
		Account *string `json:"account_id"`
	}
	if err := json.Unmarshal(list[0], &c); err != nil {
		t.Fatal(err)
	}
	if c.Account == nil {
		return c.ID, c.Notice, ""
	}
	return c.ID, c.Notice, *c.Account
}

// published returns the request published on the events stream with id.
func published(t *testing.T, api *deskAPI, id string) events.Request {
	t.Helper()
	for _, m := range natstest.Messages(t, api.JS, events.EventsStream) {
		var req events.Request
		if json.Unmarshal(m.Data, &req) == nil && req.ID == id {
			return req
		}
	}
	t.Fatalf("request %s was not published", id)
	return events.Request{}
}

func TestOpen311_SubmitsAFormEncodedRequestThroughTheDeskPipeline(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			form := licenceForm(api)
			form.Set("attribute[licence_number]", "L-"+format)
			id, notice, account := createdID(t, api.open311(t, "POST", "/open311/v2/requests."+format, form), format)
			if id == "" || account != "mediador-7" {
				t.Errorf("service_request_id %q, account_id %q; want an id and the mediator", id, account)
			}
			if !strings.HasPrefix(notice, "Sent to Institute for Mobility and Transport. Expected by ") {
				t.Errorf("service_notice %q, want the agency and the expected date", notice)
			}
			req := published(t, api, id)
			if req.Citizen.NationalID != "87654321" || req.Citizen.Name != "Μαρία Παπαδοπούλου" {
				t.Errorf("published citizen does not match the form (UTF-8 lost?)")
			}
			if req.ServiceCode != "driving-licence-renewal" || req.Mediator != "mediador-7" || req.DeskID != api.Desk.Desk.ID || req.Municipality != "lisboa" {
				t.Errorf("published %s by %s of %s/%s, want the form's service, mediator and desk", req.ServiceCode, req.Mediator, req.DeskID, req.Municipality)
			}
			wantAttrs := map[string]string{
				"licence_number": `"L-` + format + `"`, "categories": `["B","C"]`, "medical_certificate_date": `"2026-01-15"`,
			}
			if len(req.Attributes) != len(wantAttrs) {
				t.Errorf("published attributes %v, want %v (location, contact and description are not kept)", req.Attributes, wantAttrs)
			}
			for k, v := range wantAttrs {
				if string(req.Attributes[k]) != v {
					t.Errorf("attribute %s = %s, want %s", k, req.Attributes[k], v)
				}
			}
			// Sent again, as a client does after a timeout: the same request.
			again, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests."+format, form), format)
			if again != id {
				t.Errorf("the same form again made request %s, want %s", again, id)
			}
			// The desk reads it back.
			if _, err := api.Store.RequestForDesk(t.Context(), api.Desk.Desk.ID, id); err != nil {
				t.Errorf("read request %s back: %v", id, err)
			}
		})
	}
	if n := len(natstest.Messages(t, api.JS, events.EventsStream)); n != 2 {
		t.Errorf("%d requests published, want 2: one per distinct form", n)
	}
}

func TestOpen311_ReadsFormEncodingAsClientsWriteIt(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	tests := []struct {
		name   string
		body   string // form-encoded by hand; API_KEY is replaced by the desk's token
		header []string
		want   map[string]string // published attributes
		name_  string            // the citizen's published name
	}{
		{
			name: "multi-value attribute, one value per attribute[code][]",
			body: "api_key=API_KEY&service_code=adse-reimbursement&attribute%5Bcitizen_national_id%5D=11223344&attribute%5Bcitizen_name%5D=Jo%C3%A3o+Concei%C3%A7%C3%A3o" +
				"&attribute%5Badse_number%5D=A-1&attribute%5Bamount%5D=42.5&attribute%5Bexpense_date%5D=2026-02-01T10%3A00%3A00%2B01%3A00" +
				"&attribute%5Bexpense_types%5D%5B%5D=medicines&attribute%5Bexpense_types%5D%5B%5D=dental&attribute%5Bexpense_types%5D%5B%5D=",
			want:  map[string]string{"adse_number": `"A-1"`, "amount": `42.5`, "expense_date": `"2026-02-01T10:00:00+01:00"`, "expense_types": `["medicines","dental"]`},
			name_: "João Conceição",
		},
		{
			name: "brackets unescaped, a multi-value attribute sent once without []",
			body: "api_key=API_KEY&service_code=employment-registration&attribute[citizen_national_id]=55667788&first_name=%CE%93%CE%B9%CF%8E%CF%81%CE%B3%CE%BF%CF%82&last_name=%CE%A0%CE%B1%CF%80%CE%B1%CE%B4%CF%8C%CF%80%CE%BF%CF%85%CE%BB%CE%BF%CF%82" +
				"&attribute[education]=higher&attribute[occupation]=Engenheiro+de+som&attribute[availability]=part_time&attribute[languages]=el",
			want:  map[string]string{"education": `"higher"`, "occupation": `"Engenheiro de som"`, "availability": `"part_time"`, "languages": `["el"]`},
			name_: "Γιώργος Παπαδόπουλος",
		},
		{
			name: "empty optional attributes count as absent",
			body: "api_key=API_KEY&service_code=criminal-record-certificate&attribute[citizen_national_id]=99887766&attribute[citizen_name]=Rui+Lopes" +
				"&attribute[purpose]=employment&attribute[copies]=&jurisdiction_id=",
			want:  map[string]string{"purpose": `"employment"`},
			name_: "Rui Lopes",
		},
		{
			name: "Greek and Portuguese text in attributes, with a charset on the content type",
			body: "api_key=API_KEY&service_code=change-of-address&attribute[citizen_national_id]=10203040&attribute[citizen_name]=%CE%95%CE%BB%CE%AD%CE%BD%CE%B7" +
				"&attribute[street]=Rua+da+Concei%C3%A7%C3%A3o+12%2C+2%C2%BA+Esq.&attribute[postal_code]=1100-151&attribute[locality]=%CE%91%CE%B8%CE%AE%CE%BD%CE%B1",
			want:  map[string]string{"street": `"Rua da Conceição 12, 2º Esq."`, "postal_code": `"1100-151"`, "locality": `"Αθήνα"`},
			name_: "Ελένη",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.ReplaceAll(tt.body, "API_KEY", url.QueryEscape(api.Token))
			req, err := http.NewRequestWithContext(t.Context(), "POST", api.srv.URL+"/open311/v2/requests.json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
			resp, err := api.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id, _, _ := createdID(t, reply{status: resp.StatusCode, header: resp.Header, body: data}, "json")
			pub := published(t, api, id)
			if pub.Citizen.Name != tt.name_ {
				t.Errorf("citizen name %q, want %q", pub.Citizen.Name, tt.name_)
			}
			if len(pub.Attributes) != len(tt.want) {
				t.Errorf("attributes %v, want %v", pub.Attributes, tt.want)
			}
			for k, v := range tt.want {
				if string(pub.Attributes[k]) != v {
					t.Errorf("attribute %s = %s, want %s", k, pub.Attributes[k], v)
				}
			}
		})
	}
}

func TestOpen311_RefusesWhatTheSpecificationRefuses(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	other, otherToken, err := api.Store.CreateDesk(t.Context(), "porto", "Loja do Cidadão Porto")
	if err != nil {
		t.Fatal(err)
	}
	_ = other
	change := func(edit func(f url.Values)) url.Values {
		f := licenceForm(api)
		edit(f)
		return f
	}
	tests := []struct {
		name        string
		form        url.Values
		contentType string
		status      int
		code        int
		description string
	}{
		{"no api_key", change(func(f url.Values) { f.Del("api_key") }), "", 403, 403, "api_key was not provided"},
		{"an api_key that is no desk's token", change(func(f url.Values) { f.Set("api_key", "sfd_not-a-token") }), "", 403, 403, "invalid api_key"},
		{"another desk's jurisdiction", change(func(f url.Values) { f.Set("jurisdiction_id", "porto") }), "", 404, 404, `jurisdiction_id "porto" was not found`},
		{"a jurisdiction that does not exist", change(func(f url.Values) { f.Set("jurisdiction_id", "atlantis") }), "", 404, 404, `jurisdiction_id "atlantis" was not found`},
		{"another desk's token with this desk's jurisdiction", change(func(f url.Values) { f.Set("api_key", otherToken) }), "", 404, 404, `jurisdiction_id "lisboa" was not found`},
		{"no service_code", change(func(f url.Values) { f.Del("service_code") }), "", 400, 400, "service_code was not provided"},
		{"an unknown service_code", change(func(f url.Values) { f.Set("service_code", "moon-landing-permit") }), "", 404, 404, `service_code "moon-landing-permit" was not found`},
		{"no citizen", change(func(f url.Values) { f.Del("attribute[citizen_national_id]") }), "", 400, 400, "attribute[citizen_national_id]: citizen.national_id is required"},
		{"no citizen name", change(func(f url.Values) { f.Del("attribute[citizen_name]") }), "", 400, 400, "attribute[citizen_name]: citizen.name is required"},
		{"a required attribute missing", change(func(f url.Values) { f.Del("attribute[licence_number]") }), "", 400, 400, `attribute[licence_number]: attribute "licence_number" is required`},
		{"a value the list does not have", change(func(f url.Values) { f["attribute[categories][]"] = []string{"B", "Z"} }), "", 400, 400, `attribute[categories]: attribute "categories" has no value "Z"`},
		{"two values for a single-value attribute", change(func(f url.Values) { f["attribute[licence_number]"] = []string{"L-1", "L-2"} }), "", 400, 400, "attribute[licence_number]: takes one value, got 2"},
		{"a date that is not one", change(func(f url.Values) { f.Set("attribute[medical_certificate_date]", "yesterday") }), "", 400, 400, "attribute[medical_certificate_date]: "},
		{"an attribute the service does not have", change(func(f url.Values) { f.Set("attribute[colour]", "blue") }), "", 400, 400, `attribute[colour]: service "driving-licence-renewal" has no attribute "colour"`},
		{"a JSON body", licenceForm(api), "application/json", 400, 400, "application/x-www-form-urlencoded"},
	}
	for _, format := range formats {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var r reply
				if tt.contentType == "" {
					r = api.open311(t, "POST", "/open311/v2/requests."+format, tt.form)
				} else {
					r = api.open311(t, "POST", "/open311/v2/requests."+format, tt.form, "Content-Type", tt.contentType)
				}
				wantOpen311Error(t, r, format, tt.status, tt.code, tt.description)
			})
		}
	}
	form := change(func(f url.Values) {
		f.Set("service_code", "tax-id-certificate")
		f.Set("attribute[year]", "two thousand")
	})
	form.Del("attribute[licence_number]")
	form.Del("attribute[categories][]")
	form.Del("attribute[medical_certificate_date]")
	form.Set("attribute[tax_number]", "123456789")
	wantOpen311Error(t, api.open311(t, "POST", "/open311/v2/requests.xml", form), "xml", 400, 400, `attribute[year]: attribute "year" must be a number`)

	// A key of the client's own: the same key with another body is refused.
	key := []string{"Idempotency-Key", "fms-report-81"}
	first, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.json", licenceForm(api), key...), "json")
	again, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.json", licenceForm(api), key...), "json")
	if first != again {
		t.Errorf("the same Idempotency-Key and form gave %s then %s", first, again)
	}
	r := api.open311(t, "POST", "/open311/v2/requests.json", change(func(f url.Values) { f.Set("attribute[licence_number]", "L-0") }), key...)
	wantOpen311Error(t, r, "json", 400, 409, "Idempotency-Key was used for a different request")

	for _, path := range []string{"/open311/v2/requests", "/open311/v2/requests.csv", "/open311/v2/nothing.xml", "/open311/v3/services.xml"} {
		r := api.open311(t, "GET", path, url.Values{"api_key": {api.Token}})
		wantOpen311Error(t, r, "xml", 404, 404, "")
	}
}

func TestOpen311_Answers503WhenTheRequestCannotBeStored(t *testing.T) {
	t.Parallel()
	flaky := &intaketest.FlakyPublisher{}
	flaky.Down.Store(true)
	api := startIntake(t, func(p workers.Publisher) workers.Publisher {
		flaky.Next = p
		return flaky
	})
	for _, format := range formats {
		r := api.open311(t, "POST", "/open311/v2/requests."+format, licenceForm(api))
		wantOpen311Error(t, r, format, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "send it again")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: a 503 without Retry-After", format)
		}
	}
	flaky.Down.Store(false)
	id, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.xml", licenceForm(api)), "xml")
	if asked := flaky.Asked(); asked[0] != id {
		t.Errorf("the retry made request %s, want the one first claimed, %s", id, asked[0])
	}
}

// project records a request and its agencies' final statuses, as the
// projector would once the agencies have answered.
func project(t *testing.T, api *deskAPI, req events.Request, final events.Status, at time.Time) {
	t.Helper()
	svc, _ := eventstest.Catalog(t).Service(req.ServiceCode)
	changes := []events.Change{{Request: &req}, {Event: &events.StatusEvent{
		Schema: events.SchemaStatus, ID: events.EventID(req.ID, "", events.StatusRouted), RequestID: req.ID,
		Status: events.StatusRouted, At: at, Actor: events.SourceRouter, Agencies: svc.Agencies,
	}}}
	for _, a := range svc.Agencies {
		changes = append(changes, events.Change{Event: &events.StatusEvent{
			Schema: events.SchemaStatus, ID: events.EventID(req.ID, a, final), RequestID: req.ID, Agency: a,
			Status: final, At: at.Add(time.Second), Actor: "agency:" + a, Note: "Certificado emitido",
		}})
	}
	for i, err := range api.Store.Project(t.Context(), changes) {
		if err != nil {
			t.Fatalf("project change %d: %v", i, err)
		}
	}
}

// requestView is an entry of GET requests, read from either format.
type requestView struct {
	ID, Status, StatusNotes, ServiceName, ServiceCode, Description, Agency, Notice string
	Requested, Updated, Expected                                                   string
}

// readEntries reads a list answer in either format: root holds one item
// per entry, each with exactly fields, in that order; an empty or null
// field reads as "".
func readEntries(t *testing.T, r reply, format, root, item string, fields []string) []map[string]string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	wantContentType(t, r, format)
	var out []map[string]string
	if format == "xml" {
		doc := parseXML(t, r.body)
		if doc.Name != root {
			t.Fatalf("root <%s>, want <%s>", doc.Name, root)
		}
		for _, e := range doc.Children {
			if e.Name != item {
				t.Fatalf("<%s> holds <%s>", root, e.Name)
			}
			sameFields(t, "<"+item+">", e.childNames(), fields)
			entry := make(map[string]string, len(fields))
			for _, f := range fields {
				entry[f] = e.child(t, f)
			}
			out = append(out, entry)
		}
		return out
	}
	for _, raw := range jsonArray(t, r.body) {
		sameFields(t, item, jsonKeys(t, raw), fields)
		var values map[string]*string
		if err := json.Unmarshal(raw, &values); err != nil {
			t.Fatalf("%s %s: %v", item, raw, err)
		}
		entry := make(map[string]string, len(fields))
		for _, f := range fields {
			if values[f] != nil {
				entry[f] = *values[f]
			}
		}
		out = append(out, entry)
	}
	return out
}

func readRequests(t *testing.T, r reply, format string) []requestView {
	t.Helper()
	var out []requestView
	for _, q := range readEntries(t, r, format, "service_requests", "request", requestFields) {
		out = append(out, requestView{q["service_request_id"], q["status"], q["status_notes"], q["service_name"], q["service_code"],
			q["description"], q["agency_responsible"], q["service_notice"], q["requested_datetime"], q["updated_datetime"], q["expected_datetime"]})
	}
	return out
}

func ids(views []requestView) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.ID)
	}
	return out
}

func TestOpen311_ReadsRequestsBackWithoutPersonalData(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	submit := func(edit func(f url.Values)) string {
		f := licenceForm(api)
		edit(f)
		id, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.xml", f), "xml")
		return id
	}
	licence := submit(func(f url.Values) {})
	record := submit(func(f url.Values) {
		f.Set("service_code", "criminal-record-certificate")
		for _, k := range []string{"attribute[licence_number]", "attribute[categories][]", "attribute[medical_certificate_date]"} {
			f.Del(k)
		}
		f.Set("attribute[purpose]", "employment")
	})
	address := submit(func(f url.Values) {
		f.Set("service_code", "change-of-address")
		for _, k := range []string{"attribute[licence_number]", "attribute[categories][]", "attribute[medical_certificate_date]"} {
			f.Del(k)
		}
		f.Set("attribute[street]", "Rua Augusta 1")
		f.Set("attribute[postal_code]", "1100-048")
		f.Set("attribute[locality]", "Lisboa")
	})
	// The certificate is done; the change of address was refused.
	now := time.Now().UTC().Truncate(time.Second)
	project(t, api, published(t, api, record), events.StatusCompleted, now)
	project(t, api, published(t, api, address), events.StatusRejected, now)
	// Another desk's request is never shown.
	other, otherToken, err := api.Store.CreateDesk(t.Context(), "lisboa", "Junta de Freguesia de Arroios")
	if err != nil {
		t.Fatal(err)
	}
	_ = other
	theirs := licenceForm(api)
	theirs.Set("api_key", otherToken)
	theirID, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.json", theirs), "json")

	key := url.Values{"api_key": {api.Token}}
	with := func(kv ...string) url.Values {
		q := url.Values{"api_key": {api.Token}}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Add(kv[i], kv[i+1])
		}
		return q
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			path := "/open311/v2/requests." + format
			r := api.open311(t, "GET", path, key)
			all := readRequests(t, r, format)
			if got, want := ids(all), []string{address, record, licence}; !slices.Equal(got, want) {
				t.Fatalf("GET requests listed %v, want the desk's three, newest first: %v", got, want)
			}
			for _, personal := range []string{"87654321", "Μαρία", "Παπαδοπούλου", "L-7654321", "Rua Augusta", "1100-048", "mediador-7", "maria@example.org", "38.7139"} {
				if strings.Contains(string(r.body), personal) {
					t.Errorf("GET requests shows %q, which is personal data", personal)
				}
			}
			byID := map[string]requestView{}
			for _, v := range all {
				byID[v.ID] = v
				for _, ts := range []string{v.Requested, v.Updated, v.Expected} {
					if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
						t.Errorf("%s: date-time %q is not ISO 8601 with a time zone", v.ID, ts)
					}
				}
				if v.Description != "" {
					t.Errorf("%s: description %q, want none", v.ID, v.Description)
				}
			}
			l := byID[licence]
			if l.Status != "open" || l.StatusNotes != "" || l.ServiceName != "Driving licence renewal" || l.ServiceCode != "driving-licence-renewal" ||
				l.Agency != "Institute for Mobility and Transport" || !strings.HasPrefix(l.Notice, "Sent to Institute for Mobility and Transport. Expected by ") {
				t.Errorf("licence request = %+v", l)
			}
			requested, _ := time.Parse(time.RFC3339, l.Requested)
			expected, _ := time.Parse(time.RFC3339, l.Expected)
			if d := expected.Sub(requested); d != 240*time.Hour {
				t.Errorf("expected_datetime is %v after requested_datetime, want the SLA, 240h", d)
			}
			if c := byID[record]; c.Status != "closed" || c.StatusNotes != "Certificado emitido" || c.Agency != "Criminal Records Office" {
				t.Errorf("completed request = %+v, want closed with the agency's note", c)
			}
			if c := byID[record]; c.Updated != w3(now.Add(time.Second)) {
				t.Errorf("closed request updated %s, want the time it closed, %s", c.Updated, w3(now.Add(time.Second)))
			}
			if a := byID[address]; a.Status != "closed" || a.Agency != "Institute of Registries and Notary, Tax and Customs Authority, Social Security, National Health Service" {
				t.Errorf("rejected change of address = %+v, want closed, handled by four agencies", a)
			}

			filters := []struct {
				name  string
				query url.Values
				want  []string
			}{
				{"open", with("status", "open"), []string{licence}},
				{"closed", with("status", "closed"), []string{address, record}},
				{"open and closed", with("status", "open,closed"), []string{address, record, licence}},
				{"by service, comma list", with("service_code", "driving-licence-renewal,change-of-address"), []string{address, licence}},
				{"by service and status", with("service_code", "change-of-address", "status", "open"), nil},
				{"by id, comma list, overriding the rest", with("service_request_id", licence+","+theirID+", "+record, "status", "closed", "service_code", "nothing"), []string{record, licence}},
				{"in a window that holds them", with("start_date", w3(now.Add(-time.Hour)), "end_date", w3(now.Add(time.Hour))), []string{address, record, licence}},
				{"in a window before them", with("start_date", "2026-01-01T00:00:00Z", "end_date", "2026-01-31T00:00:00+01:00"), nil},
				{"from a start date, for 90 days", with("start_date", w3(now.Add(-89*24*time.Hour))), []string{address, record, licence}},
				{"until an end date, for 90 days", with("end_date", w3(now.Add(-91*24*time.Hour))), nil},
				{"in a jurisdiction that is the desk's", with("jurisdiction_id", "lisboa"), []string{address, record, licence}},
			}
			for _, f := range filters {
				got := ids(readRequests(t, api.open311(t, "GET", path, f.query), format))
				if !slices.Equal(got, f.want) {
					t.Errorf("%s: listed %v, want %v", f.name, got, f.want)
				}
			}

			refusals := []struct {
				name   string
				query  url.Values
				status int
				desc   string
			}{
				{"no api_key", url.Values{"status": {"open"}}, 403, "api_key was not provided"},
				{"an unknown api_key", url.Values{"api_key": {"nope"}}, 403, "invalid api_key"},
				{"another jurisdiction", with("jurisdiction_id", "porto"), 404, `jurisdiction_id "porto" was not found`},
				{"an unknown status", with("status", "pending"), 400, `status "pending" is neither open nor closed`},
				{"a bad date", with("start_date", "last week"), 400, `start_date "last week" is not a w3 date-time`},
				{"a window over 90 days", with("start_date", "2026-01-01T00:00:00Z", "end_date", "2026-06-01T00:00:00Z"), 400, "may not span more than 90 days"},
				{"an end before the start", with("start_date", "2026-02-01T00:00:00Z", "end_date", "2026-01-01T00:00:00Z"), 400, "end_date is before start_date"},
			}
			for _, rf := range refusals {
				wantOpen311Error(t, api.open311(t, "GET", path, rf.query), format, rf.status, rf.status, rf.desc)
			}

			// One request, and a token, which is its id.
			one := readRequests(t, api.open311(t, "GET", "/open311/v2/requests/"+record+"."+format, with("lang", "el")), format)
			if len(one) != 1 || one[0] != (requestView{record, "closed", "Certificado emitido", "Απόσπασμα ποινικού μητρώου", "criminal-record-certificate", "",
				"Υπηρεσία Ποινικού Μητρώου", one[0].Notice, byID[record].Requested, byID[record].Updated, byID[record].Expected}) {
				t.Errorf("GET requests/%s in Greek = %+v", record, one)
			}
			if !strings.Contains(one[0].Notice, "Υπηρεσία Ποινικού Μητρώου") {
				t.Errorf("Greek service_notice %q", one[0].Notice)
			}
			wantOpen311Error(t, api.open311(t, "GET", "/open311/v2/requests/"+theirID+"."+format, key), format, 404, 404, "was not found")
			// Without api_key, as clients that send it only with a POST read
			// back: the same public fields, by ID alone, of any desk's.
			public := api.open311(t, "GET", "/open311/v2/requests/"+record+"."+format, url.Values{"lang": {"el"}})
			if got := readRequests(t, public, format); len(got) != 1 || got[0] != one[0] {
				t.Errorf("GET requests/%s without api_key = %+v, want what the desk reads, %+v", record, got, one)
			}
			if got := readRequests(t, api.open311(t, "GET", path, url.Values{"service_request_id": {theirID + "," + record}}), format); !slices.Equal(ids(got), []string{theirID, record}) &&
				!slices.Equal(ids(got), []string{record, theirID}) {
				t.Errorf("GET requests by service_request_id without api_key listed %v, want both", ids(got))
			}
			for _, personal := range []string{"87654321", "Μαρία", "Rua Augusta", "mediador-7", "desk-"} {
				if strings.Contains(string(public.body), personal) {
					t.Errorf("a public read shows %q", personal)
				}
			}
			wantOpen311Error(t, api.open311(t, "GET", "/open311/v2/requests/no-such-request."+format, nil), format, 404, 404, "was not found")
			wantOpen311Error(t, api.open311(t, "GET", path, url.Values{"status": {"open"}}), format, 403, 403, "api_key")

			r = api.open311(t, "GET", "/open311/v2/tokens/"+licence+"."+format, key)
			if r.status != http.StatusOK {
				t.Fatalf("GET tokens: %d %s", r.status, r.body)
			}
			wantContentType(t, r, format)
			var gotID, gotToken string
			if format == "xml" {
				root := parseXML(t, r.body)
				if root.Name != "service_requests" || len(root.Children) != 1 {
					t.Fatalf("tokens answer %s", r.body)
				}
				sameFields(t, "<request>", root.Children[0].childNames(), tokenFields)
				gotID, gotToken = root.Children[0].child(t, "service_request_id"), root.Children[0].child(t, "token")
			} else {
				list := jsonArray(t, r.body)
				sameFields(t, "request", jsonKeys(t, list[0]), tokenFields)
				var tk struct {
					ID    string `json:"service_request_id"`
					Token string `json:"token"`
				}
				_ = json.Unmarshal(list[0], &tk)
				gotID, gotToken = tk.ID, tk.Token
			}
			if gotID != licence || gotToken != licence {
				t.Errorf("tokens/%s answered id %q token %q", licence, gotID, gotToken)
			}
			wantOpen311Error(t, api.open311(t, "GET", "/open311/v2/tokens/no-such-token."+format, key), format, 404, 404, `token "no-such-token" was not found`)
		})
	}
}

func TestOpen311_DiscoveryNamesTheEndpoint(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	r := api.open311(t, "GET", "/open311/discovery.xml", nil)
	wantContentType(t, r, "xml")
	root := parseXML(t, r.body)
	sameFields(t, "<discovery>", root.childNames(), []string{"changeset", "contact", "key_service", "endpoints"})
	ep := root.Children[3].Children[0]
	sameFields(t, "<endpoint>", ep.childNames(), []string{"specification", "url", "changeset", "type", "formats"})
	if ep.child(t, "specification") != "http://wiki.open311.org/GeoReport_v2" || ep.child(t, "url") != api.srv.URL+"/open311/v2" {
		t.Errorf("endpoint %s", r.body)
	}
	var d struct {
		Changeset string `json:"changeset"`
		Endpoints []struct {
			URL     string   `json:"url"`
			Formats []string `json:"formats"`
		} `json:"endpoints"`
	}
	r = api.open311(t, "GET", "/open311/discovery.json", nil)
	wantContentType(t, r, "json")
	r.decode(t, &d)
	if d.Changeset != eventstest.Catalog(t).Version || len(d.Endpoints) != 1 || !slices.Equal(d.Endpoints[0].Formats, []string{"text/xml", "application/json"}) {
		t.Errorf("discovery.json = %+v", d)
	}
}

// w3 formats a time as the specification's examples do.
func w3(t time.Time) string { return t.UTC().Format(time.RFC3339) }
