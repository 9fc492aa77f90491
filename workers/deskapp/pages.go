package deskapp

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// requestLine is a request in a list.
type requestLine struct {
	ID, Service, Status, StatusName string
	Note                            string
	SubmittedAt, UpdatedAt          time.Time
	Open, Training                  bool
}

func (a *App) linesOf(found []events.RequestSummary, lang string) []requestLine {
	c := a.cfg.Catalog.Current()
	out := make([]requestLine, 0, len(found))
	for _, f := range found {
		name := f.ServiceCode
		if svc, ok := c.Service(f.ServiceCode); ok {
			name = svc.Name.In(lang)
		}
		out = append(out, requestLine{ID: f.ID, Service: name, Status: string(f.Status), StatusName: a.i18n.text(lang, "status."+string(f.Status)),
			Note: f.Note, SubmittedAt: f.SubmittedAt, UpdatedAt: f.UpdatedAt, Open: !f.Status.Terminal(), Training: f.Training})
	}
	return out
}

// homeData is what the desk's home shows: the visit under way or the form
// that starts one, and the desk's requests of today and those still open.
type homeData struct {
	Visit            *visitView
	Citizen          events.Citizen
	CitizenLanguage  string
	Today, StillOpen []requestLine
	// The filters: a status ("open", "closed" or one of spotflow's) and a
	// service, with their choices.
	Status, Service string
	Statuses        []option
	Services        []option
	Notice          string
}

func (a *App) home(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.renderHome(w, r, s, http.StatusOK, nil, nil, "")
}

// renderHome shows the home page; citizen and citizenLang are what was
// typed into the form that starts a visit, when it was refused.
func (a *App) renderHome(w http.ResponseWriter, r *http.Request, s *events.Session, status int, errs []fieldError, citizen *events.Citizen, citizenLang string) {
	lang := a.languageOf(r, s)
	c := a.cfg.Catalog.Current()
	q := r.URL.Query()
	data := homeData{Status: q.Get("status"), Service: q.Get("service"), CitizenLanguage: cmp.Or(citizenLang, lang)}
	if citizen != nil {
		data.Citizen = *citizen
	}
	for _, n := range []string{"visit-ended", "no-visit", "training-on", "training-off"} {
		if q.Get(n) != "" {
			data.Notice = a.i18n.text(lang, "notice."+n)
		}
	}
	v, err := a.openVisit(r, s)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	if v != nil {
		vv := a.viewOf(v, lang)
		data.Visit = &vv
	}
	for _, st := range append([]string{"open", "closed"}, statusNames()...) {
		data.Statuses = append(data.Statuses, option{Key: st, Name: a.i18n.text(lang, "status."+st), Checked: st == data.Status})
	}
	for _, svc := range c.Services {
		data.Services = append(data.Services, option{Key: svc.Code, Name: svc.Name.In(lang), Checked: svc.Code == data.Service})
	}
	slices.SortFunc(data.Services, func(x, y option) int { return strings.Compare(fold(x.Name), fold(y.Name)) })

	query := events.RequestQuery{DeskID: s.Desk.ID, Limit: 200}
	switch data.Status {
	case "":
	case "open", "closed":
		for _, st := range events.Statuses {
			if st.Open311() == data.Status {
				query.Statuses = append(query.Statuses, st)
			}
		}
	default:
		query.Statuses = []events.Status{events.Status(data.Status)}
	}
	if data.Service != "" {
		query.ServiceCodes = []string{data.Service}
	}
	now := time.Now()
	today := query
	today.From, today.To = midnight(now), now
	found, err := a.cfg.Store.SearchRequests(r.Context(), today)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	data.Today = a.linesOf(found, lang)
	open := query
	open.From, open.To = now.Add(-90*24*time.Hour), midnight(now)
	if data.Status == "" {
		for _, st := range events.Statuses {
			if !st.Terminal() {
				open.Statuses = append(open.Statuses, st)
			}
		}
	}
	if found, err = a.cfg.Store.SearchRequests(r.Context(), open); err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	data.StillOpen = a.linesOf(found, lang)
	a.render(w, r, status, "home", lang, s, errs, data)
}

func midnight(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

func statusNames() []string {
	out := make([]string, len(events.Statuses))
	for i, st := range events.Statuses {
		out[i] = string(st)
	}
	return out
}

// requestData is what a request's page shows.
type requestData struct {
	ID, Service, Status, StatusName, Mediator, VisitID string
	Open, Training                                     bool
	SubmittedAt, UpdatedAt, Expected                   time.Time
	Consent                                            *events.ConsentGiven
	WorkItems                                          []workItemLine
	Timeline                                           []timelineLine
}

type workItemLine struct {
	Agency, Status, StatusName string
	UpdatedAt                  time.Time
}

type timelineLine struct {
	At                         time.Time
	Agency, Status, StatusName string
	Note                       string
}

func (a *App) requestPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	lang := a.languageOf(r, s)
	id := r.PathValue("id")
	if events.TextFault(id, false) != "" {
		// No request has such an id; the database would refuse to look.
		a.notFound(w, r, lang)
		return
	}
	v, err := a.cfg.Store.RequestForDesk(r.Context(), s.Desk.ID, id)
	if errors.Is(err, events.ErrNotFound) {
		a.notFound(w, r, lang)
		return
	}
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	c := a.cfg.Catalog.Current()
	data := requestData{ID: v.ID, Service: v.ServiceCode, Status: string(v.Status), StatusName: a.i18n.text(lang, "status."+string(v.Status)),
		Mediator: v.Mediator, VisitID: v.VisitID, Open: !v.Status.Terminal(), Training: v.Training, SubmittedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Consent: v.Consent}
	if svc, ok := c.Service(v.ServiceCode); ok {
		data.Service, data.Expected = svc.Name.In(lang), v.CreatedAt.Add(svc.SLA())
	}
	for _, wi := range v.WorkItems {
		data.WorkItems = append(data.WorkItems, workItemLine{Agency: agencyName(c, wi.Agency, lang), Status: string(wi.Status),
			StatusName: a.i18n.text(lang, "status."+string(wi.Status)), UpdatedAt: wi.UpdatedAt})
	}
	for _, e := range v.Timeline {
		line := timelineLine{At: e.At, Status: string(e.Status), StatusName: a.i18n.text(lang, "status."+string(e.Status)), Note: e.Note}
		if e.Agency != "" {
			line.Agency = agencyName(c, e.Agency, lang)
		}
		data.Timeline = append(data.Timeline, line)
	}
	if r.URL.Query().Get("partial") == "progress" {
		a.renderPart(w, r, "request", "progress", lang, s, data)
		return
	}
	a.render(w, r, http.StatusOK, "request", lang, s, nil, data)
}

// citizenData is what the look-up of a citizen's requests shows.
type citizenData struct {
	NationalID, Reason string
	Searched           bool
	Found              []requestLine
}

func (a *App) citizenPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.render(w, r, http.StatusOK, "citizen", a.languageOf(r, s), s, nil, citizenData{})
}

// citizenLookup finds the citizen's earlier requests at this desk by
// their national ID, through its keyed hash; the mediator says why, and
// the look-up is in the audit log.
func (a *App) citizenLookup(w http.ResponseWriter, r *http.Request, s *events.Session) {
	lang := a.languageOf(r, s)
	data := citizenData{NationalID: strings.TrimSpace(r.PostFormValue("national_id")), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	var errs []fieldError
	var fe *events.FieldError
	if errors.As(events.CheckCitizen(&events.Citizen{NationalID: data.NationalID, Name: "-"}), &fe) {
		errs = append(errs, a.messageOf(fe, nil, lang))
	}
	if data.Reason == "" || len(data.Reason) > 500 || events.TextFault(data.Reason, false) != "" {
		errs = append(errs, fieldError{"reason", a.i18n.text(lang, "error.reason")})
	}
	if len(errs) > 0 {
		a.render(w, r, http.StatusUnprocessableEntity, "citizen", lang, s, errs, data)
		return
	}
	found, err := a.cfg.Store.CitizenRequests(r.Context(), s.Desk.ID, data.NationalID, events.By{Actor: "mediator:" + s.Mediator.Username, Reason: data.Reason})
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	data.Searched, data.Found = true, a.linesOf(found, lang)
	// The page shows the ID masked; the form is empty again.
	data.NationalID = maskID(data.NationalID)
	a.render(w, r, http.StatusOK, "citizen", lang, s, nil, data)
}

func (a *App) settingsPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.render(w, r, http.StatusOK, "settings", a.languageOf(r, s), s, nil, nil)
}

// settings sets the language the application speaks to the mediator in.
func (a *App) settings(w http.ResponseWriter, r *http.Request, s *events.Session) {
	lang := r.PostFormValue("language")
	if !slices.Contains(a.cfg.Catalog.Current().Languages, lang) {
		a.render(w, r, http.StatusUnprocessableEntity, "settings", a.languageOf(r, s), s,
			[]fieldError{{"language-0", a.i18n.text(a.languageOf(r, s), "error.language")}}, nil)
		return
	}
	if err := a.cfg.Store.SetMediatorLanguage(r.Context(), s.Mediator.Username, lang); err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	redirect(w, r, "/desk/")
}

func (a *App) accessibility(w http.ResponseWriter, r *http.Request) {
	var s *events.Session
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ses, err := a.cfg.Store.Session(r.Context(), hashToken(c.Value), a.cfg.SessionIdle); err == nil {
			s = &ses
		}
	}
	a.render(w, r, http.StatusOK, "accessibility", a.languageOf(r, s), s, nil, nil)
}
