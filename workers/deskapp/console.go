package deskapp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/spotflow/spotflow/events"
)

// The operator's console, under /desk/ops/: operators sign in personally
// (a password, and a time-based one-time password when they turned their
// second factor on), with the same sessions, CSRF tokens and lockout as
// mediators; every change they make is in the audit log under their name.
// A viewer sees the lists, the health and the audit trail; only an
// operator opens a dead letter's message, replays, or changes people and
// credentials.

// OperatorAccounts keeps operators and their sessions (*postgres.Store).
type OperatorAccounts interface {
	OperatorForSignIn(ctx context.Context, username string) (events.OperatorSignIn, error)
	OperatorSignInFailed(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error)
	OperatorSignInRefused(ctx context.Context, username, address, why string) error
	OperatorSignedIn(ctx context.Context, username string, start events.SessionStart, secondFactorDue bool) error
	OperatorSession(ctx context.Context, tokenHash []byte, idle time.Duration) (events.OperatorSession, error)
	EndOperatorSession(ctx context.Context, tokenHash []byte) error
	SetOperatorPassword(ctx context.Context, code, passwordHash string) (string, error)
	OperatorSetupCodeValid(ctx context.Context, code string) (string, bool, error)
	SetOperatorLanguage(ctx context.Context, username, language string) error
	SecondFactorSecret(ctx context.Context, username string, pending bool) (string, int64, error)
	SecondFactorPassed(ctx context.Context, tokenHash []byte, step int64, address string) error
	EnrolSecondFactor(ctx context.Context, username, secret string) error
	ConfirmSecondFactor(ctx context.Context, username string, step int64, remove bool) error
}

// Work reads what is stuck (*postgres.Store).
type Work interface {
	ListDeadLetters(ctx context.Context, q events.DeadLetterQuery) ([]events.DeadLetter, error)
	// ViewDeadLetter reads a dead letter with its message, once the view
	// is in the audit log under by, with its reason.
	ViewDeadLetter(ctx context.Context, id int64, by events.By) (events.DeadLetter, error)
	StuckWork(ctx context.Context, q events.StuckQuery) ([]events.StuckWorkItem, error)
	ReplayProgress(ctx context.Context, since time.Time) ([]events.ReplayState, error)
}

// Replayer puts a dead letter back in its queue on behalf of a person, in
// the audit log with their reason (workers.Replayer).
type Replayer interface {
	Replay(ctx context.Context, id int64, by events.By) error
}

// AuditTrail reads the audit log and records what has no method of its own
// (*postgres.Store).
type AuditTrail interface {
	AuditEntries(ctx context.Context, q events.AuditQuery) ([]events.AuditEntry, error)
	Audit(ctx context.Context, by events.By, action events.AuditAction, target string, detail map[string]any) error
}

// ConsoleConfig configures the operator's console; without every field
// set there is no console.
type ConsoleConfig struct {
	Accounts OperatorAccounts
	Work     Work
	Replayer Replayer
	People   People
	Audit    AuditTrail
	// VerifyAudit recomputes the audit log's hash chain.
	VerifyAudit func(ctx context.Context) (events.AuditChainState, error)
	// ExportAudit writes the links of the audit log's chain whose entries
	// are from from to to, with what verifying them offline needs.
	ExportAudit func(ctx context.Context, w io.Writer, from, to time.Time) error
	// Health reads the pipeline's health at a glance.
	Health func(ctx context.Context) events.Health
}

func (c ConsoleConfig) complete() bool {
	return c.Accounts != nil && c.Work != nil && c.Replayer != nil && c.People != nil && c.Audit != nil &&
		c.VerifyAudit != nil && c.ExportAudit != nil && c.Health != nil
}

// The console's cookie: the operator's session, sent to every path so
// that the dashboard and /metrics know a signed-in operator too.
const opsCookie = "spotflow_ops"

// consoleRoutes serves the console.
func (a *App) consoleRoutes() {
	m := a.mux
	m.HandleFunc("GET /desk/ops/sign-in", a.opsSignInPage)
	m.HandleFunc("POST /desk/ops/sign-in", a.opsSignIn)
	m.HandleFunc("GET /desk/ops/sign-in/code", a.secondFactorPage)
	m.HandleFunc("POST /desk/ops/sign-in/code", a.secondFactor)
	m.HandleFunc("GET /desk/ops/setup", a.opsSetupPage)
	m.HandleFunc("POST /desk/ops/setup", a.opsSetup)
	m.HandleFunc("POST /desk/ops/sign-out", a.operator(false, a.opsSignOut))
	m.HandleFunc("GET /desk/ops/{$}", a.operator(false, a.healthPage))
	m.HandleFunc("GET /desk/ops/account", a.operator(false, a.accountPage))
	m.HandleFunc("POST /desk/ops/account", a.operator(false, a.account))
	m.HandleFunc("GET /desk/ops/account/second-factor", a.operator(false, a.enrolPage))
	m.HandleFunc("POST /desk/ops/account/second-factor", a.operator(false, a.enrol))
	m.HandleFunc("GET /desk/ops/stuck", a.operator(false, a.stuckPage))
	m.HandleFunc("GET /desk/ops/agencies/{agency}/stuck", a.operator(false, a.stuckPage))
	m.HandleFunc("GET /desk/ops/dead-letters/{id}", a.operator(false, a.deadLetterPage))
	m.HandleFunc("POST /desk/ops/dead-letters/{id}", a.operator(true, a.viewDeadLetter))
	m.HandleFunc("POST /desk/ops/replay", a.operator(true, a.replay))
	m.HandleFunc("GET /desk/ops/replays", a.operator(false, a.replaysPage))
	m.HandleFunc("GET /desk/ops/audit", a.operator(false, a.auditPage))
	m.HandleFunc("GET /desk/ops/audit/export", a.operator(false, a.auditExport))
	a.peopleRoutes()
}

// consoleHandler serves a console page to a signed-in operator.
type consoleHandler func(w http.ResponseWriter, r *http.Request, o *events.OperatorSession)

// operatorSession is the session r's cookie holds, if it is in force;
// events.ErrUnauthenticated otherwise.
func (a *App) operatorSession(r *http.Request) (events.OperatorSession, error) {
	return Sessions{Accounts: a.cfg.Console.Accounts, Idle: a.cfg.SessionIdle}.Session(r)
}

// Sessions recognises the console's signed-in operators, for the
// operators' other HTTP surfaces, the dashboard and /metrics
// (access.Operators). It is safe for concurrent use.
type Sessions struct {
	Accounts OperatorAccounts
	// Idle ends a session unused for this long; the console's setting.
	Idle time.Duration
}

// Session is the operator's session r's cookie holds, if it is in force;
// events.ErrUnauthenticated otherwise.
func (s Sessions) Session(r *http.Request) (events.OperatorSession, error) {
	c, err := r.Cookie(opsCookie)
	if err != nil || c.Value == "" || s.Accounts == nil {
		return events.OperatorSession{}, events.ErrUnauthenticated
	}
	return s.Accounts.OperatorSession(r.Context(), hashToken(c.Value), cmp.Or(s.Idle, 30*time.Minute))
}

// Operator reports whether r comes from an operator signed in to the
// console, whatever their role; false when that cannot be read.
func (s Sessions) Operator(r *http.Request) bool {
	o, err := s.Session(r)
	return err == nil && !o.SecondFactorDue
}

// operator serves h to a signed-in operator, checking the CSRF token of
// every POST; with change, to an operator of the operator role only (a
// viewer is refused, 403). Anyone else is sent to sign in, and back here
// after.
func (a *App) operator(change bool, h consoleHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, err := a.operatorSession(r)
		if errors.Is(err, events.ErrUnauthenticated) || (err == nil && o.SecondFactorDue) {
			toSignIn(w, r, opsHome)
			return
		}
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		refused := (r.Method == http.MethodPost && !checkForm(r, o.CSRF)) || (change && !o.Operator.Role.MayChange())
		// Every page an operator uses is attributed to them; what they
		// change is in the audit log besides.
		a.cfg.Logger.Info("console", "operator", o.Operator.Username, "role", o.Operator.Role,
			"method", r.Method, "path", r.URL.Path, "refused", refused)
		if refused {
			a.renderConsole(w, r, http.StatusForbidden, "forbidden", &o, nil, nil)
			return
		}
		h(w, r, &o)
	}
}

// by is how the audit log names the operator, with reason.
func by(o *events.OperatorSession, reason string) events.By {
	return events.By{Actor: o.Operator.Actor(), Reason: strings.TrimSpace(reason)}
}

// renderConsole writes a console page for o (nil before sign-in).
func (a *App) renderConsole(w http.ResponseWriter, r *http.Request, status int, name string, o *events.OperatorSession, errs []fieldError, data any) {
	lang := a.consoleLanguage(r, o)
	p := a.newPage(lang, nil, errs, data)
	if o != nil {
		p.Operator, p.CSRF = o, o.CSRF
	}
	a.write(w, r, status, name, p)
}

// consoleLanguage is the signed-in operator's language, else the one
// ?lang= names or the browser asks for.
func (a *App) consoleLanguage(r *http.Request, o *events.OperatorSession) string {
	if o != nil && o.Operator.Language != "" {
		return a.cfg.Catalog.Current().Language(o.Operator.Language)
	}
	return a.languageOf(r, nil)
}

func setOpsCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	setCookieOn(w, r, "/", opsCookie, value, maxAge)
}

// opsHome is the console's first page.
const opsHome = "/desk/ops/"

func (a *App) opsSignInPage(w http.ResponseWriter, r *http.Request) {
	a.renderConsole(w, r, http.StatusOK, "ops-sign-in", nil, nil, a.signInForm(w, r, opsHome))
}

// opsSignIn checks an operator's username and password as signIn checks a
// mediator's: failures slow down, lock the account, count against the
// address, and are audited. A right password opens the session, or, for an
// operator with a second factor, a session waiting for their one-time
// password.
func (a *App) opsSignIn(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	token := formToken(w, r)
	username := strings.ToLower(strings.TrimSpace(r.PostFormValue("username")))
	data := signInData{Token: token, Next: safeNext(r.PostFormValue("next"), opsHome), Username: username}
	if !checkForm(r, token) {
		a.renderConsole(w, r, http.StatusForbidden, "forbidden", nil, nil, nil)
		return
	}
	accounts := a.cfg.Console.Accounts
	refuse := func(status int, key string, args ...any) {
		data.Message = a.i18n.text(lang, key, args...)
		a.renderConsole(w, r, status, "ops-sign-in", nil, nil, data)
	}
	now := time.Now()
	var secondFactor bool
	find := func(ctx context.Context, username string) (passwordCheck, error) {
		in, err := accounts.OperatorForSignIn(ctx, username)
		secondFactor = in.SecondFactor
		return passwordCheck{in.PasswordHash, in.DisabledAt, in.LockedUntil}, err
	}
	if !a.passwordAccepted(w, r, username, now, refuse, find, accounts.OperatorSignInFailed, accounts.OperatorSignInRefused) {
		return
	}
	session := randomToken()
	err := accounts.OperatorSignedIn(r.Context(), username, events.SessionStart{
		TokenHash: hashToken(session), CSRF: randomToken(), ExpiresAt: now.Add(a.cfg.SessionMax), Address: address(r),
	}, secondFactor)
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	setOpsCookie(w, r, session, 0)
	if secondFactor {
		redirect(w, r, "/desk/ops/sign-in/code?next="+url.QueryEscape(data.Next))
		return
	}
	redirect(w, r, data.Next)
}

// throttled refuses, 429, an address that failed to authenticate too
// often, recording it with record; it reports whether it did.
func (a *App) throttled(w http.ResponseWriter, r *http.Request, now time.Time, record func() error, refuse func(int, string, ...any)) bool {
	empty, wait := a.cfg.FailedAuth.Empty(address(r), now)
	if !empty {
		return false
	}
	_ = record()
	w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
	refuse(http.StatusTooManyRequests, "signin.throttled", int(wait.Minutes())+1)
	return true
}

// failedSignIn counts a failed sign-in against the address and, when the
// username is known, the account (failed, which may lock it), else records
// it (refused); it answers after a pause that grows with the failures in a
// row: ¼ s, ½ s, 1 s, 2 s, then 4 s.
func (a *App) failedSignIn(r *http.Request, known bool, username string, refuse func(int, string, ...any),
	failed func(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error),
	refused func(ctx context.Context, username, address, why string) error) {
	addr := address(r)
	a.cfg.FailedAuth.Take(addr, time.Now())
	failures, locked := 1, false
	var err error
	if known {
		failures, locked, err = failed(r.Context(), username, addr, a.cfg.LockAfter, a.cfg.LockFor)
	} else {
		err = refused(r.Context(), "", addr, "unknown username")
	}
	if err != nil {
		a.cfg.Logger.Error("desk application: record a failed sign-in", "err", err)
	}
	time.Sleep(min(time.Duration(1<<min(failures-1, 4))*250*time.Millisecond, 4*time.Second))
	if locked {
		refuse(http.StatusUnauthorized, "signin.locked", int(a.cfg.LockFor.Minutes()))
		return
	}
	refuse(http.StatusUnauthorized, "signin.failed")
}

// secondFactorData is what the page asking for a one-time password shows.
type secondFactorData struct {
	Next, Message string
}

// pendingSession is the session waiting for its one-time password, if r
// holds one.
func (a *App) pendingSession(r *http.Request) (*events.OperatorSession, bool, error) {
	o, err := a.operatorSession(r)
	if errors.Is(err, events.ErrUnauthenticated) || (err == nil && !o.SecondFactorDue) {
		return nil, false, nil
	}
	return &o, err == nil, err
}

func (a *App) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	o, ok, err := a.pendingSession(r)
	switch {
	case err != nil:
		a.unavailable(w, r, nil, err)
	case !ok:
		redirect(w, r, "/desk/ops/sign-in")
	default:
		a.renderConsole(w, r, http.StatusOK, "ops-code", o, nil, secondFactorData{Next: safeNext(r.URL.Query().Get("next"), opsHome)})
	}
}

// secondFactor checks the one-time password of a session waiting for it.
// A wrong one counts as a failed sign-in; each is good once.
func (a *App) secondFactor(w http.ResponseWriter, r *http.Request) {
	o, ok, err := a.pendingSession(r)
	switch {
	case err != nil:
		a.unavailable(w, r, nil, err)
		return
	case !ok:
		redirect(w, r, "/desk/ops/sign-in")
		return
	case !checkForm(r, o.CSRF):
		a.renderConsole(w, r, http.StatusForbidden, "forbidden", nil, nil, nil)
		return
	}
	accounts := a.cfg.Console.Accounts
	data := secondFactorData{Next: safeNext(r.PostFormValue("next"), opsHome)}
	lang := a.consoleLanguage(r, o)
	refuse := func(status int, key string, args ...any) {
		data.Message = a.i18n.text(lang, key, args...)
		a.renderConsole(w, r, status, "ops-code", o, nil, data)
	}
	username := o.Operator.Username
	if a.throttled(w, r, time.Now(), func() error {
		return accounts.OperatorSignInRefused(r.Context(), username, address(r), "address over its limit")
	}, refuse) {
		return
	}
	secret, last, err := accounts.SecondFactorSecret(r.Context(), username, false)
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	step, ok := checkCode(secret, r.PostFormValue("code"), time.Now())
	if ok && step > last {
		c, _ := r.Cookie(opsCookie)
		err := accounts.SecondFactorPassed(r.Context(), hashToken(c.Value), step, address(r))
		if err == nil {
			redirect(w, r, data.Next)
			return
		}
		if !errors.Is(err, events.ErrUnauthenticated) {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	a.failedSignIn(r, true, username, func(status int, key string, args ...any) {
		if key == "signin.failed" {
			key = "console.code.wrong"
		}
		refuse(status, key, args...)
	}, accounts.OperatorSignInFailed, accounts.OperatorSignInRefused)
}

// totpOptions are RFC 6238's defaults, which every authenticator app
// reads: 6 digits, 30-second steps, HMAC-SHA1.
var totpOptions = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// checkCode checks a one-time password against secret at now, allowing
// one step of clock drift either way, and returns the time step it is
// right for.
func checkCode(secret, code string, now time.Time) (int64, bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if secret == "" || len(code) != 6 {
		return 0, false
	}
	for _, drift := range []time.Duration{0, -30 * time.Second, 30 * time.Second} {
		at := now.Add(drift)
		if ok, err := totp.ValidateCustom(code, secret, at, totpOptions); err == nil && ok {
			return at.Unix() / 30, true
		}
	}
	return 0, false
}

func (a *App) opsSignOut(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	if c, err := r.Cookie(opsCookie); err == nil {
		if err := a.cfg.Console.Accounts.EndOperatorSession(r.Context(), hashToken(c.Value)); err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	setOpsCookie(w, r, "", -1)
	redirect(w, r, "/desk/ops/sign-in?signed-out=1&lang="+url.QueryEscape(o.Operator.Language))
}

func (a *App) opsSetupPage(w http.ResponseWriter, r *http.Request) {
	code := strings.TrimSpace(r.URL.Query().Get("code"))
	data := setupData{Token: formToken(w, r), Code: code}
	if code != "" {
		username, ok, err := a.cfg.Console.Accounts.OperatorSetupCodeValid(r.Context(), code)
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		if !ok {
			data.Message = a.i18n.text(a.languageOf(r, nil), "setup.code.invalid")
		}
		data.Username = username
	}
	a.renderConsole(w, r, http.StatusOK, "ops-setup", nil, nil, data)
}

// opsSetup sets an operator's password with their one-time code, as setup
// does a mediator's.
func (a *App) opsSetup(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	token := formToken(w, r)
	if !checkForm(r, token) {
		a.renderConsole(w, r, http.StatusForbidden, "forbidden", nil, nil, nil)
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	data := setupData{Token: token, Code: code}
	errs := a.passwordErrors(lang, r.PostFormValue("password"), r.PostFormValue("password-again"))
	if len(errs) == 0 {
		_, err := a.cfg.Console.Accounts.SetOperatorPassword(r.Context(), code, a.cfg.Hasher.Hash(r.PostFormValue("password")))
		switch {
		case err == nil:
			redirect(w, r, "/desk/ops/sign-in?password-set=1&lang="+url.QueryEscape(lang))
			return
		case !errors.Is(err, events.ErrNotFound):
			a.unavailable(w, r, nil, err)
			return
		}
		errs = append(errs, fieldError{ID: "code", Message: a.i18n.text(lang, "setup.code.invalid")})
	}
	a.renderConsole(w, r, http.StatusUnprocessableEntity, "ops-setup", nil, errs, data)
}

// passwordErrors checks a new password: at least minPassword characters,
// typed twice alike.
func (a *App) passwordErrors(lang, password, again string) []fieldError {
	switch {
	case utf8.RuneCountInString(password) < minPassword:
		return []fieldError{{ID: "password", Message: a.i18n.text(lang, "setup.password.short", minPassword)}}
	case password != again:
		return []fieldError{{ID: "password-again", Message: a.i18n.text(lang, "setup.password.different")}}
	}
	return nil
}

// accountData is what the operator's own account page shows.
type accountData struct {
	Notice string
}

func (a *App) accountPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	var data accountData
	for _, n := range []string{"second-factor-on", "second-factor-off", "language"} {
		if r.URL.Query().Get(n) != "" {
			data.Notice = a.i18n.text(a.consoleLanguage(r, o), "console.account."+n)
		}
	}
	a.renderConsole(w, r, http.StatusOK, "ops-account", o, nil, data)
}

// account sets the operator's language.
func (a *App) account(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	lang := a.cfg.Catalog.Current().Language(r.PostFormValue("language"))
	if err := a.cfg.Console.Accounts.SetOperatorLanguage(r.Context(), o.Operator.Username, lang); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	redirect(w, r, "/desk/ops/account?language=1")
}

// enrolData is what the page that turns the second factor on or off shows.
type enrolData struct {
	Secret string
	QR     any
	Remove bool
}

// enrolPage starts turning the second factor on: a new secret, kept
// sealed until confirmed, shown as a QR code and in base32. An operator
// who has one is offered to turn it off.
func (a *App) enrolPage(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	a.renderEnrol(w, r, o, http.StatusOK, nil)
}

func (a *App) renderEnrol(w http.ResponseWriter, r *http.Request, o *events.OperatorSession, status int, errs []fieldError) {
	data := enrolData{Remove: o.Operator.SecondFactor}
	if !data.Remove {
		key, err := totp.Generate(totp.GenerateOpts{Issuer: "spotflow", AccountName: o.Operator.Username})
		if err == nil {
			err = a.cfg.Console.Accounts.EnrolSecondFactor(r.Context(), o.Operator.Username, key.Secret())
		}
		if err == nil {
			data.QR, err = qrSVG(key.URL())
		}
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		data.Secret = key.Secret()
	}
	a.renderConsole(w, r, status, "ops-second-factor", o, errs, data)
}

// enrol confirms the secret being enrolled with a one-time password from
// it, or, for an operator who has a second factor, removes it once a
// one-time password from it is right.
func (a *App) enrol(w http.ResponseWriter, r *http.Request, o *events.OperatorSession) {
	remove := o.Operator.SecondFactor
	secret, last, err := a.cfg.Console.Accounts.SecondFactorSecret(r.Context(), o.Operator.Username, !remove)
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	step, ok := checkCode(secret, r.PostFormValue("code"), time.Now())
	if ok && step > last {
		err = a.cfg.Console.Accounts.ConfirmSecondFactor(r.Context(), o.Operator.Username, step, remove)
		if err == nil {
			redirect(w, r, "/desk/ops/account?second-factor-"+map[bool]string{true: "off", false: "on"}[remove]+"=1")
			return
		}
		if !errors.Is(err, events.ErrUnauthenticated) {
			a.unavailable(w, r, nil, err)
			return
		}
	}
	a.renderEnrol(w, r, o, http.StatusUnprocessableEntity,
		[]fieldError{{ID: "code", Message: a.i18n.text(a.consoleLanguage(r, o), "console.code.wrong")}})
}
