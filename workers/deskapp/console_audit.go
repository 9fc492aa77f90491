package deskapp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/spotflow/spotflow/events"
)

// The audit trail and the health at a glance.

// auditShown is how many entries the audit page lists at most.
const auditShown = 200

// auditData is what the audit page shows.
type auditData struct {
	Actor, Action, Target, From, To string
	Actions                         []string
	Entries                         []events.AuditEntry
	Chain                           events.AuditChainState
	// Broken says where the chain does not check, if it does not.
	Broken string
}

// dateRange reads ?from= and ?to= (days, YYYY-MM-DD, UTC): from its
// start to the end of to; zero when absent. It reports whether both that
// were given read.
func dateRange(r *http.Request) (from, to time.Time, ok bool) {
	ok = true
	if v := r.URL.Query().Get("from"); v != "" {
		var err error
		from, err = time.Parse(time.DateOnly, v)
		ok = ok && err == nil
	}
	if v := r.URL.Query().Get("to"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		ok = ok && err == nil
		to = t.AddDate(0, 0, 1)
	}
	return from, to, ok
}

// auditPage lists the audit log's entries by person, action, target (a
// desk, a request) and days, newest first, with the state of its hash
// chain.
func (a *App) auditPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	q := r.URL.Query()
	data := auditData{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target"), From: q.Get("from"), To: q.Get("to")}
	for _, act := range events.AuditActions {
		data.Actions = append(data.Actions, string(act))
	}
	slices.Sort(data.Actions)
	from, to, ok := dateRange(r)
	var errs []fieldError
	if !ok {
		errs = append(errs, fieldError{"from", a.i18n.text(a.consoleLanguage(r, o), "console.error.date")})
	}
	entries, err := a.cfg.Console.Audit.AuditEntries(r.Context(), events.AuditQuery{
		Actor: data.Actor, Action: events.AuditAction(data.Action), Target: data.Target, Since: from, Limit: auditShown * 5,
	})
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	for _, e := range entries {
		if (to.IsZero() || e.At.Before(to)) && len(data.Entries) < auditShown {
			data.Entries = append(data.Entries, e)
		}
	}
	data.Chain, err = a.cfg.Console.VerifyAudit(r.Context())
	switch {
	case errors.Is(err, events.ErrAuditChainBroken):
		data.Broken = err.Error()
	case err != nil:
		a.unavailable(w, r, nil, err)
		return
	}
	status := http.StatusOK
	if len(errs) > 0 {
		status = http.StatusUnprocessableEntity
	}
	a.renderConsole(w, r, status, "ops-audit", o, errs, data)
}

// auditExport downloads the audit log's links whose entries are from ?from=
// to ?to= (days, inclusive; default: the last 7), as JSON Lines: a first
// line saying what the file is and how to verify it, then a line per link
// with its entry as hashed. The download is itself in the audit log.
func (a *App) auditExport(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	from, to, ok := dateRange(r)
	if !ok {
		a.renderConsole(w, r, http.StatusBadRequest, "not-found", o, nil, nil)
		return
	}
	if to.IsZero() {
		to = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, -7)
	}
	err := a.cfg.Console.Audit.Audit(r.Context(), by(o, ""), events.AuditExported, "audit",
		map[string]any{"from": from.Format(time.DateOnly), "to": to.AddDate(0, 0, -1).Format(time.DateOnly)})
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="spotflow-audit-%s-%s.jsonl"`,
		from.Format(time.DateOnly), to.AddDate(0, 0, -1).Format(time.DateOnly)))
	if err := a.cfg.Console.ExportAudit(r.Context(), w, from, to); err != nil {
		a.cfg.Logger.Error("console: export the audit log", "err", err)
	}
}

// healthData is what the health page shows.
type healthData struct {
	events.Health
	Alerts []events.Alert
}

// healthPage is the console's first page: each agency's backlog, oldest
// waiting work and dead letters, each consumer's lag and redeliveries,
// each stream's storage against its limit, and the alerts they raise.
func (a *App) healthPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	h := a.cfg.Console.Health(r.Context())
	a.renderConsole(w, r, http.StatusOK, "ops-health", o, nil, healthData{Health: h, Alerts: h.Alerts()})
}
