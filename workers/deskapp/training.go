package deskapp

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Training mode: a mediator switches their session to training between
// visits; the visits they then start are practice, limited to the services
// the catalogue lets be practised, and their requests go to the simulated
// practice agency, which does what the mediator's trainer chose. Both
// screens and the receipt say so. A trainer's page (/desk/training) sets
// each trainee's scenario and lists their practice visits.

// practiceVisitsShown is how many practice visits the trainer's page lists.
const practiceVisitsShown = 100

// trainingMode switches the session to training mode ("on") or back.
func (a *App) trainingMode(w http.ResponseWriter, r *http.Request, s *events.Session) {
	on := r.PostFormValue("training") == "on"
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		a.forbidden(w, r, s)
		return
	}
	err = a.cfg.Store.SetTraining(r.Context(), hashToken(c.Value), s.Mediator.Username, on)
	switch {
	case errors.Is(err, events.ErrVisitUnderWay):
		a.renderHome(w, r, s, http.StatusConflict, []fieldError{{"visit-heading", a.i18n.text(a.languageOf(r, s), "error.training.visit")}}, nil, "")
		return
	case err != nil:
		a.unavailable(w, r, s, err)
		return
	}
	notice := "training-off"
	if on {
		notice = "training-on"
	}
	redirect(w, r, "/desk/?"+notice+"=1")
}

// practise is the practice scenario of a submission made in visit v: what
// the mediator's trainer chose, for a practice visit; nil for a real one.
func (a *App) practise(r *http.Request, v *events.Visit) (*events.Practice, error) {
	if !v.Training {
		return nil, nil
	}
	p, err := a.cfg.Store.TrainingScenario(r.Context(), v.Username)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// practisable reports whether svc may be added to visit v: any service to a
// real visit, to a practice one those the catalogue lets be practised.
func practisable(v *events.Visit, svc *events.Service) bool {
	return !v.Training || svc.Training
}

// trainingData is what the trainer's page shows.
type trainingData struct {
	Trainees []traineeView
	Visits   []practiceVisitView
	Outcomes []string
	Notice   string
}

type traineeView struct {
	Username, Name, Desk string
	Outcome, Reason      string
	Delay                string
	SetBy                string
	SetAt                time.Time
}

type practiceVisitView struct {
	Name, Username string
	StartedAt      time.Time
	Open           bool
	Requests       []practiceRequestView
}

type practiceRequestView struct {
	ID, Service, Status, StatusName, Note string
}

// trainingPage shows a trainer their trainees, the scenario each one's
// practice requests follow, and their practice visits.
func (a *App) trainingPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.renderTraining(w, r, s, http.StatusOK, nil, nil)
}

// renderTraining shows the trainer's page; typed is a trainee's form as
// it was refused.
func (a *App) renderTraining(w http.ResponseWriter, r *http.Request, s *events.Session, status int, errs []fieldError, typed *traineeView) {
	if !s.Mediator.Trainer {
		a.forbidden(w, r, s)
		return
	}
	lang := a.languageOf(r, s)
	trainees, err := a.cfg.Store.Trainees(r.Context(), s.Mediator.Username)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	visits, err := a.cfg.Store.PracticeVisits(r.Context(), s.Mediator.Username, practiceVisitsShown)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	data := trainingData{}
	for _, o := range events.Outcomes {
		data.Outcomes = append(data.Outcomes, string(o))
	}
	if u := r.URL.Query().Get("saved"); u != "" && events.ValidUsername(u) {
		data.Notice = a.i18n.text(lang, "notice.training-saved", u)
	}
	for _, t := range trainees {
		p := t.Scenario.Practice
		tv := traineeView{Username: t.Mediator.Username, Name: t.Mediator.Name, Desk: t.Mediator.DeskID,
			Outcome: string(p.Outcome), Reason: p.Reason, SetBy: t.Scenario.SetBy, SetAt: t.Scenario.SetAt}
		if p.DelaySeconds > 0 {
			tv.Delay = strconv.Itoa(p.DelaySeconds)
		}
		if typed != nil && typed.Username == tv.Username {
			tv.Outcome, tv.Reason, tv.Delay = typed.Outcome, typed.Reason, typed.Delay
		}
		data.Trainees = append(data.Trainees, tv)
	}
	c := a.cfg.Catalog.Current()
	for _, v := range visits {
		pv := practiceVisitView{Name: v.Name, Username: v.Username, StartedAt: v.StartedAt, Open: v.EndedAt.IsZero()}
		for _, req := range v.Requests {
			line := practiceRequestView{ID: req.ID, Service: req.ServiceCode, Status: string(req.Status),
				StatusName: a.i18n.text(lang, "status."+string(req.Status)), Note: req.Note}
			if svc, ok := c.Service(req.ServiceCode); ok {
				line.Service = svc.Name.In(lang)
			}
			pv.Requests = append(pv.Requests, line)
		}
		data.Visits = append(data.Visits, pv)
	}
	a.render(w, r, status, "training", lang, s, errs, data)
}

// setScenario records what the simulated agencies do with one trainee's
// practice requests.
func (a *App) setScenario(w http.ResponseWriter, r *http.Request, s *events.Session) {
	if !s.Mediator.Trainer {
		a.forbidden(w, r, s)
		return
	}
	lang := a.languageOf(r, s)
	typed := traineeView{Username: r.PostFormValue("username"), Outcome: r.PostFormValue("outcome"),
		Reason: strings.TrimSpace(r.PostFormValue("reason")), Delay: strings.TrimSpace(r.PostFormValue("delay"))}
	if !events.ValidUsername(typed.Username) {
		a.notFound(w, r, lang)
		return
	}
	p := events.Practice{Outcome: events.Outcome(typed.Outcome)}
	var errs []fieldError
	switch p.Outcome {
	case events.OutcomeComplete, events.OutcomeFail:
	case events.OutcomeReject:
		p.Reason = typed.Reason
		if p.Reason == "" || len(p.Reason) > 500 || events.TextFault(p.Reason, false) != "" {
			errs = append(errs, fieldError{"reason-" + typed.Username, a.i18n.text(lang, "error.training.reason")})
		}
	case events.OutcomeSlow:
		n, err := strconv.Atoi(typed.Delay)
		if err != nil || n < 1 || time.Duration(n)*time.Second > events.MaxPracticeDelay {
			errs = append(errs, fieldError{"delay-" + typed.Username, a.i18n.text(lang, "error.training.delay")})
		}
		p.DelaySeconds = n
	default:
		errs = append(errs, fieldError{"outcome-" + typed.Username + "-0", a.i18n.text(lang, "error.training.outcome")})
	}
	if len(errs) > 0 {
		a.renderTraining(w, r, s, http.StatusUnprocessableEntity, errs, &typed)
		return
	}
	err := a.cfg.Store.SetTrainingScenario(r.Context(), s.Mediator.Username, events.Scenario{Username: typed.Username, Practice: p})
	switch {
	case errors.Is(err, events.ErrNotFound):
		a.notFound(w, r, lang)
		return
	case err != nil:
		a.unavailable(w, r, s, err)
		return
	}
	redirect(w, r, "/desk/training?saved="+url.QueryEscape(typed.Username)+"#trainee-"+typed.Username)
}
