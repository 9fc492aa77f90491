package open311_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
)

// updateFields are the fields of an entry of GET servicerequestupdates:
// FixMyStreet's extension, then spotflow's status and the agency.
var updateFields = []string{"update_id", "service_request_id", "status", "updated_datetime", "description", "media_url",
	"external_status_code", "agency_responsible"}

// updateView is an entry of GET servicerequestupdates, read from either
// format.
type updateView struct {
	ID, Request, Status, Updated, Description, Media, External, Agency string
}

func readUpdates(t *testing.T, r reply, format string) []updateView {
	t.Helper()
	var out []updateView
	for _, u := range readEntries(t, r, format, "service_request_updates", "request_update", updateFields) {
		out = append(out, updateView{u["update_id"], u["service_request_id"], u["status"], u["updated_datetime"],
			u["description"], u["media_url"], u["external_status_code"], u["agency_responsible"]})
	}
	return out
}

func TestOpen311_ServesADesksUpdatesAsFixMyStreetFollowsThem(t *testing.T) {
	t.Parallel()
	api := startIntake(t, nil)
	submit := func(token, service string) string {
		f := licenceForm(api)
		f.Set("api_key", token)
		if service != "" {
			f.Set("service_code", service)
			for _, k := range []string{"attribute[licence_number]", "attribute[categories][]", "attribute[medical_certificate_date]"} {
				f.Del(k)
			}
			f.Set("attribute[purpose]", "employment")
		}
		id, _, _ := createdID(t, api.open311(t, "POST", "/open311/v2/requests.xml", f), "xml")
		return id
	}
	record := submit(api.Token, "criminal-record-certificate")
	licence := submit(api.Token, "")
	_, otherToken, err := api.Store.CreateDesk(t.Context(), "lisboa", "Junta de Freguesia de Arroios")
	if err != nil {
		t.Fatal(err)
	}
	theirs := submit(otherToken, "criminal-record-certificate")
	// The certificate is routed now and issued a second later; the licence
	// and the other desk's request are only submitted.
	routedAt := time.Now().UTC()
	project(t, api, published(t, api, record), events.StatusCompleted, routedAt)
	mustProjectSubmitted(t, api, published(t, api, licence), published(t, api, theirs))

	key := func(kv ...string) url.Values {
		q := url.Values{"api_key": {api.Token}}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Add(kv[i], kv[i+1])
		}
		return q
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			path := "/open311/v2/servicerequestupdates." + format
			// Until an hour from now: the completion is a second ahead.
			r := api.open311(t, "GET", path, key("lang", "pt", "end_date", w3(time.Now().Add(time.Hour))))
			all := readUpdates(t, r, format)
			var got []string
			for _, u := range all {
				who := map[string]string{record: "record", licence: "licence", theirs: "theirs"}[u.Request]
				got = append(got, who+" "+u.External+" "+u.Status)
				if !strings.HasPrefix(u.ID, u.Request) {
					t.Errorf("update_id %q is not one of request %s's events", u.ID, u.Request)
				}
				if _, err := time.Parse(time.RFC3339, u.Updated); err != nil || !strings.HasSuffix(u.Updated, "Z") {
					t.Errorf("updated_datetime %q is not an ISO 8601 date-time in UTC", u.Updated)
				}
				if u.Media != "" {
					t.Errorf("media_url %q, want none", u.Media)
				}
			}
			// Oldest first: both submissions (in the order they were made),
			// then the certificate's routing and completion by its agency,
			// which closes it.
			want := []string{"record submitted open", "licence submitted open", "record routed open", "record completed closed", "record completed closed"}
			if !slices.Equal(got, want) {
				t.Fatalf("updates %q, want %q", got, want)
			}
			if done := all[3]; done.Agency != "Serviços de Identificação Criminal" || done.Description != "Certificado emitido" || done.Updated != w3(routedAt.Add(time.Second)) {
				t.Errorf("the agency's completion = %+v, want its name in Portuguese, its note and its time", done)
			}
			if whole := all[4]; whole.Agency != "" || whole.ID == all[3].ID {
				t.Errorf("the request's completion = %+v, want no agency and its own update_id", whole)
			}
			for _, personal := range []string{"87654321", "Μαρία", "L-7654321", "mediador-7", "maria@example.org", "38.7139", "Renovação"} {
				if strings.Contains(string(r.body), personal) {
					t.Errorf("GET servicerequestupdates shows %q, which is personal data", personal)
				}
			}

			// A window, both ends included, as FixMyStreet polls.
			within := readUpdates(t, api.open311(t, "GET", path, key("start_date", routedAt.Format(time.RFC3339Nano), "end_date", routedAt.Add(time.Second).Format(time.RFC3339Nano))), format)
			if len(within) != 3 || within[0].External != "routed" || within[2].Status != "closed" {
				t.Errorf("updates from the routing to the completion = %+v", within)
			}
			if later := readUpdates(t, api.open311(t, "GET", path, key("start_date", w3(time.Now().Add(time.Minute)))), format); len(later) != 0 {
				t.Errorf("updates after now = %+v", later)
			}
			// The other desk sees its own only.
			other := readUpdates(t, api.open311(t, "GET", path, url.Values{"api_key": {otherToken}, "end_date": {w3(time.Now().Add(time.Hour))}}), format)
			if len(other) != 1 || other[0].Request != theirs {
				t.Errorf("the other desk's updates = %+v, want its submission only", other)
			}

			refusals := []struct {
				name   string
				query  url.Values
				status int
				desc   string
			}{
				{"no api_key", url.Values{}, 403, "api_key was not provided"},
				{"an unknown api_key", url.Values{"api_key": {"nope"}}, 403, "invalid api_key"},
				{"another jurisdiction", key("jurisdiction_id", "porto"), 404, `jurisdiction_id "porto" was not found`},
				{"a bad date", key("end_date", "yesterday"), 400, `end_date "yesterday" is not a w3 date-time`},
				{"a window over 90 days", key("start_date", "2026-01-01T00:00:00Z", "end_date", "2026-06-01T00:00:00Z"), 400, "may not span more than 90 days"},
				{"an end before the start", key("start_date", "2026-02-01T00:00:00Z", "end_date", "2026-01-01T00:00:00Z"), 400, "end_date is before start_date"},
			}
			for _, rf := range refusals {
				t.Run(rf.name, func(t *testing.T) {
					wantOpen311Error(t, api.open311(t, "GET", path, rf.query), format, rf.status, rf.status, rf.desc)
				})
			}
		})
	}
}

// mustProjectSubmitted projects requests as submitted, and no further.
func mustProjectSubmitted(t *testing.T, api *deskAPI, reqs ...events.Request) {
	t.Helper()
	changes := make([]events.Change, len(reqs))
	for i := range reqs {
		changes[i] = events.Change{Request: &reqs[i]}
	}
	for i, err := range api.Store.Project(t.Context(), changes) {
		if err != nil {
			t.Fatalf("project request %d: %v", i, err)
		}
	}
}
