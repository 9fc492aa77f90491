package deskapp

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/spotflow/spotflow/events"
)

// Mediators is what the operators' page of mediators changes
// (*postgres.Store): each change is in the audit log under the operator.
type Mediators interface {
	Desks(ctx context.Context, municipality string) ([]events.DeskListing, error)
	Mediators(ctx context.Context, deskID string) ([]events.Mediator, error)
	CreateMediator(ctx context.Context, m events.Mediator, by events.By) (events.MediatorSetup, error)
	ResetMediator(ctx context.Context, username string, by events.By) (events.MediatorSetup, error)
	DisableMediator(ctx context.Context, username string, enable bool, by events.By) error
}

// opsData is what the operators' page of mediators shows.
type opsData struct {
	Token  string
	Desks  []option
	DeskID string
	List   []events.Mediator
	// Setup is a code just made, shown this once.
	Setup   *events.MediatorSetup
	Link    string
	Message string
	// What was typed into the form that creates a mediator.
	Username, Name, Language string
}

// operatorOf names the operator for the audit log: the user name they gave
// with the token (HTTP Basic), or "console".
func operatorOf(r *http.Request) events.By {
	if user, _, ok := r.BasicAuth(); ok && events.ValidUsername(strings.ToLower(user)) {
		return events.By{Actor: "operator:" + strings.ToLower(user)}
	}
	return events.By{Actor: "operator:console"}
}

// opsPage lists a desk's mediators, with the forms that create, disable,
// enable and reset them.
func (a *App) opsPage(w http.ResponseWriter, r *http.Request) {
	a.renderOps(w, r, http.StatusOK, opsData{DeskID: r.URL.Query().Get("desk")}, nil)
}

func (a *App) renderOps(w http.ResponseWriter, r *http.Request, status int, data opsData, errs []fieldError) {
	lang := a.languageOf(r, nil)
	data.Token = formToken(w, r)
	desks, err := a.cfg.Mediators.Desks(r.Context(), "")
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	for _, d := range desks {
		data.Desks = append(data.Desks, option{Key: d.ID, Name: d.Name + " (" + d.Municipality + ")", Checked: d.ID == data.DeskID})
	}
	if data.DeskID == "" && len(desks) > 0 {
		data.DeskID = desks[0].ID
		data.Desks[0].Checked = true
	}
	if data.DeskID != "" {
		if data.List, err = a.cfg.Mediators.Mediators(r.Context(), data.DeskID); err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	if data.Setup != nil {
		data.Link = "/desk/setup?code=" + url.QueryEscape(data.Setup.Code)
	}
	data.Language = cmp.Or(data.Language, lang)
	a.render(w, r, status, "ops-mediators", lang, nil, errs, data)
}

// opsChange creates, resets, disables or enables a mediator, as the form's
// action says.
func (a *App) opsChange(w http.ResponseWriter, r *http.Request) {
	if !checkForm(r, formToken(w, r)) {
		a.forbidden(w, r, nil)
		return
	}
	lang := a.languageOf(r, nil)
	by := operatorOf(r)
	data := opsData{DeskID: r.PostFormValue("desk")}
	username := strings.TrimSpace(r.PostFormValue("username"))
	var err error
	switch r.PostFormValue("action") {
	case "create":
		data.Username, data.Name, data.Language = strings.ToLower(username), strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("language")
		var errs []fieldError
		if !events.ValidUsername(data.Username) {
			errs = append(errs, fieldError{"new-username", a.i18n.text(lang, "ops.error.username")})
		}
		if data.Name == "" || events.TextFault(data.Name, false) != "" || len(data.Name) > 200 {
			errs = append(errs, fieldError{"new-name", a.i18n.text(lang, "error.name.required")})
		}
		if !slices.Contains(a.cfg.Catalog.Current().Languages, data.Language) {
			errs = append(errs, fieldError{"new-language", a.i18n.text(lang, "error.language")})
		}
		if len(errs) > 0 {
			a.renderOps(w, r, http.StatusUnprocessableEntity, data, errs)
			return
		}
		var setup events.MediatorSetup
		setup, err = a.cfg.Mediators.CreateMediator(r.Context(), events.Mediator{Username: data.Username, DeskID: data.DeskID,
			Name: data.Name, Language: data.Language}, by)
		if err == nil {
			a.renderOps(w, r, http.StatusOK, opsData{DeskID: data.DeskID, Setup: &setup}, nil)
			return
		}
		if strings.Contains(err.Error(), "taken") {
			a.renderOps(w, r, http.StatusUnprocessableEntity, data, []fieldError{{"new-username", a.i18n.text(lang, "ops.error.taken")}})
			return
		}
	case "reset":
		var setup events.MediatorSetup
		if setup, err = a.cfg.Mediators.ResetMediator(r.Context(), username, by); err == nil {
			a.renderOps(w, r, http.StatusOK, opsData{DeskID: data.DeskID, Setup: &setup}, nil)
			return
		}
	case "disable", "enable":
		if err = a.cfg.Mediators.DisableMediator(r.Context(), username, r.PostFormValue("action") == "enable", by); err == nil {
			redirect(w, r, "/desk/ops/mediators?desk="+url.QueryEscape(data.DeskID))
			return
		}
	default:
		a.notFound(w, r, lang)
		return
	}
	if errors.Is(err, events.ErrNotFound) {
		a.notFound(w, r, lang)
		return
	}
	a.unavailable(w, r, nil, err)
}
