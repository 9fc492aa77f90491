package deskapp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Screens keeps the pairing of citizens' screens with visits and the step
// each visit's mediator is on (*postgres.Store).
type Screens interface {
	PairScreen(ctx context.Context, id, username, code string, life time.Duration) error
	ClaimScreen(ctx context.Context, code string, tokenHash []byte) (string, error)
	ScreenVisit(ctx context.Context, tokenHash []byte) (*events.Visit, string, int64, error)
	ScreenStep(ctx context.Context, id, step string) error
	ListenScreens(ctx context.Context, moved func(visit string)) error
	MediatorForSignIn(ctx context.Context, username string) (events.MediatorSignIn, error)
}

// The citizen's screen's cookie, and how long a pairing code lasts.
const (
	screenCookie = "spotflow_screen"
	pairLife     = 10 * time.Minute
)

// hub tells the screens this process serves that their visit moved.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func (h *hub) subscribe(visit string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[string]map[chan struct{}]struct{})
	}
	if h.subs[visit] == nil {
		h.subs[visit] = make(map[chan struct{}]struct{})
	}
	h.subs[visit][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[visit], ch)
		if len(h.subs[visit]) == 0 {
			delete(h.subs, visit)
		}
		h.mu.Unlock()
	}
}

func (h *hub) moved(visit string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[visit] {
		select {
		case ch <- struct{}{}:
		default: // one wake-up pending is enough
		}
	}
}

// Run listens for visits' steps, from every process, until ctx ends.
func (a *App) Run(ctx context.Context) error {
	if a.cfg.Screens == nil {
		<-ctx.Done()
		return nil
	}
	for ctx.Err() == nil {
		if err := a.cfg.Screens.ListenScreens(ctx, a.screens.moved); err != nil {
			a.cfg.Logger.Warn("desk application: listening for the citizens' screens failed; listening again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// step records the page the mediator is on, for the citizen's screen.
func (a *App) step(r *http.Request, visit, step string) {
	if a.cfg.Screens == nil {
		return
	}
	if err := a.cfg.Screens.ScreenStep(r.Context(), visit, step); err != nil {
		a.cfg.Logger.Warn("desk application: the citizen's screen missed a step", "visit", visit, "err", err)
	}
}

// pairCode is a six-digit code, shown to the mediator to type on the
// citizen's screen.
func pairCode() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return fmt.Sprintf("%06d", n.Int64())
}

type pairData struct {
	Code   string
	Screen string
}

// pair gives the visit under way a pairing code and shows it.
func (a *App) pair(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.withVisit(w, r, s, func(v *events.Visit) {
		code := pairCode()
		if err := a.cfg.Screens.PairScreen(r.Context(), v.ID, s.Mediator.Username, code, pairLife); err != nil {
			a.unavailable(w, r, s, err)
			return
		}
		a.render(w, r, http.StatusOK, "pair", a.languageOf(r, s), s, nil, pairData{Code: code, Screen: a.publicBase(r) + "/desk/screen"})
	})
}

// screenData is what the citizen's screen shows.
type screenData struct {
	Token   string
	Message string
	// Paired says the screen follows a visit; then the rest is filled.
	Paired  bool
	Step    string
	Visit   visitView
	Served  string
	Desk    string
	Consent string
	Form    *formData
	Check   *checkData
	Done    *doneData
	Status  string
}

// screenPage asks for the pairing code, or shows the visit the screen
// follows.
func (a *App) screenPage(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	if v, _, _, err := a.screenVisit(r); err == nil && v.EndedAt.IsZero() {
		redirect(w, r, "/desk/screen/live")
		return
	}
	a.render(w, r, http.StatusOK, "screen-pair", lang, nil, nil, screenData{Token: formToken(w, r)})
}

// claimScreen pairs this screen with the visit whose code was typed.
func (a *App) claimScreen(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	token := formToken(w, r)
	if !checkForm(r, token) {
		a.forbidden(w, r, nil)
		return
	}
	addr, now := address(r), time.Now()
	if empty, wait := a.cfg.FailedAuth.Empty(addr, now); empty {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		a.render(w, r, http.StatusTooManyRequests, "screen-pair", lang, nil, nil,
			screenData{Token: token, Message: a.i18n.text(lang, "signin.throttled", int(wait.Minutes())+1)})
		return
	}
	screen := randomToken()
	_, err := a.cfg.Screens.ClaimScreen(r.Context(), strings.TrimSpace(r.PostFormValue("code")), hashToken(screen))
	if errors.Is(err, events.ErrNotFound) {
		a.cfg.FailedAuth.Take(addr, now)
		a.render(w, r, http.StatusUnprocessableEntity, "screen-pair", lang, nil, []fieldError{{"code", a.i18n.text(lang, "screen.code.invalid")}},
			screenData{Token: token})
		return
	}
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: screenCookie, Value: screen, Path: "/desk/screen", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	redirect(w, r, "/desk/screen/live")
}

func (a *App) screenVisit(r *http.Request) (*events.Visit, string, int64, error) {
	c, err := r.Cookie(screenCookie)
	if err != nil || c.Value == "" || a.cfg.Screens == nil {
		return nil, "", 0, events.ErrNotFound
	}
	return a.cfg.Screens.ScreenVisit(r.Context(), hashToken(c.Value))
}

// screenOf is what the screen of visit v shows at step, in the citizen's
// language: never another visit, never the national ID in full.
func (a *App) screenOf(ctx context.Context, v *events.Visit, step string) screenData {
	lang := v.Language
	data := screenData{Paired: true, Step: step, Visit: a.viewOf(v, lang)}
	if in, err := a.cfg.Screens.MediatorForSignIn(ctx, v.Username); err == nil {
		data.Served = in.Name
	}
	page, arg, _ := strings.Cut(step, ":")
	data.Step = page
	if page == "consent" {
		if c := a.cfg.Catalog.Current().Consent; c != nil {
			data.Consent = c.Text.In(lang)
		}
	}
	n, _ := strconv.Atoi(arg)
	i := slices.IndexFunc(v.Services, func(vs events.VisitService) bool { return vs.N == n })
	if i < 0 {
		if page == "form" || page == "check" || page == "done" {
			data.Step = "visit"
		}
		return data
	}
	vs := &v.Services[i]
	svc, ok := a.cfg.Catalog.Current().Service(vs.ServiceCode)
	if !ok {
		data.Step = "visit"
		return data
	}
	form := a.formOf(v, vs, svc, lang, nil)
	switch page {
	case "form":
		data.Form = &form
	case "check":
		data.Form = &form
	case "done":
		data.Done = &doneData{Visit: data.Visit, Service: a.serviceViewOf(svc, lang), RequestID: vs.RequestID, Expected: vs.SubmittedAt.Add(svc.SLA())}
		if vs.RequestID != "" {
			if rv, err := a.cfg.Store.RequestForDesk(ctx, v.DeskID, vs.RequestID); err == nil {
				data.Status = a.i18n.text(lang, "status."+string(rv.Status))
			}
		}
	}
	return data
}

// screenLive is the citizen's screen: the visit's current step, in large
// type, kept current by the script through screenEvents.
func (a *App) screenLive(w http.ResponseWriter, r *http.Request) {
	v, step, _, err := a.screenVisit(r)
	if errors.Is(err, events.ErrNotFound) {
		redirect(w, r, "/desk/screen")
		return
	}
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	a.render(w, r, http.StatusOK, "screen", v.Language, nil, nil, a.screenOf(r.Context(), v, step))
}

// screenEvents streams the screen's content, as server-sent events: now,
// then at each of the mediator's steps, until the visit ends. A browser
// that loses the stream reconnects and gets the current step first.
func (a *App) screenEvents(w http.ResponseWriter, r *http.Request) {
	v, step, _, err := a.screenVisit(r)
	switch {
	case errors.Is(err, events.ErrNotFound) || (err == nil && step == "ended"):
		// Nothing to follow: 204 tells the browser not to reconnect.
		w.WriteHeader(http.StatusNoContent)
		return
	case err != nil:
		a.cfg.Logger.Warn("desk application: the citizen's screen", "err", err)
		w.Header().Set("Retry-After", "3")
		http.Error(w, "the visit cannot be read right now", http.StatusServiceUnavailable)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	wake, done := a.screens.subscribe(v.ID)
	defer done()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	lastSeq := int64(-1)
	send := func() bool {
		v, step, seq, err := a.screenVisit(r)
		if err != nil {
			return false
		}
		// The visit's step is "ended" once it has (ScreenVisit).
		ended := step == "ended"
		if seq != lastSeq || ended {
			lastSeq = seq
			var b strings.Builder
			p := a.newPage(v.Language, nil, nil, a.screenOf(r.Context(), v, step))
			if err := a.pages["screen"].ExecuteTemplate(&b, "screen-step", p); err != nil {
				a.cfg.Logger.Error("desk application: render the citizen's screen", "err", err)
				return false
			}
			payload, _ := json.Marshal(map[string]any{"lang": v.Language, "html": b.String(), "ended": ended})
			fmt.Fprintf(w, "event: step\ndata: %s\n\n", payload)
			flusher.Flush()
		}
		return !ended
	}
	if !send() {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wake:
			if !send() {
				return
			}
		case <-heartbeat.C:
			fmt.Fprint(w, ": still here\n\n")
			flusher.Flush()
		}
	}
}

// draft keeps the answers as the mediator types them (the script posts the
// form a moment after each change), for the citizen's screen to show; they
// are checked when the form is sent.
func (a *App) draft(w http.ResponseWriter, r *http.Request, s *events.Session) {
	a.visitService(w, r, s, func(v *events.Visit, vs *events.VisitService, svc *events.Service) {
		if vs.RequestID != "" {
			w.WriteHeader(http.StatusConflict)
			return
		}
		_ = r.ParseForm()
		if err := a.cfg.Store.SaveVisitAnswers(r.Context(), v.ID, s.Mediator.Username, vs.N, answersOf(svc, r.PostForm), documentsOf(svc, r.PostForm)); err != nil {
			a.cfg.Logger.Warn("desk application: keep a draft", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		a.step(r, v.ID, "form:"+strconv.Itoa(vs.N))
		w.WriteHeader(http.StatusNoContent)
	})
}
