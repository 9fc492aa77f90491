// Package deskapp is the desk application: the pages under /desk/ where a
// mediator signs in, serves a citizen in a visit (their consent, then one
// or more services found in the catalogue, each filled, checked and
// submitted), and follows the desk's requests; and the operator's console
// under /desk/ops/ (console.go), where operators sign in to follow stuck
// work, replay dead letters, manage people and credentials, and read the
// audit trail and the pipeline's health.
//
// Pages are rendered on the server from Go templates, with their styles
// and script embedded in the binary; every task works without JavaScript,
// which only refreshes a request's status as it changes and filters
// services as the mediator types. Every page speaks the catalogue's
// languages, the mediator's choice. Submissions take the one path every
// submission takes (workers.Intake.Accept), with the desk's limits, the
// signed-in mediator and the citizen's consent.
//
// Security: a session is a random token in an HttpOnly, SameSite=Strict
// cookie (Secure under TLS), kept in Postgres as its SHA-256, ending at
// sign-out, after idling or at its end; every form carries the session's
// CSRF token, and a POST from another origin is refused. Passwords are
// hashed with argon2id; failures slow down, then lock the account, and
// count against the address like every failed credential. Sign-in,
// failures, sign-out and look-ups of a citizen are in the audit log.
package deskapp

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

//go:embed web
var web embed.FS

// Store keeps mediators, sessions, visits and requests (*postgres.Store).
type Store interface {
	MediatorForSignIn(ctx context.Context, username string) (events.MediatorSignIn, error)
	SignInFailed(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error)
	SignInRefused(ctx context.Context, username, address, why string) error
	SignedIn(ctx context.Context, username string, start events.SessionStart) error
	SetupCodeValid(ctx context.Context, code string) (string, bool, error)
	SetMediatorPassword(ctx context.Context, code, passwordHash string) (string, error)
	Session(ctx context.Context, tokenHash []byte, idle time.Duration) (events.Session, error)
	EndSession(ctx context.Context, tokenHash []byte) error
	SetMediatorLanguage(ctx context.Context, username, language string) error

	StartVisit(ctx context.Context, v events.Visit) (string, error)
	OpenVisit(ctx context.Context, username string) (*events.Visit, error)
	Visit(ctx context.Context, id, username string) (*events.Visit, error)
	EndVisit(ctx context.Context, id, username string) error
	RecordConsent(ctx context.Context, id, username, version, language string) error
	AddVisitService(ctx context.Context, id, username, service string) (int, error)
	SaveVisitAnswers(ctx context.Context, id, username string, n int, answers map[string]json.RawMessage, documents []string) error
	RemoveVisitService(ctx context.Context, id, username string, n int) error
	VisitServiceSubmitted(ctx context.Context, id string, n int, requestID string) error

	SearchRequests(ctx context.Context, q events.RequestQuery) ([]events.RequestSummary, error)
	RequestForDesk(ctx context.Context, deskID, id string) (*events.RequestView, error)
	CitizenRequests(ctx context.Context, deskID, nationalID string, by events.By) ([]events.RequestSummary, error)

	SetTraining(ctx context.Context, tokenHash []byte, username string, on bool) error
	TrainingScenario(ctx context.Context, username string) (events.Practice, error)
	SetTrainingScenario(ctx context.Context, trainer string, sc events.Scenario) error
	Trainees(ctx context.Context, trainer string) ([]events.Trainee, error)
	PracticeVisits(ctx context.Context, trainer string, limit int) ([]events.PracticeVisit, error)
}

// Intake accepts submissions (workers.Intake).
type Intake interface {
	Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (string, *events.Service, error)
}

// Catalogs gives the service catalogue in force.
type Catalogs interface {
	Current() *events.Catalog
}

// Config configures the desk application.
type Config struct {
	Store   Store
	Intake  Intake
	Catalog Catalogs
	// FailedAuth refuses an address that failed to sign in too often,
	// before any password is checked. Optional.
	FailedAuth *ratelimit.Buckets
	// SessionIdle ends a session unused for this long. Default 30 minutes.
	SessionIdle time.Duration
	// SessionMax ends a session this long after sign-in. Default 12 hours.
	SessionMax time.Duration
	// LockAfter failed sign-ins in a row lock an account for LockFor.
	// Defaults 5 and 15 minutes.
	LockAfter int
	LockFor   time.Duration
	// Console serves the operator's console under /desk/ops/; without
	// all of it there is none.
	Console ConsoleConfig
	// Screens pairs citizens' screens with visits and carries the
	// mediator's steps to them (*postgres.Store); without it there is no
	// citizen's screen. App.Run must run for screens to follow.
	Screens Screens
	// Receipts signs the visits' receipts (*receipts.Keys); without it
	// there are none.
	Receipts Receipts
	// PublicURL is where the public reaches spotflow, for the links of
	// receipts' QR codes; default: where each request came.
	PublicURL string
	// Hasher hashes passwords. Default argon2id with the parameters of
	// DefaultArgon2.
	Hasher *Hasher
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// App is the desk application. It is safe for concurrent use.
type App struct {
	cfg     Config
	mux     *http.ServeMux
	pages   map[string]*template.Template
	i18n    *translations
	screens hub
}

// New validates cfg and returns the desk application.
func New(cfg Config) (*App, error) {
	if cfg.Store == nil || cfg.Intake == nil || cfg.Catalog == nil {
		return nil, errors.New("new desk application: Store, Intake and Catalog are required")
	}
	cfg.SessionIdle = cmp.Or(cfg.SessionIdle, 30*time.Minute)
	cfg.SessionMax = cmp.Or(cfg.SessionMax, 12*time.Hour)
	cfg.LockAfter = cmp.Or(cfg.LockAfter, 5)
	cfg.LockFor = cmp.Or(cfg.LockFor, 15*time.Minute)
	if cfg.Hasher == nil {
		cfg.Hasher = NewHasher(DefaultArgon2)
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	tr, err := loadTranslations()
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, mux: http.NewServeMux(), i18n: tr}
	if a.pages, err = parsePages(); err != nil {
		return nil, err
	}
	a.routes()
	return a, nil
}

// ServeHTTP serves the desk application under /desk/, and the public pages
// of receipts under /receipts/.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Nothing from elsewhere, no inline script or style, no framing.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

func (a *App) routes() {
	static, _ := fs.Sub(web, "web/static")
	a.mux.Handle("GET /desk/static/", http.StripPrefix("/desk/static/", staticFiles(static)))
	a.mux.HandleFunc("GET /desk/sign-in", a.signInPage)
	a.mux.HandleFunc("POST /desk/sign-in", a.signIn)
	a.mux.HandleFunc("GET /desk/setup", a.setupPage)
	a.mux.HandleFunc("POST /desk/setup", a.setup)
	a.mux.HandleFunc("GET /desk/accessibility", a.accessibility)
	a.mux.HandleFunc("POST /desk/sign-out", a.signedIn(a.signOut))
	a.mux.HandleFunc("GET /desk/{$}", a.signedIn(a.home))
	a.mux.HandleFunc("GET /desk/settings", a.signedIn(a.settingsPage))
	a.mux.HandleFunc("POST /desk/settings", a.signedIn(a.settings))
	a.mux.HandleFunc("POST /desk/visit", a.signedIn(a.startVisit))
	a.mux.HandleFunc("GET /desk/visit", a.signedIn(a.visitPage))
	a.mux.HandleFunc("POST /desk/visit/end", a.signedIn(a.endVisit))
	a.mux.HandleFunc("GET /desk/visit/consent", a.signedIn(a.consentPage))
	a.mux.HandleFunc("POST /desk/visit/consent", a.signedIn(a.consent))
	a.mux.HandleFunc("GET /desk/services", a.signedIn(a.servicesPage))
	a.mux.HandleFunc("POST /desk/visit/services", a.signedIn(a.addService))
	a.mux.HandleFunc("GET /desk/visit/services/{n}", a.signedIn(a.formPage))
	a.mux.HandleFunc("POST /desk/visit/services/{n}", a.signedIn(a.saveForm))
	a.mux.HandleFunc("GET /desk/visit/services/{n}/check", a.signedIn(a.checkPage))
	a.mux.HandleFunc("POST /desk/visit/services/{n}/submit", a.signedIn(a.submit))
	a.mux.HandleFunc("POST /desk/visit/services/{n}/remove", a.signedIn(a.removeService))
	a.mux.HandleFunc("GET /desk/visit/services/{n}/done", a.signedIn(a.donePage))
	a.mux.HandleFunc("GET /desk/requests/{id}", a.signedIn(a.requestPage))
	a.mux.HandleFunc("GET /desk/visit/receipt", a.signedIn(a.receiptPage))
	a.mux.HandleFunc("GET /desk/visit/receipt.json", a.signedIn(a.receiptPage))
	a.mux.HandleFunc("GET /receipts/verify", a.verifyPage)
	a.mux.HandleFunc("GET /receipts/keys.json", a.keysFile)
	if a.cfg.Screens != nil {
		a.mux.HandleFunc("POST /desk/visit/pair", a.signedIn(a.pair))
		a.mux.HandleFunc("POST /desk/visit/services/{n}/draft", a.signedIn(a.draft))
		a.mux.HandleFunc("GET /desk/screen", a.screenPage)
		a.mux.HandleFunc("POST /desk/screen", a.claimScreen)
		a.mux.HandleFunc("GET /desk/screen/live", a.screenLive)
		a.mux.HandleFunc("GET /desk/screen/events", a.screenEvents)
	}
	a.mux.HandleFunc("POST /desk/training-mode", a.signedIn(a.trainingMode))
	a.mux.HandleFunc("GET /desk/training", a.signedIn(a.trainingPage))
	a.mux.HandleFunc("POST /desk/training", a.signedIn(a.setScenario))
	a.mux.HandleFunc("GET /desk/citizen", a.signedIn(a.citizenPage))
	a.mux.HandleFunc("POST /desk/citizen", a.signedIn(a.citizenLookup))
	if a.cfg.Console.complete() {
		a.consoleRoutes()
	}
	a.mux.HandleFunc("/desk/", func(w http.ResponseWriter, r *http.Request) {
		a.notFound(w, r, a.languageOf(r, nil))
	})
}

// staticFiles serves the embedded styles and script, cacheable for a day.
func staticFiles(root fs.FS) http.Handler {
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

// languageOf is the language to speak: the signed-in mediator's, else the
// one ?lang= names or the browser asks for, in the catalogue's languages.
func (a *App) languageOf(r *http.Request, s *events.Session) string {
	c := a.cfg.Catalog.Current()
	if s != nil && s.Mediator.Language != "" {
		return c.Language(s.Mediator.Language)
	}
	return c.Language(cmp.Or(r.URL.Query().Get("lang"), r.Header.Get("Accept-Language")))
}

// page is what every template gets: the language, its texts, the session
// (nil before sign-in) and the page's own data.
type page struct {
	Lang    string
	Title   string
	Session *events.Session
	// Operator is the signed-in operator's session on the console's
	// pages; nil elsewhere. Console says the page answers a path of the
	// console, signed in or not, so that it leads back there.
	Operator  *events.OperatorSession
	Console   bool
	CSRF      string
	Languages []language
	// Errors lead the page when a form was refused: each links to its
	// field.
	Errors []fieldError
	Data   any
	t      func(key string, args ...any) string
}

// T translates key into the page's language.
func (p *page) T(key string, args ...any) string { return p.t(key, args...) }

// language is one of the catalogue's languages, named in itself.
type language struct {
	Code, Name string
}

// newPage is what a template of the session's (nil before sign-in) gets,
// in lang.
func (a *App) newPage(lang string, s *events.Session, errs []fieldError, data any) *page {
	p := &page{Lang: lang, Session: s, Errors: errs, Data: data, t: a.i18n.translator(lang)}
	if s != nil {
		p.CSRF = s.CSRF
	}
	return p
}

// render writes the template name with data, in lang, with status.
func (a *App) render(w http.ResponseWriter, r *http.Request, status int, name, lang string, s *events.Session, errs []fieldError, data any) {
	a.write(w, r, status, name, a.newPage(lang, s, errs, data))
}

// write renders the template name for p with status.
func (a *App) write(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	lang := p.Lang
	t, ok := a.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	for _, code := range a.cfg.Catalog.Current().Languages {
		p.Languages = append(p.Languages, language{code, a.i18n.text(code, "language.name")})
	}
	p.Console = strings.HasPrefix(r.URL.Path, "/desk/ops/")
	p.Title = p.T("title." + name)
	if len(p.Errors) > 0 {
		p.Title = p.T("error.title.prefix") + " " + p.Title
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		a.cfg.Logger.Error("desk application: render", "page", name, "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.WriteHeader(status)
	_, _ = fmt.Fprint(w, b.String())
}

func (a *App) notFound(w http.ResponseWriter, r *http.Request, lang string) {
	a.render(w, r, http.StatusNotFound, "not-found", lang, nil, nil, nil)
}

// unavailable answers that spotflow cannot do it now.
func (a *App) unavailable(w http.ResponseWriter, r *http.Request, s *events.Session, err error) {
	a.cfg.Logger.Error("desk application", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", "1")
	a.render(w, r, http.StatusServiceUnavailable, "unavailable", a.languageOf(r, s), s, nil, nil)
}

// redirect answers a POST by sending the browser to path with GET.
func redirect(w http.ResponseWriter, r *http.Request, path string) {
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// parsePages parses each page template with the layout and the shared
// parts.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(web, "web/pages/*.html")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"join": strings.Join,
		"when": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04") },
		"day":  func(t time.Time) string { return t.Local().Format(time.DateOnly) },
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"list": func(v ...any) []any { return v },
		// minutes shows a duration in whole minutes.
		"minutes": func(d time.Duration) int { return int(d.Minutes()) },
		// percent shows a share (0.25) as a percentage (25%).
		"percent": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
		// has says whether ids holds id.
		"has": func(ids []int64, id int64) bool {
			for _, v := range ids {
				if v == id {
					return true
				}
			}
			return false
		},
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(web, "web/layout.html")
	if err != nil {
		return nil, fmt.Errorf("desk application: %w", err)
	}
	pages := make(map[string]*template.Template, len(names))
	for _, n := range names {
		t, err := template.Must(base.Clone()).ParseFS(web, n)
		if err != nil {
			return nil, fmt.Errorf("desk application: %w", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(n, "web/pages/"), ".html")
		pages[name] = t
	}
	return pages, nil
}
