package deskapp

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// People and credentials: the console's pages that list, create, disable
// and reset desks (their credentials), mediators, agencies' credentials,
// operators and the operator API's machine credentials. A secret is shown
// once, on the page that made it; every change is in the audit log under
// the operator who made it. Revocations take effect as the pipeline's
// checks read them again: at once for operators, mediators and tokens of
// the operator and agency APIs, within seconds for desks and agencies'
// NATS credentials (docs/audit.md, docs/agencies.md).

// People is what the console's pages of people and credentials read and
// change (*postgres.Store, with IssueAgencyCredential from cmd).
type People interface {
	Desks(ctx context.Context, municipality string) ([]events.DeskListing, error)
	RegisterDesk(ctx context.Context, municipality, name string, expires time.Time, by events.By) (events.Desk, events.IssuedDeskCredential, error)
	IssueDeskCredential(ctx context.Context, deskID string, expires time.Time, by events.By) (events.IssuedDeskCredential, error)
	RevokeDeskCredentials(ctx context.Context, deskID, key string, by events.By) ([]string, error)

	Mediators(ctx context.Context, deskID string) ([]events.Mediator, error)
	CreateMediator(ctx context.Context, m events.Mediator, by events.By) (events.MediatorSetup, error)
	ResetMediator(ctx context.Context, username string, by events.By) (events.MediatorSetup, error)
	DisableMediator(ctx context.Context, username string, enable bool, by events.By) error

	AgencyCredentials(ctx context.Context, agency, kind string, revoked bool) ([]events.AgencyCredential, error)
	// IssueAgencyCredential makes agency a credential, an nkey for NATS or,
	// with token, a token for status reports over HTTPS, and returns its
	// secret (shown once) and the key it is listed under.
	IssueAgencyCredential(ctx context.Context, agency string, token bool, by events.By) (secret, key string, err error)
	RevokeAgencyCredential(ctx context.Context, agency, publicKey, actor string) (int, error)

	Operators(ctx context.Context) ([]events.Operator, error)
	CreateOperator(ctx context.Context, o events.Operator, by events.By) (events.MediatorSetup, error)
	ResetOperator(ctx context.Context, username string, by events.By) (events.MediatorSetup, error)
	DisableOperator(ctx context.Context, username string, enable bool, by events.By) error
	OperatorTokens(ctx context.Context) ([]events.OperatorToken, error)
	IssueOperatorToken(ctx context.Context, name string, role events.OperatorRole, by events.By) (string, error)
	RevokeOperatorToken(ctx context.Context, name string, by events.By) error
}

func (a *App) peopleRoutes() {
	m := a.mux
	m.HandleFunc("GET /desk/ops/desks", a.operator(false, a.desksPage))
	m.HandleFunc("POST /desk/ops/desks", a.operator(true, a.desksChange))
	m.HandleFunc("GET /desk/ops/mediators", a.operator(false, a.mediatorsPage))
	m.HandleFunc("POST /desk/ops/mediators", a.operator(true, a.mediatorsChange))
	m.HandleFunc("GET /desk/ops/agency-credentials", a.operator(false, a.agencyCredentialsPage))
	m.HandleFunc("POST /desk/ops/agency-credentials", a.operator(true, a.agencyCredentialsChange))
	m.HandleFunc("GET /desk/ops/operators", a.operator(false, a.operatorsPage))
	m.HandleFunc("POST /desk/ops/operators", a.operator(true, a.operatorsChange))
}

// secret is a credential just made, shown this once: a token, a seed, or a
// setup code with its link.
type secret struct {
	// Of names whose it is.
	Of, Value, Link string
	// Kind says which: "token", "seed" or "setup".
	Kind string
}

// peopleData is what every page of people and credentials shows.
type peopleData struct {
	Secret  *secret
	Message string
	// What was typed into the form that creates someone.
	Username, Name, Language, Role, Municipality, DeskID, Agency string
}

// failed answers a change that failed: not found, refused as a field's
// error, or spotflow unavailable.
func (a *App) failed(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, err error, again func(int, []fieldError)) {
	lang := a.consoleLanguage(r, o)
	switch {
	case errors.Is(err, events.ErrNotFound):
		a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
	case strings.Contains(err.Error(), "taken") || strings.Contains(err.Error(), "named"):
		again(http.StatusUnprocessableEntity, []fieldError{{"new-username", a.i18n.text(lang, "ops.error.taken")}})
	default:
		a.unavailable(w, r, nil, err)
	}
}

// desksData is what the page of desks shows.
type desksData struct {
	peopleData
	Desks []events.DeskListing
	Now   time.Time
}

func (a *App) desksPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	a.renderDesks(w, r, o, http.StatusOK, desksData{}, nil)
}

func (a *App) renderDesks(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, data desksData, errs []fieldError) {
	var err error
	if data.Desks, err = a.cfg.Console.People.Desks(r.Context(), ""); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	data.Now = time.Now()
	a.renderConsole(w, r, status, "ops-desks", o, errs, data)
}

// desksChange registers a desk, issues a desk another credential, or
// revokes one (with a reason), as the form's action says.
func (a *App) desksChange(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	lang := a.consoleLanguage(r, o)
	people := a.cfg.Console.People
	data := desksData{peopleData: peopleData{
		Municipality: strings.TrimSpace(r.PostFormValue("municipality")), Name: strings.TrimSpace(r.PostFormValue("name")),
	}}
	again := func(status int, errs []fieldError) { a.renderDesks(w, r, o, status, data, errs) }
	desk := r.PostFormValue("desk")
	var err error
	switch r.PostFormValue("action") {
	case "create":
		var errs []fieldError
		if !events.ValidToken(data.Municipality) {
			errs = append(errs, fieldError{"new-municipality", a.i18n.text(lang, "console.error.municipality")})
		}
		if data.Name == "" || events.TextFault(data.Name, false) != "" || len(data.Name) > 200 {
			errs = append(errs, fieldError{"new-name", a.i18n.text(lang, "console.error.name")})
		}
		if len(errs) > 0 {
			again(http.StatusUnprocessableEntity, errs)
			return
		}
		var d events.Desk
		var issued events.IssuedDeskCredential
		if d, issued, err = people.RegisterDesk(r.Context(), data.Municipality, data.Name, time.Time{}, by(o, "")); err == nil {
			data = desksData{peopleData: peopleData{Secret: &secret{Of: d.Name + " (" + d.ID + ")", Value: issued.Token, Kind: "token"}}}
			again(http.StatusOK, nil)
			return
		}
	case "issue":
		var issued events.IssuedDeskCredential
		if issued, err = people.IssueDeskCredential(r.Context(), desk, time.Time{}, by(o, "")); err == nil {
			data = desksData{peopleData: peopleData{Secret: &secret{Of: desk, Value: issued.Token, Kind: "token"}}}
			again(http.StatusOK, nil)
			return
		}
	case "revoke":
		if r.PostFormValue("key") == "" { // the store would revoke every one
			a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
			return
		}
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" {
			again(http.StatusUnprocessableEntity, []fieldError{{"reason-" + r.PostFormValue("key"), a.i18n.text(lang, "console.reason.required")}})
			return
		}
		if _, err = people.RevokeDeskCredentials(r.Context(), desk, r.PostFormValue("key"), by(o, reason)); err == nil {
			redirect(w, r, "/desk/ops/desks")
			return
		}
	default:
		a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
		return
	}
	a.failed(w, r, o, err, again)
}

// mediatorsData is what the page of a desk's mediators shows.
type mediatorsData struct {
	peopleData
	Desks []option
	List  []events.Mediator
}

func (a *App) mediatorsPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	a.renderMediators(w, r, o, http.StatusOK, mediatorsData{peopleData: peopleData{DeskID: r.URL.Query().Get("desk")}}, nil)
}

func (a *App) renderMediators(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, data mediatorsData, errs []fieldError) {
	people := a.cfg.Console.People
	desks, err := people.Desks(r.Context(), "")
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	if data.DeskID == "" && len(desks) > 0 {
		data.DeskID = desks[0].ID
	}
	for _, d := range desks {
		data.Desks = append(data.Desks, option{Key: d.ID, Name: d.Name + " (" + d.Municipality + ")", Checked: d.ID == data.DeskID})
	}
	if data.DeskID != "" {
		if data.List, err = people.Mediators(r.Context(), data.DeskID); err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	data.Language = cmp.Or(data.Language, a.consoleLanguage(r, o))
	a.renderConsole(w, r, status, "ops-mediators", o, errs, data)
}

// newPerson checks the form that creates a mediator or an operator: a
// username, a name, a language of the catalogue's.
func (a *App) newPerson(lang string, p *peopleData) []fieldError {
	var errs []fieldError
	if !events.ValidUsername(p.Username) {
		errs = append(errs, fieldError{"new-username", a.i18n.text(lang, "ops.error.username")})
	}
	if p.Name == "" || events.TextFault(p.Name, false) != "" || len(p.Name) > 200 {
		errs = append(errs, fieldError{"new-name", a.i18n.text(lang, "console.error.name")})
	}
	if !slices.Contains(a.cfg.Catalog.Current().Languages, p.Language) {
		errs = append(errs, fieldError{"new-language", a.i18n.text(lang, "error.language")})
	}
	return errs
}

// personForm is what the form that creates someone carries.
func personForm(r *http.Request) peopleData {
	return peopleData{
		Username: strings.ToLower(strings.TrimSpace(r.PostFormValue("username"))), Name: strings.TrimSpace(r.PostFormValue("name")),
		Language: r.PostFormValue("language"), Role: r.PostFormValue("role"), DeskID: r.PostFormValue("desk"),
	}
}

// setupSecret is a setup code shown once, with the link that uses it.
func setupSecret(setup events.MediatorSetup, path string) *secret {
	return &secret{Of: setup.Username, Value: setup.Code, Link: path + "?code=" + url.QueryEscape(setup.Code), Kind: "setup"}
}

// mediatorsChange creates, resets, disables or enables a mediator, as the
// form's action says.
func (a *App) mediatorsChange(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	lang := a.consoleLanguage(r, o)
	people := a.cfg.Console.People
	data := mediatorsData{peopleData: personForm(r)}
	again := func(status int, errs []fieldError) { a.renderMediators(w, r, o, status, data, errs) }
	var setup events.MediatorSetup
	var err error
	switch action := r.PostFormValue("action"); action {
	case "create":
		if errs := a.newPerson(lang, &data.peopleData); len(errs) > 0 {
			again(http.StatusUnprocessableEntity, errs)
			return
		}
		setup, err = people.CreateMediator(r.Context(), events.Mediator{Username: data.Username, DeskID: data.DeskID,
			Name: data.Name, Language: data.Language}, by(o, ""))
	case "reset":
		setup, err = people.ResetMediator(r.Context(), data.Username, by(o, ""))
	case "disable", "enable":
		if err = people.DisableMediator(r.Context(), data.Username, action == "enable", by(o, "")); err == nil {
			redirect(w, r, "/desk/ops/mediators?desk="+url.QueryEscape(data.DeskID))
			return
		}
	default:
		a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
		return
	}
	if err != nil {
		a.failed(w, r, o, err, again)
		return
	}
	data = mediatorsData{peopleData: peopleData{DeskID: data.DeskID, Secret: setupSecret(setup, "/desk/setup")}}
	again(http.StatusOK, nil)
}

// agencyCredentialsData is what the page of agencies' credentials shows.
type agencyCredentialsData struct {
	peopleData
	Agencies    []option
	Credentials []events.AgencyCredential
}

func (a *App) agencyCredentialsPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	a.renderAgencyCredentials(w, r, o, http.StatusOK, agencyCredentialsData{}, nil)
}

func (a *App) renderAgencyCredentials(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, data agencyCredentialsData, errs []fieldError) {
	c := a.cfg.Catalog.Current()
	lang := a.consoleLanguage(r, o)
	for _, code := range c.AgencyCodes() {
		data.Agencies = append(data.Agencies, option{Key: code, Name: agencyName(c, code, lang), Checked: code == data.Agency})
	}
	var err error
	if data.Credentials, err = a.cfg.Console.People.AgencyCredentials(r.Context(), "", "", false); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	a.renderConsole(w, r, status, "ops-agency-credentials", o, errs, data)
}

// agencyCredentialsChange issues an agency an nkey or a token, or revokes
// one of its credentials.
func (a *App) agencyCredentialsChange(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	people := a.cfg.Console.People
	agency := r.PostFormValue("agency")
	again := func(status int, errs []fieldError) {
		a.renderAgencyCredentials(w, r, o, status, agencyCredentialsData{peopleData: peopleData{Agency: agency}}, errs)
	}
	if !slices.Contains(a.cfg.Catalog.Current().AgencyCodes(), agency) {
		a.renderConsole(w, r, http.StatusNotFound, "not-found", o, nil, nil)
		return
	}
	var err error
	switch r.PostFormValue("action") {
	case "issue":
		token := r.PostFormValue("kind") == events.CredentialToken
		var value string
		if value, _, err = people.IssueAgencyCredential(r.Context(), agency, token, by(o, "")); err == nil {
			kind := "seed"
			if token {
				kind = "token"
			}
			a.renderAgencyCredentials(w, r, o, http.StatusOK, agencyCredentialsData{peopleData: peopleData{
				Agency: agency, Secret: &secret{Of: agency, Value: value, Kind: kind},
			}}, nil)
			return
		}
	case "revoke":
		if r.PostFormValue("key") == "" { // the store would revoke every one
			err = events.ErrNotFound
			break
		}
		var n int
		if n, err = people.RevokeAgencyCredential(r.Context(), agency, r.PostFormValue("key"), o.Operator.Actor()); err == nil {
			if n == 0 {
				err = events.ErrNotFound
			} else {
				redirect(w, r, "/desk/ops/agency-credentials")
				return
			}
		}
	default:
		err = events.ErrNotFound
	}
	a.failed(w, r, o, err, again)
}

// operatorsData is what the page of operators and machine credentials
// shows.
type operatorsData struct {
	peopleData
	Operators []events.Operator
	Tokens    []events.OperatorToken
	Roles     []events.OperatorRole
	// TokenName is what was typed as a new token's name.
	TokenName string
}

func (a *App) operatorsPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	a.renderOperators(w, r, o, http.StatusOK, operatorsData{}, nil)
}

func (a *App) renderOperators(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, data operatorsData, errs []fieldError) {
	people := a.cfg.Console.People
	var err error
	if data.Operators, err = people.Operators(r.Context()); err == nil {
		data.Tokens, err = people.OperatorTokens(r.Context())
	}
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	data.Roles = []events.OperatorRole{events.RoleOperator, events.RoleViewer}
	data.Role = cmp.Or(data.Role, string(events.RoleViewer))
	data.Language = cmp.Or(data.Language, a.consoleLanguage(r, o))
	a.renderConsole(w, r, status, "ops-operators", o, errs, data)
}

// operatorsChange creates, resets, disables or enables an operator, or
// issues or revokes a machine credential, as the form's action says. An
// operator cannot disable or reset themselves.
func (a *App) operatorsChange(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	lang := a.consoleLanguage(r, o)
	people := a.cfg.Console.People
	data := operatorsData{peopleData: personForm(r), TokenName: strings.ToLower(strings.TrimSpace(r.PostFormValue("token-name")))}
	again := func(status int, errs []fieldError) { a.renderOperators(w, r, o, status, data, errs) }
	role := events.OperatorRole(data.Role)
	var setup events.MediatorSetup
	var err error
	switch action := r.PostFormValue("action"); action {
	case "create":
		errs := a.newPerson(lang, &data.peopleData)
		if !role.Valid() {
			errs = append(errs, fieldError{"new-role", a.i18n.text(lang, "console.error.role")})
		}
		if len(errs) > 0 {
			again(http.StatusUnprocessableEntity, errs)
			return
		}
		setup, err = people.CreateOperator(r.Context(), events.Operator{Username: data.Username, Name: data.Name,
			Role: role, Language: data.Language}, by(o, ""))
	case "reset", "disable", "enable":
		if data.Username == o.Operator.Username {
			again(http.StatusUnprocessableEntity, []fieldError{{"", a.i18n.text(lang, "console.error.self")}})
			return
		}
		if action == "reset" {
			setup, err = people.ResetOperator(r.Context(), data.Username, by(o, ""))
		} else if err = people.DisableOperator(r.Context(), data.Username, action == "enable", by(o, "")); err == nil {
			redirect(w, r, "/desk/ops/operators")
			return
		}
	case "token-issue":
		if !events.ValidUsername(data.TokenName) || !role.Valid() {
			again(http.StatusUnprocessableEntity, []fieldError{{"token-name", a.i18n.text(lang, "ops.error.username")}})
			return
		}
		var token string
		if token, err = people.IssueOperatorToken(r.Context(), data.TokenName, role, by(o, "")); err == nil {
			data = operatorsData{peopleData: peopleData{Secret: &secret{Of: data.TokenName, Value: token, Kind: "token"}}}
			again(http.StatusOK, nil)
			return
		}
		// A name in force already is the token's field's error, not the
		// form's that creates operators.
		if strings.Contains(err.Error(), "named") {
			again(http.StatusUnprocessableEntity, []fieldError{{"token-name", a.i18n.text(lang, "console.error.token-taken")}})
			return
		}
	case "token-revoke":
		if err = people.RevokeOperatorToken(r.Context(), r.PostFormValue("token-name"), by(o, "")); err == nil {
			redirect(w, r, "/desk/ops/operators")
			return
		}
	default:
		err = events.ErrNotFound
	}
	if err != nil {
		a.failed(w, r, o, err, again)
		return
	}
	data = operatorsData{peopleData: peopleData{Secret: setupSecret(setup, "/desk/ops/setup")}}
	again(http.StatusOK, nil)
}
