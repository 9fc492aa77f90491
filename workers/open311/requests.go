package open311

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// requestView is a request as GET requests shows it.
type requestView struct {
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

type requestList struct {
	Requests []requestView `xml:"request"`
}

// w3 is the specification's date-time format: ISO 8601 with a time zone.
func w3(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (a *API) view(catalog *events.Catalog, lang string, s events.RequestSummary) requestView {
	v := requestView{
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

func (a *API) writeRequests(w http.ResponseWriter, r *http.Request, format string, found []events.RequestSummary) {
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	list := make([]requestView, len(found))
	for i, s := range found {
		list[i] = a.view(catalog, lang, s)
	}
	w.Header().Set("Content-Language", lang)
	if format == "json" {
		write(w, format, http.StatusOK, "service_requests", list)
		return
	}
	write(w, format, http.StatusOK, "service_requests", requestList{list})
}

// maxListEntries caps the entries of a comma list argument of GET
// requests (service_request_id, service_code, status), as sent: duplicates
// count.
const maxListEntries = 100

// commaList gathers a parameter given as a comma-separated list, several
// times, or both, in the order given and without duplicates, in time
// linear in its length. It refuses, with a description that names the
// parameter, more than maxListEntries entries and an entry that is not
// clean text (events.TextFault).
func commaList(form url.Values, name string) ([]string, string) {
	var out []string
	var seen map[string]struct{}
	entries := 0
	for _, v := range form[name] {
		for rest := v; rest != ""; {
			var item string
			item, rest, _ = strings.Cut(rest, ",")
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if entries++; entries > maxListEntries {
				return nil, fmt.Sprintf("%s: more than %d entries", name, maxListEntries)
			}
			if fault := events.TextFault(item, false); fault != "" {
				return nil, fmt.Sprintf("%s: an entry %s", name, fault)
			}
			if seen == nil {
				seen = make(map[string]struct{})
			}
			if _, dup := seen[item]; !dup {
				seen[item] = struct{}{}
				out = append(out, item)
			}
		}
	}
	return out, ""
}

// parseW3 reads a date-time in the specification's format, or a date (taken
// as midnight UTC).
func parseW3(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

// requestsQuery reads the arguments of GET requests into a query of
// desk's requests as of now. When they are wrong, desc says why, naming the
// argument as the client sent it, and q is empty.
func requestsQuery(form url.Values, desk string, now time.Time) (q events.RequestQuery, desc string) {
	q = events.RequestQuery{DeskID: desk, Limit: requestsLimit, NoTraining: true}
	ids, desc := commaList(form, "service_request_id")
	if desc != "" {
		return events.RequestQuery{}, desc
	}
	if len(ids) > 0 {
		// The specification: this overrides all other arguments.
		q.IDs = ids
		return q, ""
	}
	if q.ServiceCodes, desc = commaList(form, "service_code"); desc != "" {
		return events.RequestQuery{}, desc
	}
	statuses, desc := commaList(form, "status")
	if desc != "" {
		return events.RequestQuery{}, desc
	}
	for _, st := range statuses {
		if st != "open" && st != "closed" {
			return events.RequestQuery{}, fmt.Sprintf("status %q is neither open nor closed", st)
		}
		for _, s := range events.Statuses {
			if s.Open311() == st {
				q.Statuses = append(q.Statuses, s)
			}
		}
	}
	if q.From, q.To, desc = window(form, now); desc != "" {
		return events.RequestQuery{}, desc
	}
	return q, ""
}

// window reads start_date and end_date: both included, at most
// requestsWindow apart; the most recent requestsWindow when neither is
// given, and requestsWindow from the one given otherwise. When they are
// wrong, desc says why.
func window(form url.Values, now time.Time) (from, to time.Time, desc string) {
	var err error
	for _, d := range []struct {
		param string
		into  *time.Time
	}{{"start_date", &from}, {"end_date", &to}} {
		if v := form.Get(d.param); v != "" {
			if *d.into, err = parseW3(v); err != nil {
				return from, to, fmt.Sprintf("%s %q is not a w3 date-time such as 2010-01-01T00:00:00Z", d.param, v)
			}
		}
	}
	switch {
	case from.IsZero() && to.IsZero():
		from, to = now.Add(-requestsWindow), now
	case to.IsZero():
		to = from.Add(requestsWindow)
	case from.IsZero():
		from = to.Add(-requestsWindow)
	case to.Before(from):
		return from, to, "end_date is before start_date"
	case to.Sub(from) > requestsWindow:
		return from, to, "start_date and end_date may not span more than 90 days"
	}
	return from, to, ""
}

func (a *API) serveRequests(w http.ResponseWriter, r *http.Request, format string) {
	_ = r.ParseForm()
	// By service_request_id anyone may read, as clients that send api_key
	// only with a POST do; a listing by date, service or status is the
	// desk's alone.
	byID := r.Form.Get("service_request_id") != ""
	desk, ok := a.authenticate(w, r, format, !byID)
	if !ok {
		return
	}
	q, desc := requestsQuery(r.Form, desk.ID, time.Now())
	if desc != "" {
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, desc)
		return
	}
	a.search(w, r, format, q)
}

func (a *API) search(w http.ResponseWriter, r *http.Request, format string, q events.RequestQuery) {
	found, err := a.cfg.Store.SearchRequests(r.Context(), q)
	if err != nil {
		a.cfg.Logger.Error("open311: search requests", "desk", q.DeskID, "err", err)
		writeUnavailable(w, format, "cannot read requests right now; retry later")
		return
	}
	a.writeRequests(w, r, format, found)
}

// findOne reads one request of the desk by id, answering 404 when the
// desk has none with that id. ok is false once it has answered.
func (a *API) findOne(w http.ResponseWriter, r *http.Request, name, what string) (found events.RequestSummary, format string, ok bool) {
	id, format, ok := splitPathFormat(w, r, name)
	if !ok {
		return found, format, false
	}
	_ = r.ParseForm()
	// Anyone who has a request's ID may read it: IDs are unguessable, and
	// what is shown holds no personal data.
	desk, ok := a.authenticate(w, r, format, false)
	if !ok {
		return found, format, false
	}
	if events.TextFault(id, false) != "" {
		// No request has such an id; the database would refuse to look.
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("%s %q was not found", what, id))
		return found, format, false
	}
	list, err := a.cfg.Store.SearchRequests(r.Context(), events.RequestQuery{DeskID: desk.ID, IDs: []string{id}, Limit: 1, NoTraining: true})
	if err != nil {
		a.cfg.Logger.Error("open311: read request", "desk", desk.ID, "err", err)
		writeUnavailable(w, format, "cannot read requests right now; retry later")
		return found, format, false
	}
	if len(list) == 0 {
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("%s %q was not found", what, id))
		return found, format, false
	}
	return list[0], format, true
}

func (a *API) serveRequest(w http.ResponseWriter, r *http.Request) {
	found, format, ok := a.findOne(w, r, "id", "service_request_id")
	if !ok {
		return
	}
	a.writeRequests(w, r, format, []events.RequestSummary{found})
}

// tokenView is the answer to GET tokens/{token}.
type tokenView struct {
	ServiceRequestID string `xml:"service_request_id" json:"service_request_id"`
	Token            string `xml:"token" json:"token"`
}

type tokenList struct {
	Requests []tokenView `xml:"request"`
}

func (a *API) serveToken(w http.ResponseWriter, r *http.Request) {
	found, format, ok := a.findOne(w, r, "token", "token")
	if !ok {
		return
	}
	view := tokenView{ServiceRequestID: found.ID, Token: found.ID}
	if format == "json" {
		write(w, format, http.StatusOK, "service_requests", []tokenView{view})
		return
	}
	write(w, format, http.StatusOK, "service_requests", tokenList{[]tokenView{view}})
}
