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
	if c.Consent == nil {
		t.Fatal("built-in catalogue has no consent")
	}
	texts := map[string]events.Text{
		"service_notice":             c.ServiceNotice,
		"citizen_fields.national_id": c.CitizenFields.NationalID,
		"citizen_fields.name":        c.CitizenFields.Name,
		"consent":                    c.Consent.Text,
	}
	for _, g := range c.Groups {
		texts["group "+g.Code] = g.Name
	}
	for _, d := range c.Documents {
		texts["document "+d.Code] = d.Name
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

func TestCatalog_BuiltInCatalogueNamesEveryServicesGroupAndDocuments(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	langs := []string{"pt", "en", "es", "fr", "it", "el"}
	named := func(what string, name events.Text) {
		t.Helper()
		for _, lang := range langs {
			if strings.TrimSpace(name[lang]) == "" {
				t.Errorf("%s has no %s name", what, lang)
			}
		}
	}
	groups, documents := map[string]bool{}, map[string]bool{}
	for _, s := range c.Services {
		g, ok := c.Group(s.Group)
		if !ok || g.Code != s.Group {
			t.Errorf("service %q: Group(%q) = %v, %v; want the group", s.Code, s.Group, g, ok)
			continue
		}
		named("group "+g.Code, g.Name)
		groups[g.Code] = true
		for _, code := range s.Documents {
			d, ok := c.Document(code)
			if !ok || d.Code != code {
				t.Errorf("service %q: Document(%q) = %v, %v; want the document", s.Code, code, d, ok)
				continue
			}
			named("document "+d.Code, d.Name)
			documents[d.Code] = true
		}
	}
	// The catalogue lists no group or document that no service uses.
	for _, g := range c.Groups {
		if !groups[g.Code] {
			t.Errorf("group %q has no service", g.Code)
		}
	}
	for _, d := range c.Documents {
		if !documents[d.Code] {
			t.Errorf("no service asks for document %q", d.Code)
		}
	}
	if len(groups) < 9 || len(documents) < 14 {
		t.Errorf("services use %d groups and %d documents, want at least 9 and 14", len(groups), len(documents))
	}
	if d, _ := c.Document("citizen-card"); d == nil || d.Name.In("pt") != "Cartão de Cidadão" {
		t.Errorf(`Document("citizen-card") = %v, want it named "Cartão de Cidadão" in Portuguese`, d)
	}
	if c.Consent == nil || c.Consent.Version == "" {
		t.Fatalf("consent = %+v, want a version and a text", c.Consent)
	}
	named("consent", c.Consent.Text)
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

func TestCatalog_FindsGroupsAndDocumentsByCode(t *testing.T) {
	t.Parallel()
	c := mustCatalog(t, validCatalog())
	if g, ok := c.Group("mobility"); !ok || g.Code != "mobility" || g.Name.In("pt") != "Mobilidade" {
		t.Errorf(`Group("mobility") = %+v, %v; want the mobility group`, g, ok)
	}
	if d, ok := c.Document("photo"); !ok || d.Code != "photo" || d.Name.In("en") != "Photo" {
		t.Errorf(`Document("photo") = %+v, %v; want the photo`, d, ok)
	}
	if g, ok := c.Group("no-such-group"); ok || g != nil {
		t.Errorf(`Group("no-such-group") = %v, %v; want nil, false`, g, ok)
	}
	if d, ok := c.Document("no-such-document"); ok || d != nil {
		t.Errorf(`Document("no-such-document") = %v, %v; want nil, false`, d, ok)
	}
	if c.Consent == nil || c.Consent.Version != "2026-01-01" || c.Consent.Text.In("pt") == "" {
		t.Errorf("Consent = %+v, want version 2026-01-01 with a Portuguese text", c.Consent)
	}
}

func TestCatalog_GroupsKeepCatalogueOrder(t *testing.T) {
	t.Parallel()
	doc := validCatalog()
	doc["groups"] = []any{
		map[string]any{"code": "mobility", "name": map[string]any{"en": "Mobility"}},
		map[string]any{"code": "identity", "name": map[string]any{"en": "Identity"}},
	}
	c := mustCatalog(t, doc)
	var codes []string
	for _, g := range c.Groups {
		codes = append(codes, g.Code)
	}
	if got, want := strings.Join(codes, ","), "mobility,identity"; got != want {
		t.Errorf("Groups in order %s, want %s", got, want)
	}
}

func TestCatalog_WithoutGroupsDocumentsOrConsentLeavesThemUnchecked(t *testing.T) {
	t.Parallel()
	// Catalogues written before groups, documents and consent existed
	// still parse: their services' groups and documents are not checked.
	doc := validCatalog()
	delete(doc, "groups")
	delete(doc, "documents")
	delete(doc, "consent")
	c := mustCatalog(t, doc)
	if c.Consent != nil {
		t.Errorf("Consent = %+v, want nil", c.Consent)
	}
	s, _ := c.Service("passport")
	if g, ok := c.Group(s.Group); ok {
		t.Errorf("Group(%q) = %v, want none in a catalogue without groups", s.Group, g)
	}
	if d, ok := c.Document(s.Documents[0]); ok {
		t.Errorf("Document(%q) = %v, want none in a catalogue without documents", s.Documents[0], d)
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
	doc["consent"].(map[string]any)["text"] = map[string]any{"en": "C", "pt": "C", "el": "Σ"}
	for _, list := range []string{"groups", "documents"} {
		for _, x := range doc[list].([]any) {
			x.(map[string]any)["name"] = map[string]any{"en": "N", "pt": "N", "el": "Ο"}
		}
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
	entry := func(doc map[string]any, list string, i int) map[string]any {
		return doc[list].([]any)[i].(map[string]any)
	}
	consent := func(doc map[string]any) map[string]any { return doc["consent"].(map[string]any) }
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
				doc["consent"].(map[string]any)["text"].(map[string]any)["el"] = "Συγκατάθεση"
				for _, list := range []string{"groups", "documents", "agencies"} {
					for _, x := range doc[list].([]any) {
						x.(map[string]any)["name"].(map[string]any)["el"] = "Όνομα"
					}
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
			name:   "service in a group the catalogue does not define",
			mutate: func(doc map[string]any) { service(doc)["group"] = "travel" },
			want:   []string{"services[0].group", `service "passport"`, `unknown group "travel"`},
		},
		{
			name:   "service without a group",
			mutate: func(doc map[string]any) { delete(service(doc), "group") },
			want:   []string{"services[0].group", `service "passport"`, `unknown group ""`},
		},
		{
			name:   "service asking for a document the catalogue does not define",
			mutate: func(doc map[string]any) { service(doc)["documents"] = []any{"citizen-card", "birth-certificate"} },
			want:   []string{"services[0].documents[1]", `service "passport"`, `unknown document "birth-certificate"`},
		},
		{
			name:   "service listing a document twice",
			mutate: func(doc map[string]any) { service(doc)["documents"] = []any{"photo", "photo"} },
			want:   []string{"services[0].documents[1]", `service "passport"`, `"photo" twice`},
		},
		{
			name: "duplicate group",
			mutate: func(doc map[string]any) {
				doc["groups"] = append(doc["groups"].([]any), clone(entry(doc, "groups", 1)))
			},
			want: []string{"groups[2].code", `duplicate group "mobility"`},
		},
		{
			name: "duplicate document",
			mutate: func(doc map[string]any) {
				doc["documents"] = append(doc["documents"].([]any), clone(entry(doc, "documents", 0)))
			},
			want: []string{"documents[2].code", `duplicate document "citizen-card"`},
		},
		{
			name:   "group code in upper case",
			mutate: func(doc map[string]any) { entry(doc, "groups", 0)["code"] = "Identity" },
			want:   []string{"groups[0].code", `"Identity" is not a valid code`},
		},
		{
			name:   "document code with a space",
			mutate: func(doc map[string]any) { entry(doc, "documents", 1)["code"] = "passport photo" },
			want:   []string{"documents[1].code", `"passport photo" is not a valid code`},
		},
		{
			name:   "group name without English",
			mutate: func(doc map[string]any) { delete(entry(doc, "groups", 1)["name"].(map[string]any), "en") },
			want:   []string{"groups[1].name", `"en"`},
		},
		{
			name: "group name missing one of the declared languages",
			mutate: func(doc map[string]any) {
				doc["languages"] = []any{"en", "pt"}
				delete(entry(doc, "groups", 1)["name"].(map[string]any), "pt")
			},
			want: []string{"groups[1].name", `"pt"`},
		},
		{
			name: "document name missing one of the declared languages",
			mutate: func(doc map[string]any) {
				doc["languages"] = []any{"en", "pt"}
				delete(entry(doc, "documents", 0)["name"].(map[string]any), "pt")
			},
			want: []string{"documents[0].name", `"pt"`},
		},
		{
			name: "consent text missing one of the declared languages",
			mutate: func(doc map[string]any) {
				doc["languages"] = []any{"en", "pt"}
				delete(consent(doc)["text"].(map[string]any), "pt")
			},
			want: []string{"consent.text", `"pt"`},
		},
		{
			name:   "consent text without English",
			mutate: func(doc map[string]any) { delete(consent(doc)["text"].(map[string]any), "en") },
			want:   []string{"consent.text", `"en"`},
		},
		{
			name:   "consent without a version",
			mutate: func(doc map[string]any) { delete(consent(doc), "version") },
			want:   []string{"consent.version", `""`},
		},
		{
			name:   "consent version with spaces",
			mutate: func(doc map[string]any) { consent(doc)["version"] = " 2026-01-01" },
			want:   []string{"consent.version", `" 2026-01-01"`},
		},
		{
			name:   "unknown field in the consent",
			mutate: func(doc map[string]any) { consent(doc)["signature"] = "required" },
			want:   []string{`"signature"`},
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
	if len(c.Services) != 2 || len(c.Agencies) != 2 || len(c.Groups) != 2 || len(c.Documents) != 2 || c.Consent == nil {
		t.Errorf("got %d services, %d agencies, %d groups, %d documents and consent %v; want 2, 2, 2, 2 and a consent",
			len(c.Services), len(c.Agencies), len(c.Groups), len(c.Documents), c.Consent)
	}
}

// validCatalog is a small, valid catalogue as generic JSON, for tests to break.
func validCatalog() map[string]any {
	return map[string]any{
		"version": "test",
		"consent": map[string]any{
			"version": "2026-01-01",
			"text":    map[string]any{"en": "May we send your data to the agencies?", "pt": "Podemos enviar os seus dados às entidades?"},
		},
		"groups": []any{
			map[string]any{"code": "identity", "name": map[string]any{"en": "Identity", "pt": "Identificação"}},
			map[string]any{"code": "mobility", "name": map[string]any{"en": "Mobility", "pt": "Mobilidade"}},
		},
		"documents": []any{
			map[string]any{"code": "citizen-card", "name": map[string]any{"en": "Citizen card", "pt": "Cartão de Cidadão"}},
			map[string]any{"code": "photo", "name": map[string]any{"en": "Photo", "pt": "Fotografia"}},
		},
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
				"documents": []any{"citizen-card", "photo"},
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
				"documents":   []any{"citizen-card"},
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

func TestSampleAnswers_AreValidForEveryServiceOfTheBuiltInCatalogue(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range c.Services {
		for n := range 7 {
			raw := make(map[string]json.RawMessage)
			for k, v := range svc.SampleAnswers(n) {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				raw[k] = b
			}
			sub := &events.Submission{ServiceCode: svc.Code, Citizen: &events.Citizen{NationalID: "12345678", Name: "Load Test"}, Attributes: raw}
			if _, err := c.Validate(sub); err != nil {
				t.Errorf("%s, sample %d: %v", svc.Code, n, err)
			}
		}
	}
}
