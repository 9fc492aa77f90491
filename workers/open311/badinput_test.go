package open311_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// TestOpen311_RefusesUnsafeTextNamingTheField covers issue 15's bad input
// in form posts: every text field of a submission refuses invalid UTF-8,
// NUL and other control characters, and bidirectional controls, naming
// the field as the client sent it, and nothing is published.
func TestOpen311_RefusesUnsafeTextNamingTheField(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	bad := map[string]string{
		"NUL":                        "a\x00b",
		"invalid UTF-8":              "Mar\xeda",
		"a right-to-left override":   "Rua \u202eatsugua",
		"a first strong isolate":     "x\u2068y",
		"an escape sequence":         "\x1b[2Jx",
		"a C1 control":               "x\u0085y",
		"a line feed in a line":      "Rua\nAugusta",
		"a lone surrogate's remains": "\xed\xa0\x80",
	}
	fields := []struct {
		param, named string
	}{
		{"attribute[citizen_name]", "attribute[citizen_name]"},
		{"attribute[licence_number]", "attribute[licence_number]"},
		{"attribute[medical_certificate_date]", "attribute[medical_certificate_date]"},
		{"attribute[categories][]", "attribute[categories][]"},
		{"account_id", "account_id"},
		{"service_code", "service_code"},
	}
	i := 0
	for _, f := range fields {
		for what, v := range bad {
			i++
			t.Run(f.param+" with "+what, func(t *testing.T) {
				form := licenceForm(api)
				form.Set(f.param, v)
				r := api.open311(t, "POST", "/open311/v2/requests.json", form, "Idempotency-Key", fmt.Sprintf("bad-%d", i))
				wantOpen311Error(t, r, "json", 400, 400, f.named+": ")
			})
		}
	}
	t.Run("first_name and last_name", func(t *testing.T) {
		for _, name := range []string{"first_name", "last_name"} {
			form := licenceForm(api)
			form.Del("attribute[citizen_name]")
			form.Set("first_name", "Maria")
			form.Set("last_name", "Silva")
			form.Set(name, "Sil\x00va")
			wantOpen311Error(t, api.open311(t, "POST", "/open311/v2/requests.xml", form), "xml", 400, 400, name+": ")
		}
	})
	t.Run("an attribute's code", func(t *testing.T) {
		form := licenceForm(api)
		form.Set("attribute[licence\x00number]", "L-1")
		wantOpen311Error(t, api.open311(t, "POST", "/open311/v2/requests.xml", form), "xml", 400, 400, `"attribute[licence\x00number]": the attribute's code holds`)
	})
	t.Run("a number that JSON cannot carry", func(t *testing.T) {
		for _, v := range []string{"Inf", "NaN", "0x1p4", "1_000", "1e999"} {
			form := url.Values{
				"api_key":                        {api.Token},
				"service_code":                   {"tax-id-certificate"},
				"attribute[citizen_national_id]": {"12345678"},
				"attribute[citizen_name]":        {"Maria Silva"},
				"attribute[tax_number]":          {"123456789"},
				"attribute[year]":                {v},
			}
			wantOpen311Error(t, api.open311(t, "POST", "/open311/v2/requests.xml", form), "xml", 400, 400, `attribute[year]: attribute "year" must be a number`)
		}
	})
	t.Run("a jurisdiction_id holding NUL", func(t *testing.T) {
		form := licenceForm(api)
		form.Del("api_key")
		form.Set("jurisdiction_id", "lis\x00boa")
		wantOpen311Error(t, api.open311(t, "GET", "/open311/v2/services.xml", form), "xml", 400, 400, "jurisdiction_id: ")
	})
	if n := natstest.StreamMessages(t, api.JS, events.EventsStream); n != 0 {
		t.Fatalf("the events stream holds %d messages after refusals, want 0", n)
	}
	t.Run("text with direction marks and a multi-line text are accepted", func(t *testing.T) {
		form := url.Values{
			"api_key":                        {api.Token},
			"service_code":                   {"patent-application"},
			"attribute[citizen_national_id]": {"12345678"},
			"attribute[citizen_name]":        {"\u200fمحمد\u200e Silva"},
			"attribute[title]":               {"Um dispositivo"},
			"attribute[summary]":             {"Primeira linha.\r\nSegunda linha,\tcom tabulação."},
			"attribute[inventors]":           {"2"},
		}
		createdID(t, api.open311(t, "POST", "/open311/v2/requests.json", form), "json")
	})
}

// TestOpen311_CapsAndDeduplicatesCommaLists covers issue 15's comma lists
// of GET requests: capped, deduplicated, and refusing entries the database
// could not look up (which answered 503 before, as if it were down).
func TestOpen311_CapsAndDeduplicatesCommaLists(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	list := func(n int, item string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(item, i)
		}
		return strings.Join(items, ",")
	}
	for _, param := range []string{"service_request_id", "service_code", "status"} {
		t.Run(param+" over the cap", func(t *testing.T) {
			r := api.open311(t, "GET", "/open311/v2/requests.json", url.Values{"api_key": {api.Token}, param: {list(101, "x%d")}})
			wantOpen311Error(t, r, "json", 400, 400, param+": more than 100 entries")
		})
		t.Run(param+" over the cap by repeating it", func(t *testing.T) {
			form := url.Values{"api_key": {api.Token}}
			for range 101 {
				form.Add(param, "open")
			}
			r := api.open311(t, "GET", "/open311/v2/requests.json", form)
			wantOpen311Error(t, r, "json", 400, 400, param+": more than 100 entries")
		})
		t.Run(param+" holding NUL", func(t *testing.T) {
			r := api.open311(t, "GET", "/open311/v2/requests.json", url.Values{"api_key": {api.Token}, param: {"a,b\x00c"}})
			wantOpen311Error(t, r, "json", 400, 400, param+": an entry holds the control character U+0000")
		})
	}
	t.Run("a list of 100 answers, its duplicates once", func(t *testing.T) {
		ids := list(50, "no-such-request-%d") + "," + list(50, "no-such-request-%d")
		r := api.open311(t, "GET", "/open311/v2/requests.json", url.Values{"api_key": {api.Token}, "service_request_id": {ids}})
		if r.status != http.StatusOK {
			t.Errorf("GET with 100 entries: %d %s", r.status, r.body)
		}
	})
	t.Run("one request by an id holding NUL is not found", func(t *testing.T) {
		r := api.open311(t, "GET", "/open311/v2/requests/abc%00def.json", url.Values{"api_key": {api.Token}})
		wantOpen311Error(t, r, "json", 404, 404, "was not found")
	})
}
