package deskapp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// Argon2 are argon2id's parameters: memory in KiB, passes, lanes.
type Argon2 struct {
	Memory  uint32
	Time    uint32
	Threads uint8
}

// DefaultArgon2 is RFC 9106's second recommended choice: 64 MiB, 3
// passes, with two lanes for this machine's two cores.
var DefaultArgon2 = Argon2{Memory: 64 << 10, Time: 3, Threads: 2}

// Hasher hashes and checks passwords with argon2id, at most two at a time
// so that a burst of sign-ins cannot take more than twice the memory.
type Hasher struct {
	p    Argon2
	busy chan struct{}
	// dummy is checked against when a username is unknown, so that the
	// answer takes as long as for a known one.
	dummy string
}

// NewHasher returns a hasher with parameters p.
func NewHasher(p Argon2) *Hasher {
	h := &Hasher{p: p, busy: make(chan struct{}, 2)}
	h.dummy = h.Hash("not a password of anyone's")
	return h
}

// Hash returns password's argon2id hash in the PHC string format,
// $argon2id$v=19$m=…,t=…,p=…$salt$hash, with a fresh 16-byte salt.
func (h *Hasher) Hash(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	h.busy <- struct{}{}
	key := argon2.IDKey([]byte(password), salt, h.p.Time, h.p.Memory, h.p.Threads, 32)
	<-h.busy
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.p.Memory, h.p.Time, h.p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key))
}

// Verify reports whether password is the one hashed, with the parameters
// the hash names. An empty hash (an unknown username, a password not set
// yet) costs the same and matches nothing.
func (h *Hasher) Verify(hash, password string) bool {
	known := hash != ""
	if !known {
		hash = h.dummy
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var p Argon2
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	h.busy <- struct{}{}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	<-h.busy
	return subtle.ConstantTimeCompare(got, want) == 1 && known
}

// The cookies: the session's, and the one that guards the forms shown
// before there is a session (sign-in, setting a password).
const (
	sessionCookie = "spotflow_desk"
	formCookie    = "spotflow_desk_form"
)

// minPassword is the shortest password a mediator may set, in characters.
const minPassword = 12

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// setCookie sets a cookie of the desk application's, for its paths only.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	setCookieOn(w, r, "/desk/", name, value, maxAge)
}

// setCookieOn sets a cookie for the paths under path: HttpOnly,
// SameSite=Strict, Secure under TLS; a session's (maxAge 0) or deleted
// (maxAge -1).
func setCookieOn(w http.ResponseWriter, r *http.Request, path, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// address is the caller's IP address.
func address(r *http.Request) string { return ratelimit.Host(r.RemoteAddr) }

// sameOrigin refuses a form posted from another site: browsers say where
// a request comes from (Sec-Fetch-Site, Origin), and a page of another
// origin must not act for a mediator.
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch site {
	case "", "same-origin", "none":
	default:
		return false
	}
	// A browser sends "Origin: null" where a referrer policy or a
	// redirect hides the origin; its Sec-Fetch-Site still says where the
	// form came from.
	if o := r.Header.Get("Origin"); o == "null" && site == "same-origin" {
		return true
	} else if o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// checkForm checks a POST's origin and that its csrf field matches want.
func checkForm(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return sameOrigin(r) && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// formToken is the token the pre-session forms carry, set in its cookie if
// the browser has none.
func formToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(formCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	t := randomToken()
	setCookie(w, r, formCookie, t, 0)
	return t
}

func (a *App) forbidden(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.render(w, r, http.StatusForbidden, "forbidden", a.languageOf(r, s), s, nil, nil)
}

// sessionHandler serves a page to a signed-in mediator.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s *events.Session)

// signedIn serves h to a signed-in mediator, checking the CSRF token of
// every POST; anyone else is sent to sign in, and back here after.
func (a *App) signedIn(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var s events.Session
		err := events.ErrUnauthenticated
		if c, cerr := r.Cookie(sessionCookie); cerr == nil && c.Value != "" {
			s, err = a.cfg.Store.Session(r.Context(), hashToken(c.Value), a.cfg.SessionIdle)
		}
		if errors.Is(err, events.ErrUnauthenticated) {
			toSignIn(w, r, "/desk/")
			return
		}
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		if r.Method == http.MethodPost && !checkForm(r, s.CSRF) {
			a.forbidden(w, r, &s)
			return
		}
		h(w, r, &s)
	}
}

// toSignIn sends the browser to the sign-in page under home (the desk
// application's, /desk/, or the console's, /desk/ops/), to come back to the
// page it asked for, or, after a POST, to home.
func toSignIn(w http.ResponseWriter, r *http.Request, home string) {
	next := home
	if r.Method == http.MethodGet {
		next = r.URL.RequestURI()
	}
	redirect(w, r, home+"sign-in?next="+url.QueryEscape(next))
}

// signInData is what the sign-in page shows.
type signInData struct {
	Token, Next, Username string
	// Message, when set, says why the last try failed; Notice what just
	// happened (a password set, a sign-out).
	Message, Notice string
}

// safeNext keeps next when it is a path under home (the desk
// application's, /desk/, or the console's, /desk/ops/), else home.
func safeNext(next, home string) string {
	if strings.HasPrefix(next, home) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return home
}

// signInForm is what a sign-in page shows before a try: where to go after
// (a path under home), and what just happened.
func (a *App) signInForm(w http.ResponseWriter, r *http.Request, home string) signInData {
	lang := a.languageOf(r, nil)
	data := signInData{Token: formToken(w, r), Next: safeNext(r.URL.Query().Get("next"), home)}
	for _, n := range []string{"password-set", "signed-out"} {
		if r.URL.Query().Get(n) != "" {
			data.Notice = a.i18n.text(lang, "signin."+n)
		}
	}
	return data
}

func (a *App) signInPage(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, "sign-in", a.languageOf(r, nil), nil, nil, a.signInForm(w, r, "/desk/"))
}

// signIn checks a username and password. Failures answer after a pause
// that grows with the failures in a row, are counted against the address
// and the account, lock the account after LockAfter, and are audited;
// the answer never says whether the username exists.
func (a *App) signIn(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	token := formToken(w, r)
	username := strings.ToLower(strings.TrimSpace(r.PostFormValue("username")))
	data := signInData{Token: token, Next: safeNext(r.PostFormValue("next"), "/desk/"), Username: username}
	if !checkForm(r, token) {
		a.forbidden(w, r, nil)
		return
	}
	refuse := func(status int, key string, args ...any) {
		data.Message = a.i18n.text(lang, key, args...)
		a.render(w, r, status, "sign-in", lang, nil, nil, data)
	}
	now := time.Now()
	find := func(ctx context.Context, username string) (passwordCheck, error) {
		in, err := a.cfg.Store.MediatorForSignIn(ctx, username)
		return passwordCheck{in.PasswordHash, in.DisabledAt, in.LockedUntil}, err
	}
	if !a.passwordAccepted(w, r, username, now, refuse, find, a.cfg.Store.SignInFailed, a.cfg.Store.SignInRefused) {
		return
	}
	session := randomToken()
	err := a.cfg.Store.SignedIn(r.Context(), username, events.SessionStart{
		TokenHash: hashToken(session), CSRF: randomToken(), ExpiresAt: now.Add(a.cfg.SessionMax), Address: address(r),
	})
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	setCookie(w, r, sessionCookie, session, 0)
	redirect(w, r, data.Next)
}

// passwordCheck is an account as a sign-in checks it: its password's hash
// (empty until set), and when it was disabled and until when it is locked.
type passwordCheck struct {
	hash                    string
	disabledAt, lockedUntil time.Time
}

// passwordAccepted is what the mediators' and the operators' sign-ins
// share: it refuses an address that failed too often, finds the account,
// refuses it disabled or locked, and counts a wrong password (failed) or a
// refusal (refused). It answers every refusal itself, through refuse or the
// outage page, and reports whether username may be signed in. An unknown
// username costs the same hashing as a known one and gets the same answer.
func (a *App) passwordAccepted(w http.ResponseWriter, r *http.Request, username string, now time.Time,
	refuse func(int, string, ...any), find func(ctx context.Context, username string) (passwordCheck, error),
	failed func(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error),
	refused func(ctx context.Context, username, address, why string) error) bool {
	addr := address(r)
	if a.throttled(w, r, now, func() error { return refused(r.Context(), "", addr, "address over its limit") }, refuse) {
		return false
	}
	in, err := find(r.Context(), username)
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		a.unavailable(w, r, nil, err)
		return false
	}
	known := err == nil
	ok := a.cfg.Hasher.Verify(in.hash, r.PostFormValue("password"))
	switch {
	case known && !in.disabledAt.IsZero():
		_ = refused(r.Context(), username, addr, "disabled")
		refuse(http.StatusUnauthorized, "signin.failed")
	case known && in.lockedUntil.After(now):
		_ = refused(r.Context(), username, addr, "locked")
		refuse(http.StatusUnauthorized, "signin.locked", int(time.Until(in.lockedUntil).Minutes())+1)
	case !ok:
		a.failedSignIn(r, known, username, refuse, failed, refused)
	default:
		return true
	}
	return false
}

func (a *App) signOut(w http.ResponseWriter, r *http.Request, s *events.Session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := a.cfg.Store.EndSession(r.Context(), hashToken(c.Value)); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
	}
	setCookie(w, r, sessionCookie, "", -1)
	redirect(w, r, "/desk/sign-in?signed-out=1&lang="+url.QueryEscape(s.Mediator.Language))
}

// setupData is what the page that sets a password shows.
type setupData struct {
	Token, Code, Username string
	Message               string
}

func (a *App) setupPage(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	code := strings.TrimSpace(r.URL.Query().Get("code"))
	data := setupData{Token: formToken(w, r), Code: code}
	if code != "" {
		username, ok, err := a.cfg.Store.SetupCodeValid(r.Context(), code)
		if err != nil {
			a.unavailable(w, r, nil, err)
			return
		}
		if !ok {
			data.Message = a.i18n.text(lang, "setup.code.invalid")
		}
		data.Username = username
		if in, err := a.cfg.Store.MediatorForSignIn(r.Context(), username); ok && err == nil && r.URL.Query().Get("lang") == "" {
			// The code names the mediator: their language.
			lang = a.cfg.Catalog.Current().Language(in.Language)
		}
	}
	a.render(w, r, http.StatusOK, "setup", lang, nil, nil, data)
}

// setup sets a mediator's password with their one-time code: at least
// minPassword characters, typed twice alike.
func (a *App) setup(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	token := formToken(w, r)
	if !checkForm(r, token) {
		a.forbidden(w, r, nil)
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	password, again := r.PostFormValue("password"), r.PostFormValue("password-again")
	data := setupData{Token: token, Code: code}
	errs := a.passwordErrors(lang, password, again)
	if len(errs) > 0 {
		a.render(w, r, http.StatusUnprocessableEntity, "setup", lang, nil, errs, data)
		return
	}
	if _, err := a.cfg.Store.SetMediatorPassword(r.Context(), code, a.cfg.Hasher.Hash(password)); err != nil {
		if !errors.Is(err, events.ErrNotFound) {
			a.unavailable(w, r, nil, err)
			return
		}
		errs = append(errs, fieldError{ID: "code", Message: a.i18n.text(lang, "setup.code.invalid")})
		a.render(w, r, http.StatusUnprocessableEntity, "setup", lang, nil, errs, data)
		return
	}
	redirect(w, r, "/desk/sign-in?password-set=1&lang="+url.QueryEscape(lang))
}
