package deskapp

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// maskID shows a national ID's last three characters only.
func maskID(id string) string {
	if len(id) <= 3 {
		return strings.Repeat("•", len(id))
	}
	return strings.Repeat("•", len(id)-3) + id[len(id)-3:]
}

// visitView is a visit as its pages show it.
type visitView struct {
	ID, CitizenName, MaskedID string
	Language, LanguageName    string
	Consent                   *events.ConsentGiven
	Services                  []visitServiceView
	// Training marks a practice visit.
	Training bool
}

type visitServiceView struct {
	N                          int
	Code, Name                 string
	RequestID                  string
	Started, Submitted, Failed bool
}

func (a *App) viewOf(v *events.Visit, lang string) visitView {
	c := a.cfg.Catalog.Current()
	vv := visitView{ID: v.ID, CitizenName: v.Citizen.Name, MaskedID: maskID(v.Citizen.NationalID),
		Language: v.Language, LanguageName: a.i18n.text(v.Language, "language.name"), Consent: v.Consent, Training: v.Training}
	for _, s := range v.Services {
		name := s.ServiceCode
		if svc, ok := c.Service(s.ServiceCode); ok {
			name = svc.Name.In(lang)
		}
		vv.Services = append(vv.Services, visitServiceView{N: s.N, Code: s.ServiceCode, Name: name, RequestID: s.RequestID,
			Started: len(s.Answers) > 0, Submitted: s.RequestID != ""})
	}
	return vv
}

// openVisit is the mediator's visit under way; nil, with no error, when
// there is none.
func (a *App) openVisit(r *http.Request, s *events.Session) (*events.Visit, error) {
	v, err := a.cfg.Store.OpenVisit(r.Context(), s.Mediator.Username)
	if errors.Is(err, events.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// withVisit serves h with the mediator's visit under way, or sends them
// home to start one.
func (a *App) withVisit(w http.ResponseWriter, r *http.Request, s *events.Session, h func(v *events.Visit)) {
	v, err := a.openVisit(r, s)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	if v == nil {
		redirect(w, r, "/desk/?no-visit=1")
		return
	}
	h(v)
}

// startVisit starts a visit for the citizen typed on the home page,
// checked as the API checks a citizen, then asks for their consent.
func (a *App) startVisit(w http.ResponseWriter, r *http.Request, s *events.Session) {
	lang := a.languageOf(r, s)
	citizen := events.Citizen{NationalID: strings.TrimSpace(r.PostFormValue("national_id")), Name: strings.TrimSpace(r.PostFormValue("name"))}
	citizenLang := a.cfg.Catalog.Current().Language(r.PostFormValue("language"))
	var errs []fieldError
	var fe *events.FieldError
	if errors.As(events.CheckCitizen(&citizen), &fe) {
		errs = append(errs, a.messageOf(fe, nil, lang))
	}
	if fe != nil && fe.Field == "citizen.national_id" {
		// The name is checked too, so that both are said at once.
		var name *events.FieldError
		if errors.As(events.CheckCitizen(&events.Citizen{NationalID: "0000", Name: citizen.Name}), &name) {
			errs = append(errs, a.messageOf(name, nil, lang))
		}
	}
	if len(errs) > 0 {
		a.renderHome(w, r, s, http.StatusUnprocessableEntity, errs, &citizen, citizenLang)
		return
	}
	if _, err := a.cfg.Store.StartVisit(r.Context(), events.Visit{DeskID: s.Desk.ID, Username: s.Mediator.Username, Citizen: citizen,
		Language: citizenLang, Training: s.Training}); err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	redirect(w, r, "/desk/visit/consent")
}

func (a *App) visitPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		lang := a.languageOf(r, s)
		a.step(r, v.ID, "visit")
		a.render(w, r, http.StatusOK, "visit", lang, s, nil, a.viewOf(v, lang))
	})
}

func (a *App) endVisit(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		if err := a.cfg.Store.EndVisit(r.Context(), v.ID, s.Mediator.Username); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		a.step(r, v.ID, "ended")
		redirect(w, r, "/desk/?visit-ended=1")
	})
}

// consentData is what the consent page shows: the catalogue's text in the
// citizen's language, which the mediator may change.
type consentData struct {
	Visit   visitView
	Version string
	Text    string
	Given   bool
}

func (a *App) consentPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		a.step(r, v.ID, "consent")
		a.renderConsent(w, r, s, v, http.StatusOK, nil)
	})
}

func (a *App) renderConsent(w http.ResponseWriter, r *http.Request, s *events.Session, v *events.Visit, status int, errs []fieldError) {
	lang := a.languageOf(r, s)
	c := a.cfg.Catalog.Current()
	citizenLang := v.Language
	if l := r.URL.Query().Get("in"); l != "" {
		citizenLang = c.Language(l)
	}
	data := consentData{Visit: a.viewOf(v, lang), Given: v.Consent != nil}
	data.Visit.Language, data.Visit.LanguageName = citizenLang, a.i18n.text(citizenLang, "language.name")
	if c.Consent != nil {
		data.Version, data.Text = c.Consent.Version, c.Consent.Text.In(citizenLang)
	}
	a.render(w, r, status, "consent", lang, s, errs, data)
}

// consent records the citizen's consent to the version of the text shown,
// in the language shown.
func (a *App) consent(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		c := a.cfg.Catalog.Current()
		lang := a.languageOf(r, s)
		if r.PostFormValue("consent") != "yes" || c.Consent == nil || r.PostFormValue("version") != c.Consent.Version {
			a.renderConsent(w, r, s, v, http.StatusUnprocessableEntity, []fieldError{{"consent", a.i18n.text(lang, "error.consent")}})
			return
		}
		err := a.cfg.Store.RecordConsent(r.Context(), v.ID, s.Mediator.Username, c.Consent.Version, c.Language(r.PostFormValue("language")))
		if err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		redirect(w, r, "/desk/services")
	})
}

// addService adds a service to the visit and opens its form.
func (a *App) addService(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		code := r.PostFormValue("service")
		if svc, ok := a.cfg.Catalog.Current().Service(code); !ok || !practisable(v, svc) {
			a.notFound(w, r, a.languageOf(r, s))
			return
		}
		n, err := a.cfg.Store.AddVisitService(r.Context(), v.ID, s.Mediator.Username, code)
		if err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		redirect(w, r, "/desk/visit/services/"+strconv.Itoa(n))
	})
}

// visitService finds service {n} of the visit under way and its catalogue
// entry, answering 404 itself when there is none.
func (a *App) visitService(w http.ResponseWriter, r *http.Request, s *events.Session, h func(v *events.Visit, vs *events.VisitService, svc *events.Service)) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		i := slices.IndexFunc(v.Services, func(vs events.VisitService) bool { return vs.N == n })
		if i < 0 {
			a.notFound(w, r, a.languageOf(r, s))
			return
		}
		svc, ok := a.cfg.Catalog.Current().Service(v.Services[i].ServiceCode)
		if !ok {
			a.notFound(w, r, a.languageOf(r, s))
			return
		}
		h(v, &v.Services[i], svc)
	})
}

// formData is what a service's form shows.
type formData struct {
	Visit     visitView
	N         int
	Service   serviceView
	Fields    []field
	Documents []option
}

func (a *App) formOf(v *events.Visit, vs *events.VisitService, svc *events.Service, lang string, errs []fieldError) formData {
	c := a.cfg.Catalog.Current()
	data := formData{Visit: a.viewOf(v, lang), N: vs.N, Service: a.serviceViewOf(svc, lang), Fields: fieldsOf(svc, lang, vs.Answers)}
	for _, d := range svc.Documents {
		data.Documents = append(data.Documents, option{Key: d, Name: documentName(c, d, lang), Checked: slices.Contains(vs.Documents, d)})
	}
	for i := range data.Fields {
		for _, e := range errs {
			if e.ID == data.Fields[i].ID || e.ID == data.Fields[i].ID+"-0" {
				data.Fields[i].Error = e.Message
			}
		}
	}
	return data
}

func (a *App) formPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		if vs.RequestID != "" {
			redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N)+"/done")
			return
		}
		lang := a.languageOf(r, s)
		a.step(r, v.ID, "form:"+strconv.Itoa(vs.N))
		a.render(w, r, http.StatusOK, "form", lang, s, nil, a.formOf(v, vs, svc, lang, nil))
	})
}

// submissionOf is what service vs of visit v submits, as the mediator
// signed in.
func submissionOf(v *events.Visit, vs *events.VisitService, s *events.Session) *events.Submission {
	citizen := v.Citizen
	return &events.Submission{ServiceCode: vs.ServiceCode, Citizen: &citizen, Attributes: vs.Answers,
		VisitID: v.ID, Mediator: s.Mediator.Username, Consent: v.Consent}
}

// problems checks what service vs would submit as the API would, and that
// every document the service asks for was seen.
func (a *App) problems(v *events.Visit, vs *events.VisitService, svc *events.Service, s *events.Session, lang string) []fieldError {
	// In the order of the form: the documents, then the answers.
	var errs []fieldError
	c := a.cfg.Catalog.Current()
	for i, d := range svc.Documents {
		if !slices.Contains(vs.Documents, d) {
			errs = append(errs, fieldError{"doc-" + strconv.Itoa(i), a.i18n.text(lang, "error.document", documentName(c, d, lang))})
		}
	}
	sub := submissionOf(v, vs, s)
	sub.Consent = nil // asked for on the check page
	for _, p := range c.Problems(sub) {
		errs = append(errs, a.messageOf(p, svc, lang))
	}
	return errs
}

// saveForm keeps the answers (sealed) and the documents seen, then checks
// them: the form again with every problem, or on to checking the answers.
func (a *App) saveForm(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		if vs.RequestID != "" {
			redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N)+"/done")
			return
		}
		lang := a.languageOf(r, s)
		_ = r.ParseForm()
		vs.Answers, vs.Documents = answersOf(svc, r.PostForm), documentsOf(svc, r.PostForm)
		if err := a.cfg.Store.SaveVisitAnswers(r.Context(), v.ID, s.Mediator.Username, vs.N, vs.Answers, vs.Documents); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		a.step(r, v.ID, "form:"+strconv.Itoa(vs.N))
		if errs := a.problems(v, vs, svc, s, lang); len(errs) > 0 {
			a.render(w, r, http.StatusUnprocessableEntity, "form", lang, s, errs, a.formOf(v, vs, svc, lang, errs))
			return
		}
		redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N)+"/check")
	})
}

// answerView is one line of the check page: a question, the answer as the
// mediator will read it out, and where to change it.
type answerView struct {
	Label, Value, Change string
}

type checkData struct {
	Visit     visitView
	N         int
	Service   serviceView
	Answers   []answerView
	Documents []string
	Consent   bool
}

func (a *App) checkPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		a.renderCheck(w, r, s, v, vs, svc, http.StatusOK, nil)
	})
}

func (a *App) renderCheck(w http.ResponseWriter, r *http.Request, s *events.Session, v *events.Visit, vs *events.VisitService, svc *events.Service, status int, errs []fieldError) {
	lang := a.languageOf(r, s)
	if vs.RequestID != "" {
		redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N)+"/done")
		return
	}
	if problems := a.problems(v, vs, svc, s, lang); len(problems) > 0 {
		redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N))
		return
	}
	form := a.formOf(v, vs, svc, lang, nil)
	data := checkData{Visit: form.Visit, N: vs.N, Service: form.Service, Consent: v.Consent != nil}
	base := "/desk/visit/services/" + strconv.Itoa(vs.N)
	for _, f := range form.Fields {
		value := f.Value
		switch f.Control {
		case "date":
			value = strings.TrimSpace(f.Date + " " + f.Time)
		case "radios", "select", "checkboxes":
			var names []string
			for _, o := range f.Options {
				if o.Checked {
					names = append(names, o.Name)
				}
			}
			value = strings.Join(names, ", ")
		}
		anchor := f.ID
		if len(f.Options) > 0 && f.Control != "select" {
			anchor += "-0"
		}
		data.Answers = append(data.Answers, answerView{Label: f.Label, Value: value, Change: base + "#" + anchor})
	}
	for _, d := range form.Documents {
		data.Documents = append(data.Documents, d.Name)
	}
	a.step(r, v.ID, "check:"+strconv.Itoa(vs.N))
	a.render(w, r, status, "check", lang, s, errs, data)
}

// submit submits service {n} with its idempotency key, fixed when it was
// added: pressing twice, or again after an error, is the same request.
func (a *App) submit(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		lang := a.languageOf(r, s)
		done := "/desk/visit/services/" + strconv.Itoa(vs.N) + "/done"
		if vs.RequestID != "" {
			redirect(w, r, done)
			return
		}
		if v.Consent == nil {
			a.renderCheck(w, r, s, v, vs, svc, http.StatusUnprocessableEntity, []fieldError{{"consent-link", a.i18n.text(lang, "error.consent.missing")}})
			return
		}
		sub := submissionOf(v, vs, s)
		var err error
		if sub.Practice, err = a.practise(r, v); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		id, _, err := a.cfg.Intake.Accept(r.Context(), s.Desk, vs.IdempotencyKey, sub)
		var fe *events.FieldError
		var th *events.Throttled
		switch {
		case errors.As(err, &fe):
			redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N))
			return
		case errors.As(err, &th):
			w.Header().Set("Retry-After", strconv.Itoa(th.RetryAfterSeconds()))
			a.renderCheck(w, r, s, v, vs, svc, http.StatusTooManyRequests, []fieldError{{"submit", a.i18n.text(lang, "error.throttled", th.RetryAfterSeconds())}})
			return
		case err != nil:
			a.cfg.Logger.Warn("desk application: submit", "visit", v.ID, "n", vs.N, "err", err)
			w.Header().Set("Retry-After", "1")
			a.renderCheck(w, r, s, v, vs, svc, http.StatusServiceUnavailable, []fieldError{{"submit", a.i18n.text(lang, "error.unavailable")}})
			return
		}
		if err := a.cfg.Store.VisitServiceSubmitted(r.Context(), v.ID, vs.N, id); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		redirect(w, r, done)
	})
}

func (a *App) removeService(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		if err := a.cfg.Store.RemoveVisitService(r.Context(), v.ID, s.Mediator.Username, vs.N); err != nil && !errors.Is(err, events.ErrNotFound) {
			a.unavailable(w, r, s, err)
			return
		}
		redirect(w, r, "/desk/visit")
	})
}

type doneData struct {
	Visit     visitView
	Service   serviceView
	RequestID string
	Expected  time.Time
}

func (a *App) donePage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		if vs.RequestID == "" {
			redirect(w, r, "/desk/visit/services/"+strconv.Itoa(vs.N))
			return
		}
		lang := a.languageOf(r, s)
		a.step(r, v.ID, "done:"+strconv.Itoa(vs.N))
		a.render(w, r, http.StatusOK, "done", lang, s, nil, doneData{Visit: a.viewOf(v, lang), Service: a.serviceViewOf(svc, lang),
			RequestID: vs.RequestID, Expected: vs.SubmittedAt.Add(svc.SLA())})
	})
}
