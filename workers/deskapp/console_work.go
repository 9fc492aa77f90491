package deskapp

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Stuck work: dead letters waiting for replay, failed work items and work
// items past their service's expected time, for the whole network or one
// agency, filtered by municipality; a dead letter's message opened with a
// reason; replays of one, a selection or all, with a reason, followed as
// their new rounds progress.

// maxReplay caps the dead letters one replay form replays.
const maxReplay = 1000

// stuckData is what the page of stuck work shows.
type stuckData struct {
	Agency, Municipality     string
	Agencies, Municipalities []option
	DeadLetters              []events.DeadLetter
	Stuck                    []events.StuckWorkItem
	// Path is the page's own path, where its filters and replays return.
	Path   string
	Reason string
	// Selected are the dead letters ticked when a replay was refused.
	Selected []int64
}

// stuckPage lists the stuck work of the network (/desk/ops/stuck) or of
// one agency (/desk/ops/agencies/{agency}/stuck).
func (a *App) stuckPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	q := r.URL.Query()
	a.renderStuck(w, r, o, http.StatusOK, stuckData{
		Agency: cmp.Or(r.PathValue("agency"), q.Get("agency")), Municipality: q.Get("municipality"),
	}, nil)
}

func (a *App) renderStuck(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, data stuckData, errs []fieldError) {
	ctx := r.Context()
	c := a.cfg.Catalog.Current()
	lang := a.consoleLanguage(r, o)
	data.Path = "/desk/ops/stuck"
	if r.PathValue("agency") != "" {
		data.Path = "/desk/ops/agencies/" + url.PathEscape(data.Agency) + "/stuck"
	}
	for _, code := range c.AgencyCodes() {
		data.Agencies = append(data.Agencies, option{Key: code, Name: agencyName(c, code, lang), Checked: code == data.Agency})
	}
	desks, err := a.cfg.Console.People.Desks(ctx, "")
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	var seen []string
	for _, d := range desks {
		if !slices.Contains(seen, d.Municipality) {
			seen = append(seen, d.Municipality)
		}
	}
	slices.Sort(seen)
	for _, m := range seen {
		data.Municipalities = append(data.Municipalities, option{Key: m, Name: m, Checked: m == data.Municipality})
	}
	work := a.cfg.Console.Work
	if data.DeadLetters, err = work.ListDeadLetters(ctx, events.DeadLetterQuery{
		Agency: data.Agency, Municipality: data.Municipality, Pending: true, Limit: maxReplay,
	}); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	slas := map[string]time.Duration{}
	for _, svc := range c.Services {
		slas[svc.Code] = svc.SLA()
	}
	if data.Stuck, err = work.StuckWork(ctx, events.StuckQuery{Agency: data.Agency, Municipality: data.Municipality, SLAs: slas}); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	a.renderConsole(w, r, status, "ops-stuck", o, errs, data)
}

// deadLetterData is what a dead letter's page shows: its record and, once
// opened with a reason, its message.
type deadLetterData struct {
	Letter  events.DeadLetter
	Reason  string
	Message string
	// Deleted says its message was deleted (its citizen erased, or its
	// request ended).
	Deleted bool
}

// deadLetter reads the record of dead letter {id}, without its message.
func (a *App) deadLetter(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) (events.DeadLetter, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var list []events.DeadLetter
	if err == nil {
		list, err = a.cfg.Console.Work.ListDeadLetters(r.Context(), events.DeadLetterQuery{ID: id, Limit: 1})
		if err != nil {
			a.unavailable(w, r, nil, err)
			return events.DeadLetter{}, false
		}
	}
	if len(list) == 0 {
		a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
		return events.DeadLetter{}, false
	}
	return list[0], true
}

func (a *App) deadLetterPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	if d, ok := a.deadLetter(w, r, o); ok {
		a.renderConsole(w, r, http.StatusOK, "ops-dead-letter", o, nil, deadLetterData{Letter: d})
	}
}

// viewDeadLetter opens a dead letter's message for this answer only, once
// the view is in the audit log with the operator's reason. The message is
// never logged.
func (a *App) viewDeadLetter(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	d, ok := a.deadLetter(w, r, o)
	if !ok {
		return
	}
	data := deadLetterData{Letter: d, Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if data.Reason == "" {
		a.renderConsole(w, r, http.StatusUnprocessableEntity, "ops-dead-letter", o,
			[]fieldError{{ID: "reason", Message: a.i18n.text(a.consoleLanguage(r, o), "console.reason.required")}}, data)
		return
	}
	full, err := a.cfg.Console.Work.ViewDeadLetter(r.Context(), d.ID, by(o, data.Reason))
	switch {
	case errors.Is(err, events.ErrPersonalDataDeleted):
		data.Deleted = true
	case err != nil:
		a.unavailable(w, r, nil, err)
		return
	default:
		var pretty bytes.Buffer
		if json.Indent(&pretty, full.Payload, "", "  ") == nil {
			data.Message = pretty.String()
		} else {
			data.Message = string(full.Payload)
		}
	}
	a.renderConsole(w, r, http.StatusOK, "ops-dead-letter", o, nil, data)
}

// replay replays the dead letters ticked ("selected"), or every one waiting
// of the page's agency and municipality ("all"), on behalf of the operator
// with their reason, then shows their progress.
func (a *App) replay(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	lang := a.consoleLanguage(r, o)
	data := stuckData{Agency: r.PostFormValue("agency"), Municipality: r.PostFormValue("municipality"),
		Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	var ids []int64
	for _, v := range r.PostForm["id"] {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	var errs []fieldError
	if r.PostFormValue("replay") == "all" {
		dead, err := a.cfg.Console.Work.ListDeadLetters(r.Context(), events.DeadLetterQuery{
			Agency: data.Agency, Municipality: data.Municipality, Pending: true, Limit: maxReplay,
		})
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		ids = ids[:0]
		for _, d := range dead {
			ids = append(ids, d.ID)
		}
	} else if len(ids) == 0 {
		errs = append(errs, fieldError{ID: "dead-letters", Message: a.i18n.text(lang, "console.replay.none")})
	}
	if data.Reason == "" {
		errs = append(errs, fieldError{ID: "reason", Message: a.i18n.text(lang, "console.reason.required")})
	}
	if len(errs) > 0 {
		data.Selected = ids
		a.renderStuck(w, r, o, http.StatusUnprocessableEntity, data, errs)
		return
	}
	started := time.Now().Add(-time.Second).UTC()
	for _, id := range ids {
		err := a.cfg.Console.Replayer.Replay(r.Context(), id, by(o, data.Reason))
		if err != nil && !errors.Is(err, events.ErrPersonalDataDeleted) && !errors.Is(err, events.ErrNotFound) {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	redirect(w, r, "/desk/ops/replays?since="+url.QueryEscape(started.Format(time.RFC3339)))
}

// replaysData is what the page that follows replays shows.
type replaysData struct {
	Since  time.Time
	States []replayLine
	// Open says some replay has not reached a final status yet.
	Open bool
	// Done counts those that have.
	Done int
}

type replayLine struct {
	events.ReplayState
	StatusName string
	Final      bool
}

// replaysPage follows the dead letters replayed since ?since=: each one's
// work item's status and round now. With JavaScript the table refreshes
// itself until every one is final.
func (a *App) replaysPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	since, err := time.Parse(time.RFC3339, r.URL.Query().Get("since"))
	if err != nil {
		since = time.Now().Add(-time.Hour)
	}
	states, err := a.cfg.Console.Work.ReplayProgress(r.Context(), since)
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	lang := a.consoleLanguage(r, o)
	data := replaysData{Since: since}
	for _, st := range states {
		line := replayLine{ReplayState: st, StatusName: a.i18n.text(lang, "status."+string(st.Status)), Final: st.Status.Terminal()}
		if line.Final {
			data.Done++
		} else {
			data.Open = true
		}
		data.States = append(data.States, line)
	}
	if r.URL.Query().Get("partial") == "progress" {
		p := a.newPage(lang, nil, nil, data)
		p.Operator = o
		a.writePart(w, "ops-replays", "progress", p)
		return
	}
	a.renderConsole(w, r, http.StatusOK, "ops-replays", o, nil, data)
}
