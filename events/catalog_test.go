package events_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
)

func TestCatalog_BuiltInCatalogueParses(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatalf("ParseCatalog(schemas.Catalog): %v", err)
	}
	if c.Version == "" {
		t.Error("built-in catalogue has no version")
	}
	if got := len(c.Services); got < 24 {
		t.Errorf("built-in catalogue has %d services, want at least 24", got)
	}
	if got := len(c.AgencyCodes()); got < 8 {
		t.Errorf("built-in catalogue has %d agencies, want at least 8", got)
	}
	used := map[string]bool{}
	for _, s := range c.Services {
		got, ok := c.Service(s.Code)
		if !ok || got.Code != s.Code {
			t.Errorf("Service(%q) = %v, %v; want the service itself", s.Code, got, ok)
		}
		if s.SLA() <= 0 {
			t.Errorf("service %q has SLA %v, want a positive duration", s.Code, s.SLA())
		}
		for _, a := range s.Agencies {
			used[a] = true
		}
	}
	if len(used) < 8 {
		t.Errorf("services are handled by %d distinct agencies, want at least 8", len(used))
	}
}

func TestCatalog_BuiltInCatalogueSpeaksSixLanguagesEverywhere(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pt", "en", "es", "fr", "it", "el"}
	if !slices.Equal(c.Languages, want) {
		t.Errorf("languages = %v, want %v", c.Languages, want)
	}
	texts := map[string]events.Text{
		"service_notice":             c.ServiceNotice,
		"citizen_fields.national_id": c.CitizenFields.NationalID,
		"citizen_fields.name":        c.CitizenFields.Name,
	}
	for _, a := range c.Agencies {
		texts["agency "+a.Code] = a.Name
	}
	for _, s := range c.Services {
		texts[s.Code+" name"] = s.Name
		texts[s.Code+" description"] = s.Description
		for _, a := range s.Attributes {
			texts[s.Code+"."+a.Code+" description"] = a.Description
			for _, v := range a.Values {
				texts[s.Code+"."+a.Code+"="+v.Key+" label"] = v.Name
			}
		}
	}
	for what, text := range texts {
		for _, lang := range want {
			if strings.TrimSpace(text[lang]) == "" {
				t.Errorf("%s has no %s text", what, lang)
			}
		}
		// Every translation is really one: only names of things
		// (ADSE, kVA) may read the same in Greek as in English.
		if text["el"] == text["en"] && !strings.Contains(text["en"], "kVA") {
			t.Errorf("%s reads the same in Greek as in English: %q", what, text["en"])
		}
	}
}

func TestCatalog_BuiltInCatalogueCoversWhatCitizenSpotsOffer(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{
		"driving-licence-renewal", "health-appointment", "criminal-record-certificate", "tax-id-certificate",
		"income-tax-return", "change-of-address", "social-benefit-application", "unemployment-benefit",
		"birth-certificate", "marriage-certificate", "trademark-registration", "water-supply-contract",
		"electricity-contract", "employment-registration",
	} {
		if _, ok := c.Service(code); !ok {
			t.Errorf("no service %q", code)
		}
	}
	datatypes := map[events.Datatype]bool{}
	for _, s := range c.Services {
		for _, a := range s.Attributes {
			datatypes[a.Datatype] = true
		}
	}
	if len(datatypes) != 6 {
		t.Errorf("attributes use datatypes %v, want all six of Open311", datatypes)
	}
}

func TestCatalog_ChangeOfAddressFansOutToSeveralAgencies(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := c.Service("change-of-address")
	if !ok {
		t.Fatal(`built-in catalogue has no "change-of-address" service`)
	}
	if len(s.Agencies) < 3 {
		t.Errorf("change-of-address goes to %v, want at least 3 agencies", s.Agencies)
	}
	known := map[string]bool{}
	for _, a := range c.AgencyCodes() {
		known[a] = true
	}
	for _, a := range s.Agencies {
		if !known[a] {
			t.Errorf("change-of-address names unknown agency %q", a)
		}
	}
}

func TestCatalog_UnknownServiceIsNotFound(t *testing.T) {
	t.Parallel()
	c := mustCatalog(t, validCatalog())
	if s, ok := c.Service("no-such-service"); ok || s != nil {
		t.Errorf(`Service("no-such-service") = %v, %v; want nil, false`, s, ok)
	}
}

func TestCatalog_SortsAttributesByOrder(t *testing.T) {
	t.Parallel()
	doc := validCatalog()
	svc := doc["services"].([]any)[0].(map[string]any)
	svc["attributes"] = []any{
		attr("third", "string", 3),
		attr("first", "string", 1),
		attr("second", "number", 2),
	}
	c := mustCatalog(t, doc)
	s, _ := c.Service("passport")
	var codes []string
	for _, a := range s.Attributes {
		codes = append(codes, a.Code)
	}
	if got, want := strings.Join(codes, ","), "first,second,third"; got != want {
		t.Errorf("attributes in order %s, want %s", got, want)
	}
}

func TestCatalog_SLAIsInHours(t *testing.T) {
	t.Parallel()
	s := events.Service{SLAHours: 1.5}
	if got, want := s.SLA(), 90*time.Minute; got != want {
		t.Errorf("SLA() = %v, want %v", got, want)
	}
}

func TestCatalog_AgencyCodesKeepCatalogueOrder(t *testing.T) {
	t.Parallel()
	doc := validCatalog()
	doc["agencies"] = []any{
		map[string]any{"code": "zeta", "name": map[string]any{"en": "Zeta"}},
		map[string]any{"code": "alpha", "name": map[string]any{"en": "Alpha"}},
	}
	for _, svc := range doc["services"].([]any) {
		svc.(map[string]any)["agencies"] = []any{"alpha"}
	}
	c := mustCatalog(t, doc)
	if got, want := strings.Join(c.AgencyCodes(), ","), "zeta,alpha"; got != want {
		t.Errorf("AgencyCodes() = %s, want %s", got, want)
	}
}

func TestCatalog_LanguagePicksTheBestDeclaredLanguage(t *testing.T) {
	t.Parallel()
	doc := validCatalog()
	doc["languages"] = []any{"en", "pt", "el"}
	for _, a := range doc["agencies"].([]any) {
		a.(map[string]any)["name"] = map[string]any{"en": "A", "pt": "A", "el": "Α"}
	}
	for _, s := range doc["services"].([]any) {
		svc := s.(map[string]any)
		svc["name"] = map[string]any{"en": "S", "pt": "S", "el": "Σ"}
		svc["description"] = map[string]any{"en": "D", "pt": "D", "el": "Δ"}
		svc["attributes"] = []any{}
	}
	c := mustCatalog(t, doc)
	tests := []struct{ in, want string }{
		{"el", "el"},
		{"pt-PT", "pt"},
		{"PT", "pt"},
		{"de", "en"},
		{"", "en"},
		{"de-DE, el;q=0.8, pt;q=0.9", "pt"},
		{"fr;q=1, el;q=0.5", "el"},
		{"*", "en"},
	}
	for _, tt := range tests {
		if got := c.Language(tt.in); got != tt.want {
			t.Errorf("Language(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCatalog_NoticeNamesTheAgenciesAndTheExpectedDate(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.Service("unemployment-benefit")
	expected := time.Date(2026, 3, 9, 15, 0, 0, 0, time.UTC)
	if got, want := c.Notice(s, "en", expected), "Sent to Social Security, Institute for Employment and Vocational Training. Expected by 2026-03-09."; got != want {
		t.Errorf("Notice in English = %q, want %q", got, want)
	}
	if got := c.Notice(s, "el", expected); !strings.Contains(got, "Κοινωνική Ασφάλιση") || !strings.Contains(got, "2026-03-09") {
		t.Errorf("Notice in Greek = %q, want the agencies' Greek names and the date", got)
	}
	if got := mustCatalog(t, validCatalog()).Notice(s, "en", expected); got != "" {
		t.Errorf("Notice without a template = %q, want empty", got)
	}
}

func TestText_InFallsBackToEnglish(t *testing.T) {
	t.Parallel()
	text := events.Text{"en": "Birth certificate", "pt": "Certidão de nascimento", "fr": ""}
	tests := []struct {
		lang, want string
	}{
		{"pt", "Certidão de nascimento"},
		{"en", "Birth certificate"},
		{"de", "Birth certificate"},
		{"fr", "Birth certificate"}, // present but empty
		{"", "Birth certificate"},
	}
	for _, tt := range tests {
		if got := text.In(tt.lang); got != tt.want {
			t.Errorf("In(%q) = %q, want %q", tt.lang, got, tt.want)
		}
	}
}

func TestDatatype_IsListOnlyForListTypes(t *testing.T) {
	t.Parallel()
	tests := map[events.Datatype]bool{
		events.DatatypeString:          false,
		events.DatatypeNumber:          false,
		events.DatatypeDatetime:        false,
		events.DatatypeText:            false,
		events.DatatypeSingleValueList: true,
		events.DatatypeMultiValueList:  true,
	}
	for d, want := range tests {
		if got := d.IsList(); got != want {
			t.Errorf("%s.IsList() = %v, want %v", d, got, want)
		}
	}
}

func TestCatalog_RefusesBrokenCatalogues(t *testing.T) {
	t.Parallel()
	service := func(doc map[string]any) map[string]any {
		return doc["services"].([]any)[0].(map[string]any)
	}
	attribute := func(doc map[string]any, i int) map[string]any {
		return service(doc)["attributes"].([]any)[i].(map[string]any)
	}
	tests := []struct {
		name   string
		mutate func(doc map[string]any)
		want   []string // substrings the error must contain
	}{
		{
			name:   "unknown top-level field",
			mutate: func(doc map[string]any) { doc["colour"] = "blue" },
			want:   []string{`"colour"`},
		},
		{
			name:   "unknown field in a service",
			mutate: func(doc map[string]any) { service(doc)["fee_eur"] = 10 },
			want:   []string{`"fee_eur"`},
		},
		{
			name:   "not JSON at all",
			mutate: nil, // replaced below
			want:   []string{"parse catalogue"},
		},
		{
			name: "duplicate service",
			mutate: func(doc map[string]any) {
				doc["services"] = append(doc["services"].([]any), clone(service(doc)))
			},
			want: []string{"services[2].code", `duplicate service "passport"`},
		},
		{
			name: "duplicate agency",
			mutate: func(doc map[string]any) {
				doc["agencies"] = append(doc["agencies"].([]any), map[string]any{"code": "imt", "name": map[string]any{"en": "Again"}})
			},
			want: []string{"agencies[2].code", `duplicate agency "imt"`},
		},
		{
			name: "an agency taking a pipeline source's code",
			mutate: func(doc map[string]any) {
				doc["agencies"] = append(doc["agencies"].([]any), map[string]any{"code": "dispatcher", "name": map[string]any{"en": "Impostor"}})
			},
			want: []string{"agencies[2].code", `"dispatcher" is reserved`},
		},
		{
			name:   "service naming an unknown agency",
			mutate: func(doc map[string]any) { service(doc)["agencies"] = []any{"imt", "nasa"} },
			want:   []string{"services[0].agencies[1]", `unknown agency "nasa"`},
		},
		{
			name:   "service listing an agency twice",
			mutate: func(doc map[string]any) { service(doc)["agencies"] = []any{"imt", "imt"} },
			want:   []string{"services[0].agencies[1]", "listed twice"},
		},
		{
			name:   "service without agencies",
			mutate: func(doc map[string]any) { service(doc)["agencies"] = []any{} },
			want:   []string{"services[0].agencies", "at least one agency"},
		},
		{
			name:   "attribute with an unknown datatype",
			mutate: func(doc map[string]any) { attribute(doc, 0)["datatype"] = "boolean" },
			want:   []string{"services[0].attributes[0].datatype", `"boolean"`},
		},
		{
			name:   "list attribute without values",
			mutate: func(doc map[string]any) { delete(attribute(doc, 1), "values") },
			want:   []string{"services[0].attributes[1].values", "needs values"},
		},
		{
			name: "values on an attribute that is not a list",
			mutate: func(doc map[string]any) {
				attribute(doc, 0)["values"] = []any{map[string]any{"key": "x", "name": map[string]any{"en": "X"}}}
			},
			want: []string{"services[0].attributes[0].values", "only list datatypes"},
		},
		{
			name:   "duplicate attribute",
			mutate: func(doc map[string]any) { attribute(doc, 1)["code"] = "document_number" },
			want:   []string{"services[0].attributes[1].code", `duplicate attribute "document_number"`},
		},
		{
			name:   "service without an English name",
			mutate: func(doc map[string]any) { service(doc)["name"] = map[string]any{"pt": "Passaporte"} },
			want:   []string{"services[0].name", "English name"},
		},
		{
			name: "agency without an English name",
			mutate: func(doc map[string]any) {
				doc["agencies"].([]any)[1].(map[string]any)["name"] = map[string]any{"en": ""}
			},
			want: []string{"agencies[1].name", "English name"},
		},
		{
			name:   "zero sla_hours",
			mutate: func(doc map[string]any) { service(doc)["sla_hours"] = 0 },
			want:   []string{"services[0].sla_hours", "positive"},
		},
		{
			name:   "negative sla_hours",
			mutate: func(doc map[string]any) { service(doc)["sla_hours"] = -24 },
			want:   []string{"services[0].sla_hours", "positive"},
		},
		{
			name:   "service code in upper case",
			mutate: func(doc map[string]any) { service(doc)["code"] = "Passport" },
			want:   []string{"services[0].code", `"Passport"`},
		},
		{
			name:   "empty service code",
			mutate: func(doc map[string]any) { service(doc)["code"] = "" },
			want:   []string{"services[0].code", "not a valid code"},
		},
		{
			name:   "agency code starting with a dash",
			mutate: func(doc map[string]any) { doc["agencies"].([]any)[0].(map[string]any)["code"] = "-imt" },
			want:   []string{"agencies[0].code", `"-imt"`},
		},
		{
			name:   "attribute code reserved for the citizen",
			mutate: func(doc map[string]any) { attribute(doc, 0)["code"] = "citizen_name" },
			want:   []string{"services[0].attributes[0].code", "reserved"},
		},
		{
			name:   "two attributes in the same order",
			mutate: func(doc map[string]any) { attribute(doc, 1)["order"] = 1 },
			want:   []string{"services[0].attributes[1].order", "positive integer"},
		},
		{
			name:   "attribute order zero",
			mutate: func(doc map[string]any) { attribute(doc, 0)["order"] = 0 },
			want:   []string{"services[0].attributes[0].order"},
		},
		{
			name: "list value key used twice",
			mutate: func(doc map[string]any) {
				values := attribute(doc, 1)["values"].([]any)
				values[1].(map[string]any)["key"] = "normal"
			},
			want: []string{"services[0].attributes[1].values[1].key", `"normal"`},
		},
		{
			name:   "languages without English",
			mutate: func(doc map[string]any) { doc["languages"] = []any{"pt"} },
			want:   []string{"languages", "English"},
		},
		{
			name:   "service name missing one of the declared languages",
			mutate: func(doc map[string]any) { doc["languages"] = []any{"en", "pt"} },
			want:   []string{"agencies[1].name", `"pt"`},
		},
		{
			name: "value label missing one of the declared languages",
			mutate: func(doc map[string]any) {
				doc["languages"] = []any{"en", "el"}
				for _, a := range doc["agencies"].([]any) {
					a.(map[string]any)["name"].(map[string]any)["el"] = "Φορέας"
				}
				for _, s := range doc["services"].([]any) {
					s.(map[string]any)["name"].(map[string]any)["el"] = "Υπηρεσία"
					s.(map[string]any)["description"].(map[string]any)["el"] = "Περιγραφή"
				}
				for _, a := range service(doc)["attributes"].([]any) {
					a.(map[string]any)["description"].(map[string]any)["el"] = "Πεδίο"
				}
				values := attribute(doc, 1)["values"].([]any)
				values[0].(map[string]any)["name"].(map[string]any)["el"] = "Κανονική"
			},
			want: []string{"services[0].attributes[1].values[1].name", `"el"`},
		},
		{
			name:   "attribute code with a dot",
			mutate: func(doc map[string]any) { attribute(doc, 0)["code"] = "document.number" },
			want:   []string{"services[0].attributes[0].code", `"document.number"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var data []byte
			if tt.mutate == nil {
				data = []byte(`{"version": "1", "agencies": [`)
			} else {
				doc := validCatalog()
				tt.mutate(doc)
				data = mustJSON(t, doc)
			}
			c, err := events.ParseCatalog(data)
			if err == nil {
				t.Fatalf("ParseCatalog accepted a broken catalogue: %+v", c)
			}
			if c != nil {
				t.Errorf("ParseCatalog returned a catalogue with its error: %+v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCatalog_AcceptsTheValidTestCatalogue(t *testing.T) {
	t.Parallel()
	// Guards the table above: each broken catalogue differs from this one by
	// one mutation only.
	c := mustCatalog(t, validCatalog())
	if len(c.Services) != 2 || len(c.Agencies) != 2 {
		t.Errorf("got %d services and %d agencies, want 2 and 2", len(c.Services), len(c.Agencies))
	}
}

// validCatalog is a small, valid catalogue as generic JSON, for tests to break.
func validCatalog() map[string]any {
	return map[string]any{
		"version": "test",
		"agencies": []any{
			map[string]any{"code": "imt", "name": map[string]any{"en": "Mobility", "pt": "Mobilidade"}},
			map[string]any{"code": "civil-registry", "name": map[string]any{"en": "Registry"}},
		},
		"services": []any{
			map[string]any{
				"code":        "passport",
				"group":       "identity",
				"name":        map[string]any{"en": "Passport"},
				"description": map[string]any{"en": "Get a passport."},
				"agencies":    []any{"civil-registry"},
				"attributes": []any{
					attr("document_number", "string", 1),
					map[string]any{
						"code": "urgency", "datatype": "singlevaluelist", "required": true, "order": 2,
						"description": map[string]any{"en": "Urgency"},
						"values": []any{
							map[string]any{"key": "normal", "name": map[string]any{"en": "Normal"}},
							map[string]any{"key": "express", "name": map[string]any{"en": "Express"}},
						},
					},
				},
				"sla_hours": 72,
				"training":  true,
			},
			map[string]any{
				"code":        "plates",
				"group":       "mobility",
				"name":        map[string]any{"en": "Number plates"},
				"description": map[string]any{"en": "Order number plates."},
				"agencies":    []any{"imt", "civil-registry"},
				"attributes":  []any{},
				"sla_hours":   0.5,
				"training":    false,
			},
		},
	}
}

func attr(code, datatype string, order int) map[string]any {
	return map[string]any{
		"code": code, "datatype": datatype, "required": true, "order": order,
		"description": map[string]any{"en": code},
	}
}

func clone(m map[string]any) map[string]any {
	data, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustCatalog(t *testing.T, doc map[string]any) *events.Catalog {
	t.Helper()
	c, err := events.ParseCatalog(mustJSON(t, doc))
	if err != nil {
		t.Fatalf("ParseCatalog: %v", err)
	}
	return c
}
