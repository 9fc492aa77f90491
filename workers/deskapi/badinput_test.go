package deskapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// TestDeskAPI_RefusesBadInputNamingTheField covers issue 15's bad input:
// what encoding/json would take silently (duplicate and case-variant keys,
// invalid UTF-8), text that is not safe to store or show, and sizes beyond
// the documented limits.
func TestDeskAPI_RefusesBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	api := startIntake(t, 0, nil)
	// body is a change of address with the citizen's name, the street and
	// the rest of the body (after the attributes) set.
	body := func(name, street, rest string) string {
		return `{"service_code": "change-of-address", "citizen": {"national_id": "12345678", "name": ` + name + `},` +
			` "attributes": {"street": ` + street + `, "postal_code": "1100-048", "locality": "Lisboa"}` + rest + `}`
	}
	const name, street = `"Maria Silva"`, `"Rua Augusta 1"`
	tests := []struct {
		name        string
		body        string
		status      int
		code, field string
	}{
		{"the issue's citizen given twice, its national_id in two cases",
			`{"service_code": "change-of-address", "citizen":{"national_id":"1111","NATIONAL_ID":"2222","name":"A"},"citizen":{"name":"B"},` +
				`"attributes": {"street": "Rua Augusta 1", "postal_code": "1100-048", "locality": "Lisboa"}}`,
			400, events.CodeDuplicateField, "citizen.NATIONAL_ID"},
		{"a citizen given twice", `{"service_code": "change-of-address", "citizen": {"national_id": "1111", "name": "A"}, "citizen": {"national_id": "2222", "name": "B"}}`,
			400, events.CodeDuplicateField, "citizen"},
		{"the service given twice", `{"service_code": "birth-certificate", "service_code": "change-of-address"}`,
			400, events.CodeDuplicateField, "service_code"},
		{"an attribute given twice", body(name, `"Rua A", "street": "Rua B"`, ""), 400, events.CodeDuplicateField, "attributes.street"},
		{"an attribute given in two cases", body(name, `"Rua A", "STREET": "Rua B"`, ""), 400, events.CodeDuplicateField, "attributes.STREET"},
		{"a mediator given in two cases", body(name, street, `, "mediator": "m-1", "Mediator": "m-2"`), 400, events.CodeDuplicateField, "Mediator"},
		{"an attribute holding an escaped NUL", body(name, `"Rua Augusta\u0000 1"`, ""), 422, events.CodeInvalidValue, "attributes.street"},
		{"an attribute that is not UTF-8", body(name, "\"Rua Augusta \xff1\"", ""), 422, events.CodeInvalidValue, "attributes.street"},
		{"an attribute holding a lone surrogate", body(name, `"Rua \ud800"`, ""), 422, events.CodeInvalidValue, "attributes.street"},
		{"an attribute holding a right-to-left override", body(name, `"Rua \u202eatsugua"`, ""), 422, events.CodeInvalidValue, "attributes.street"},
		{"an attribute holding a line feed", body(name, `"Rua\nAugusta"`, ""), 422, events.CodeInvalidValue, "attributes.street"},
		{"a name that is not UTF-8", body("\"Mar\xeda Silva\"", street, ""), 422, events.CodeInvalidValue, "citizen.name"},
		{"a name holding NUL", body(`"Maria\u0000Silva"`, street, ""), 422, events.CodeInvalidValue, "citizen.name"},
		{"a name holding an isolate", body(`"Maria \u2067Silva"`, street, ""), 422, events.CodeInvalidValue, "citizen.name"},
		{"a name holding an escape sequence", body(`"\u001b[2JMaria"`, street, ""), 422, events.CodeInvalidValue, "citizen.name"},
		{"a visit_id holding a C1 control", body(name, street, `, "visit_id": "v\u009b1"`), 422, events.CodeInvalidValue, "visit_id"},
		{"a mediator that is not UTF-8", body(name, street, ", \"mediator\": \"m\xc0\xaf\""), 422, events.CodeInvalidValue, "mediator"},
		{"nesting beyond the limit", body(name, street, `, "visit_id": `+strings.Repeat("[", events.MaxJSONDepth)+strings.Repeat("]", events.MaxJSONDepth)),
			400, events.CodeTooLarge, "visit_id"},
		{"a list beyond the limit", `{"service_code": "driving-licence-renewal", "citizen": {"national_id": "12345678", "name": "Maria"},` +
			` "attributes": {"licence_number": "L-1", "categories": [` + strings.TrimSuffix(strings.Repeat(`"B",`, events.MaxJSONMembers+1), ",") + `]}}`,
			400, events.CodeTooLarge, "attributes.categories"},
		{"a string beyond the limit", body(`"`+strings.Repeat("M", events.MaxJSONString+1)+`"`, street, ""), 422, events.CodeInvalidValue, "citizen.name"},
		{"a number longer than the limit", `{"service_code": "tax-id-certificate", "citizen": {"national_id": "12345678", "name": "Maria"},` +
			` "attributes": {"tax_number": "123456789", "year": 2025.` + strings.Repeat("0", events.MaxJSONNumber) + `}}`,
			422, events.CodeInvalidValue, "attributes.year"},
	}
	for i, tt := range tests {
		t.Run(tt.name+" is refused and nothing is published", func(t *testing.T) {
			r := api.submit(t, fmt.Sprintf("bad-%d", i), tt.body)
			if r.status == http.StatusAccepted {
				t.Fatalf("accepted %s", r.body)
			}
			e := r.err(t)
			if r.status != tt.status || e.Code != tt.code || e.Field != tt.field {
				t.Errorf("%d %+v, want %d with code %q on field %q", r.status, e, tt.status, tt.code, tt.field)
			}
			if e.Message == "" || !json.Valid(r.body) {
				t.Errorf("the error %s has no message, or is not JSON", r.body)
			}
			if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 0 {
				t.Fatalf("the events stream holds %d messages after a refusal, want 0", n)
			}
		})
	}

	t.Run("a request id that is not clean text is not found", func(t *testing.T) {
		for _, id := range []string{"%00", "abc%00def", "%FF", "%E2%80%AEabc"} {
			r := api.do(t, call{method: "GET", path: "/v1/requests/" + id, token: api.Token})
			if e := r.err(t); r.status != http.StatusNotFound || e.Code != "not_found" {
				t.Errorf("GET /v1/requests/%s: %d %+v, want 404 not_found", id, r.status, e)
			}
		}
	})

	t.Run("a multivaluelist with a value twice is refused", func(t *testing.T) {
		r := api.submit(t, "twice", `{"service_code": "driving-licence-renewal", "citizen": {"national_id": "12345678", "name": "Maria"},`+
			` "attributes": {"licence_number": "L-1", "categories": ["B", "C", "B"]}}`)
		if e := r.err(t); r.status != http.StatusUnprocessableEntity || e.Code != events.CodeInvalidValue || e.Field != "attributes.categories" {
			t.Errorf("%d %+v, want 422 invalid_value on attributes.categories", r.status, e)
		}
	})

	t.Run("text with lines and direction marks is accepted where it belongs", func(t *testing.T) {
		r := api.submit(t, "good-1", `{"service_code": "patent-application", "citizen": {"national_id": "12345678", "name": "\u200fمحمد\u200e Silva"},`+
			` "attributes": {"title": "Um dispositivo", "summary": "Primeira linha.\nSegunda linha,\tcom tabulação.", "inventors": 2}}`)
		mustAccept(t, r)
	})
}
