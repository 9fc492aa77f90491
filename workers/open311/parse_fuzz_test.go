package open311

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
)

// FuzzOpen311Submission parses any form body as POST requests does and
// validates the submission it makes. It checks that nothing panics; that
// every refusal names the field as the client sent it; and that a
// submission accepted is clean text and is one the desk API accepts too,
// from its canonical encoding, unchanged.
func FuzzOpen311Submission(f *testing.F) {
	for _, body := range []string{
		"service_code=driving-licence-renewal&attribute[citizen_national_id]=87654321&attribute[citizen_name]=%CE%9C%CE%B1%CF%81%CE%AF%CE%B1" +
			"&attribute[licence_number]=L-7654321&attribute[categories][]=B&attribute[categories][]=C&attribute[medical_certificate_date]=2026-01-15&account_id=m-7",
		"service_code=change-of-address&attribute[citizen_national_id]=12345678&first_name=Maria&last_name=Silva" +
			"&attribute[street]=Rua+Augusta+1&attribute[postal_code]=1100-048&attribute[locality]=Lisboa",
		"service_code=tax-id-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=Rui&attribute[tax_number]=123456789&attribute[year]=2025",
		"service_code=tax-id-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=Rui&attribute[tax_number]=1&attribute[year]=0x1p4",
		"service_code=patent-application&attribute[citizen_national_id]=12345678&attribute[citizen_name]=Rui&attribute[title]=T&attribute[summary]=a%0D%0Ab%09c&attribute[inventors]=2",
		"service_code=birth-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=A%E2%80%AEB&attribute[format]=paper",
		"service_code=birth-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=A%00&attribute[format]=paper",
		"service_code=birth-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=A%FF&attribute[format]=paper&attribute[format]=online",
		"service_code=birth-certificate&attribute[citizen_national_id]=12345678&attribute[citizen_name]=A&attribute[format%00]=paper",
	} {
		f.Add(body)
	}
	catalog := eventstest.Catalog(f)
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return // answered 400 before any of this
		}
		sub, status, desc := submission(form, catalog)
		if desc != "" {
			if !namesAField(desc) || status < 400 || status > 499 {
				t.Fatalf("refused %q with %d %q, which names no field", body, status, desc)
			}
			return
		}
		if _, err := catalog.Validate(sub); err != nil {
			var fe *events.FieldError
			if !errors.As(err, &fe) || fe.Field == "" || !namesAField(fieldName(fe.Field)+": "+fe.Message) {
				t.Fatalf("Validate refused %q without naming a field: %v", body, err)
			}
			return
		}
		for field, v := range map[string]string{"service_code": sub.ServiceCode, "citizen.name": sub.Citizen.Name, "mediator": sub.Mediator} {
			if fault := events.TextFault(v, false); fault != "" {
				t.Fatalf("accepted %s %q from %q, which %s", field, v, body, fault)
			}
		}
		canonical, err := json.Marshal(sub)
		if err != nil {
			t.Fatalf("encode the accepted %q: %v", body, err)
		}
		// What Open311 accepts, the desk API accepts: the same checks.
		desk, fe := events.DecodeSubmission(canonical)
		if fe != nil {
			t.Fatalf("the desk API refuses %s, accepted from the form %q: %+v", canonical, body, fe)
		}
		if _, err := catalog.Validate(desk); err != nil {
			t.Fatalf("the desk API refuses %s, accepted from the form %q: %v", canonical, body, err)
		}
		if again, _ := json.Marshal(desk); !bytes.Equal(again, canonical) {
			t.Fatalf("the canonical form changed on a round trip:\n%s\n%s", canonical, again)
		}
	})
}

// namesAField reports whether an error description starts with the name
// of a field of POST requests, as the client sent it.
func namesAField(desc string) bool {
	for _, p := range []string{"service_code", "attribute[", `"attribute[`, "account_id", "first_name", "last_name"} {
		if strings.HasPrefix(desc, p) {
			return true
		}
	}
	return false
}

// FuzzOpen311RequestsQuery parses any query string as GET requests does.
// It checks that nothing panics; that every refusal names the argument;
// and that a query accepted is within the documented bounds: lists of at
// most 100 distinct, clean entries, as the naive reading finds them, and
// dates at most 90 days apart.
func FuzzOpen311RequestsQuery(f *testing.F) {
	for _, q := range []string{
		"service_request_id=a,b,,a&service_code=x",
		"service_code=change-of-address,birth-certificate&status=open,closed&start_date=2026-01-01T00:00:00Z&end_date=2026-02-01",
		"status=open&status=open,closed&end_date=2026-01-01",
		"start_date=2026-03-01&end_date=2026-01-01",
		"service_request_id=" + strings.Repeat("id,", 101),
		"service_code=a%00b",
		"service_request_id=x&service_code=" + strings.Repeat("c,", 200),
		"status=pending",
	} {
		f.Add(q)
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, query string) {
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, desc := requestsQuery(form, "desk-1", now)
		if desc != "" {
			if !slices.ContainsFunc([]string{"service_request_id", "service_code", "status", "start_date", "end_date"},
				func(p string) bool { return strings.HasPrefix(desc, p) }) {
				t.Fatalf("refused %q with %q, which names no argument", query, desc)
			}
			return
		}
		if q.DeskID != "desk-1" || q.Limit != requestsLimit {
			t.Fatalf("query %+v is not the desk's, or not capped", q)
		}
		for _, name := range []string{"service_request_id", "service_code", "status"} {
			if n := naiveCount(form, name); n > maxListEntries && (len(q.IDs) == 0 || name == "service_request_id") {
				t.Fatalf("%s: %d entries accepted from %q", name, n, query)
			}
		}
		for name, got := range map[string][]string{"service_request_id": q.IDs, "service_code": q.ServiceCodes} {
			if want := naiveList(form, name); len(q.IDs) == 0 || name == "service_request_id" {
				if !slices.Equal(got, want) {
					t.Fatalf("%s of %q read as %q, want %q", name, query, got, want)
				}
			}
			for _, e := range got {
				if e == "" || events.TextFault(e, false) != "" {
					t.Fatalf("%s: accepted the entry %q", name, e)
				}
			}
		}
		if len(q.IDs) > 0 {
			return
		}
		if q.To.Before(q.From) || q.To.Sub(q.From) > requestsWindow {
			t.Fatalf("dates from %s to %s accepted from %q", q.From, q.To, query)
		}
		for _, s := range q.Statuses {
			if !s.Valid() {
				t.Fatalf("status %q accepted", s)
			}
		}
	})
}

// naiveList is the plain quadratic reading of a comma list the fuzz
// target holds commaList to, on lists small enough.
func naiveList(form url.Values, name string) []string {
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

// naiveCount counts the entries of a comma list as sent.
func naiveCount(form url.Values, name string) int {
	n := 0
	for _, v := range form[name] {
		for _, item := range strings.Split(v, ",") {
			if strings.TrimSpace(item) != "" {
				n++
			}
		}
	}
	return n
}
