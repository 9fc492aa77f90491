package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
)

// everyDatatype is a catalogue whose one service has an attribute of every
// Open311 datatype, so each check of Validate can be reached.
const everyDatatype = `{
  "version": "test",
  "agencies": [{"code": "registry", "name": {"en": "Registry"}}],
  "services": [{
    "code": "every-datatype",
    "group": "test",
    "name": {"en": "Every datatype"},
    "description": {"en": "A service asking for one attribute of each datatype."},
    "agencies": ["registry"],
    "attributes": [
      {"code": "street", "datatype": "string", "required": true, "order": 1, "description": {"en": "Street"}},
      {"code": "count", "datatype": "number", "required": true, "order": 2, "description": {"en": "Count"}},
      {"code": "when", "datatype": "datetime", "required": false, "order": 3, "description": {"en": "When"}},
      {"code": "notes", "datatype": "text", "required": false, "order": 4, "description": {"en": "Notes"}},
      {"code": "kind", "datatype": "singlevaluelist", "required": false, "order": 5, "description": {"en": "Kind"},
       "values": [{"key": "paper", "name": {"en": "Paper"}}, {"key": "online", "name": {"en": "Online"}}]},
      {"code": "tags", "datatype": "multivaluelist", "required": false, "order": 6, "description": {"en": "Tags"},
       "values": [{"key": "A", "name": {"en": "A"}}, {"key": "B", "name": {"en": "B"}}]},
      {"code": "channels", "datatype": "multivaluelist", "required": true, "order": 7, "description": {"en": "Channels"},
       "values": [{"key": "email", "name": {"en": "E-mail"}}, {"key": "sms", "name": {"en": "SMS"}}]}
    ],
    "sla_hours": 24,
    "training": true
  }]
}`

func everyDatatypeCatalog(t *testing.T) *events.Catalog {
	t.Helper()
	c, err := events.ParseCatalog([]byte(everyDatatype))
	if err != nil {
		t.Fatalf("ParseCatalog: %v", err)
	}
	return c
}

// goodSubmission is a valid submission of the every-datatype service, as a
// desk would send it; tests change one part of it.
func goodSubmission() *events.Submission {
	return &events.Submission{
		ServiceCode: "every-datatype",
		Citizen:     &events.Citizen{NationalID: "12345678-9ZX0", Name: "Maria da Silva"},
		Attributes: map[string]json.RawMessage{
			"street":   json.RawMessage(`"Rua Augusta 1"`),
			"count":    json.RawMessage(`3`),
			"channels": json.RawMessage(`["sms"]`),
		},
	}
}

func TestValidate_AcceptsGoodSubmissions(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	tests := []struct {
		name   string
		change func(s *events.Submission)
	}{
		{"with only the required attributes", func(s *events.Submission) {}},
		{"with every optional attribute", func(s *events.Submission) {
			s.Attributes["when"] = json.RawMessage(`"2026-01-31T09:30:00Z"`)
			s.Attributes["notes"] = json.RawMessage(`"Bring the old card."`)
			s.Attributes["kind"] = json.RawMessage(`"online"`)
			s.Attributes["tags"] = json.RawMessage(`["A","B"]`)
			s.VisitID = "visit-42"
			s.Mediator = "ana.sousa"
		}},
		{"with a datetime carrying an offset and fractions", func(s *events.Submission) {
			s.Attributes["when"] = json.RawMessage(`"2026-01-31T09:30:00.123+01:00"`)
		}},
		{"with a datetime without a zone", func(s *events.Submission) {
			s.Attributes["when"] = json.RawMessage(`"2026-01-31T09:30:00"`)
		}},
		{"with a bare date", func(s *events.Submission) {
			s.Attributes["when"] = json.RawMessage(`"2026-01-31"`)
		}},
		{"with optional attributes set to null", func(s *events.Submission) {
			s.Attributes["notes"] = json.RawMessage(`null`)
			s.Attributes["tags"] = json.RawMessage(`null`)
		}},
		{"with an empty optional list", func(s *events.Submission) {
			s.Attributes["tags"] = json.RawMessage(`[]`)
		}},
		{"with a negative fractional number", func(s *events.Submission) {
			s.Attributes["count"] = json.RawMessage(`-2.5e3`)
		}},
		{"with a name of 255 multi-byte characters", func(s *events.Submission) {
			s.Citizen.Name = strings.Repeat("ç", 255)
		}},
		{"with a text of exactly 4000 characters", func(s *events.Submission) {
			s.Attributes["notes"] = mustRaw(t, strings.Repeat("ã", 4000))
		}},
		{"with a national ID of 4 characters", func(s *events.Submission) {
			s.Citizen.NationalID = "AB12"
		}},
		{"with a national ID of 32 characters", func(s *events.Submission) {
			s.Citizen.NationalID = strings.Repeat("9", 32)
		}},
		{"with a visit ID of 64 characters", func(s *events.Submission) {
			s.VisitID = strings.Repeat("v", 64)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := goodSubmission()
			tt.change(s)
			svc, err := c.Validate(s)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if svc == nil || svc.Code != "every-datatype" {
				t.Errorf("Validate returned service %v, want every-datatype", svc)
			}
		})
	}
}

func TestValidate_RefusesBadSubmissionsNamingTheField(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	tests := []struct {
		name   string
		change func(s *events.Submission)
		code   string
		field  string
	}{
		{"missing service_code", func(s *events.Submission) { s.ServiceCode = "" },
			events.CodeRequired, "service_code"},
		{"unknown service", func(s *events.Submission) { s.ServiceCode = "moon-landing" },
			events.CodeUnknownService, "service_code"},
		{"missing citizen", func(s *events.Submission) { s.Citizen = nil },
			events.CodeRequired, "citizen"},
		{"missing national_id", func(s *events.Submission) { s.Citizen.NationalID = "" },
			events.CodeRequired, "citizen.national_id"},
		{"national_id too short", func(s *events.Submission) { s.Citizen.NationalID = "123" },
			events.CodeInvalidValue, "citizen.national_id"},
		{"national_id too long", func(s *events.Submission) { s.Citizen.NationalID = strings.Repeat("1", 33) },
			events.CodeInvalidValue, "citizen.national_id"},
		{"national_id with a space", func(s *events.Submission) { s.Citizen.NationalID = "1234 5678" },
			events.CodeInvalidValue, "citizen.national_id"},
		{"national_id with a non-ASCII letter", func(s *events.Submission) { s.Citizen.NationalID = "1234567Ç" },
			events.CodeInvalidValue, "citizen.national_id"},
		{"missing name", func(s *events.Submission) { s.Citizen.Name = "" },
			events.CodeRequired, "citizen.name"},
		{"blank name", func(s *events.Submission) { s.Citizen.Name = " \t " },
			events.CodeRequired, "citizen.name"},
		{"over-long name", func(s *events.Submission) { s.Citizen.Name = strings.Repeat("a", 256) },
			events.CodeInvalidValue, "citizen.name"},
		{"visit_id too long", func(s *events.Submission) { s.VisitID = strings.Repeat("v", 65) },
			events.CodeInvalidValue, "visit_id"},
		{"visit_id with a control character", func(s *events.Submission) { s.VisitID = "visit\n1" },
			events.CodeInvalidValue, "visit_id"},
		{"mediator too long", func(s *events.Submission) { s.Mediator = strings.Repeat("m", 65) },
			events.CodeInvalidValue, "mediator"},
		{"consent without a version", func(s *events.Submission) { s.Consent = &events.ConsentGiven{Language: "en"} },
			events.CodeRequired, "consent.version"},
		{"consent without a language", func(s *events.Submission) { s.Consent = &events.ConsentGiven{Version: "v1"} },
			events.CodeRequired, "consent.language"},
		{"consent in a language the catalogue lacks", func(s *events.Submission) { s.Consent = &events.ConsentGiven{Version: "v1", Language: "de"} },
			events.CodeInvalidValue, "consent.language"},
		{"consent given in the future", func(s *events.Submission) {
			s.Consent = &events.ConsentGiven{Version: "v1", Language: "en", At: time.Now().Add(time.Hour)}
		}, events.CodeInvalidValue, "consent.at"},
		{"consent version with a control character", func(s *events.Submission) { s.Consent = &events.ConsentGiven{Version: "v\x001", Language: "en"} },
			events.CodeInvalidValue, "consent.version"},
		{"unknown attribute", func(s *events.Submission) { s.Attributes["colour"] = json.RawMessage(`"blue"`) },
			events.CodeUnknownField, "attributes.colour"},
		{"missing required attribute", func(s *events.Submission) { delete(s.Attributes, "street") },
			events.CodeRequired, "attributes.street"},
		{"missing attributes altogether", func(s *events.Submission) { s.Attributes = nil },
			events.CodeRequired, "attributes.street"},
		{"required attribute set to null", func(s *events.Submission) { s.Attributes["count"] = json.RawMessage(`null`) },
			events.CodeRequired, "attributes.count"},
		{"required string left blank", func(s *events.Submission) { s.Attributes["street"] = json.RawMessage(`"   "`) },
			events.CodeRequired, "attributes.street"},
		{"required list left empty", func(s *events.Submission) { s.Attributes["channels"] = json.RawMessage(`[]`) },
			events.CodeRequired, "attributes.channels"},
		{"number given as a string", func(s *events.Submission) { s.Attributes["count"] = json.RawMessage(`"3"`) },
			events.CodeInvalidType, "attributes.count"},
		{"number given as a boolean", func(s *events.Submission) { s.Attributes["count"] = json.RawMessage(`true`) },
			events.CodeInvalidType, "attributes.count"},
		{"string given as a number", func(s *events.Submission) { s.Attributes["street"] = json.RawMessage(`42`) },
			events.CodeInvalidType, "attributes.street"},
		{"text given as an object", func(s *events.Submission) { s.Attributes["notes"] = json.RawMessage(`{"a":1}`) },
			events.CodeInvalidType, "attributes.notes"},
		{"datetime not in ISO 8601", func(s *events.Submission) { s.Attributes["when"] = json.RawMessage(`"31/01/2026"`) },
			events.CodeInvalidValue, "attributes.when"},
		{"datetime that does not exist", func(s *events.Submission) { s.Attributes["when"] = json.RawMessage(`"2026-02-30"`) },
			events.CodeInvalidValue, "attributes.when"},
		{"datetime given as a number", func(s *events.Submission) { s.Attributes["when"] = json.RawMessage(`1769851800`) },
			events.CodeInvalidType, "attributes.when"},
		{"singlevaluelist value not allowed", func(s *events.Submission) { s.Attributes["kind"] = json.RawMessage(`"carrier-pigeon"`) },
			events.CodeInvalidValue, "attributes.kind"},
		{"singlevaluelist value in the wrong case", func(s *events.Submission) { s.Attributes["kind"] = json.RawMessage(`"Paper"`) },
			events.CodeInvalidValue, "attributes.kind"},
		{"singlevaluelist given a list", func(s *events.Submission) { s.Attributes["kind"] = json.RawMessage(`["paper"]`) },
			events.CodeInvalidType, "attributes.kind"},
		{"multivaluelist not a list", func(s *events.Submission) { s.Attributes["tags"] = json.RawMessage(`"A"`) },
			events.CodeInvalidType, "attributes.tags"},
		{"multivaluelist of numbers", func(s *events.Submission) { s.Attributes["tags"] = json.RawMessage(`[1,2]`) },
			events.CodeInvalidType, "attributes.tags"},
		{"multivaluelist value not allowed", func(s *events.Submission) { s.Attributes["tags"] = json.RawMessage(`["A","Z"]`) },
			events.CodeInvalidValue, "attributes.tags"},
		{"multivaluelist with a value twice", func(s *events.Submission) { s.Attributes["tags"] = json.RawMessage(`["A","B","A"]`) },
			events.CodeInvalidValue, "attributes.tags"},
		{"over-long string", func(s *events.Submission) { s.Attributes["street"] = mustRaw(t, strings.Repeat("r", 256)) },
			events.CodeInvalidValue, "attributes.street"},
		{"over-long text", func(s *events.Submission) { s.Attributes["notes"] = mustRaw(t, strings.Repeat("n", 4001)) },
			events.CodeInvalidValue, "attributes.notes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := goodSubmission()
			tt.change(s)
			svc, err := c.Validate(s)
			if err == nil {
				t.Fatalf("Validate accepted the submission (service %v)", svc.Code)
			}
			if svc != nil {
				t.Errorf("Validate returned service %q with its error", svc.Code)
			}
			var fe *events.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *events.FieldError", err, err)
			}
			if fe.Code != tt.code || fe.Field != tt.field {
				t.Errorf("FieldError{Code: %q, Field: %q}, want {Code: %q, Field: %q} (message %q)",
					fe.Code, fe.Field, tt.code, tt.field, fe.Message)
			}
			if fe.Message == "" {
				t.Error("FieldError has no message for people")
			}
			if got, want := err.Error(), tt.field+": "; !strings.HasPrefix(got, want) {
				t.Errorf("Error() = %q, want it to start with %q", got, want)
			}
		})
	}
}

func TestValidate_NeverEchoesTheNationalID(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	const id = "1234 5678 SECRET"
	s := goodSubmission()
	s.Citizen.NationalID = id
	_, err := c.Validate(s)
	if err == nil {
		t.Fatal("Validate accepted an invalid national ID")
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %q repeats the national ID", err)
	}
}

func TestValidate_CompactsAttributeValues(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	s := goodSubmission()
	s.Attributes["street"] = json.RawMessage("  \"Rua  Augusta 1\" \n")
	s.Attributes["count"] = json.RawMessage(" 3 ")
	s.Attributes["tags"] = json.RawMessage("[ \"A\" ,\n\t\"B\" ]")
	s.Attributes["channels"] = json.RawMessage("[\n  \"sms\",\n  \"email\"\n]")
	if _, err := c.Validate(s); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := map[string]string{
		"street":   `"Rua  Augusta 1"`, // whitespace inside a string is kept
		"count":    `3`,
		"tags":     `["A","B"]`,
		"channels": `["sms","email"]`,
	}
	for code, w := range want {
		if got := string(s.Attributes[code]); got != w {
			t.Errorf("attribute %s = %q after Validate, want %q", code, got, w)
		}
	}
}

func TestValidate_WorksOnTheBuiltInCatalogue(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	s := &events.Submission{
		ServiceCode: "change-of-address",
		Citizen:     &events.Citizen{NationalID: "123456789", Name: "João Pires"},
		Attributes: map[string]json.RawMessage{
			"street":      json.RawMessage(`"Rua Direita 12"`),
			"postal_code": json.RawMessage(`"1100-001"`),
			"locality":    json.RawMessage(`"Lisboa"`),
		},
	}
	svc, err := c.Validate(s)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(svc.Agencies) < 2 {
		t.Errorf("change-of-address validated to a service of agencies %v, want several", svc.Agencies)
	}
	delete(s.Attributes, "locality")
	_, err = c.Validate(s)
	var fe *events.FieldError
	if !errors.As(err, &fe) || fe.Field != "attributes.locality" || fe.Code != events.CodeRequired {
		t.Errorf("without locality: error %v, want required attributes.locality", err)
	}
}

func mustRaw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestProblems_ReportsEveryOffendingFieldInTheFormsOrder(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	s := goodSubmission()
	if p := c.Problems(s); len(p) != 0 {
		t.Fatalf("a good submission has problems: %+v", p)
	}
	s.Citizen.NationalID = "12"
	delete(s.Attributes, "street")
	s.Attributes["count"] = json.RawMessage(`"three"`)
	s.Attributes["kind"] = json.RawMessage(`"carrier pigeon"`)
	var got []string
	for _, p := range c.Problems(s) {
		got = append(got, p.Code+" "+p.Field)
	}
	want := []string{"invalid_value citizen.national_id", "required attributes.street", "invalid_type attributes.count", "invalid_value attributes.kind"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Problems = %q, want %q", got, want)
	}
	// Validate names the first of them.
	if _, err := c.Validate(s); !strings.Contains(err.Error(), "national_id") {
		t.Errorf("Validate = %v, want the first problem", err)
	}
}
