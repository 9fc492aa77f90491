// Package dashboard serves the operators' live dashboard under /dashboard:
// throughput, backlog, latency and service levels per desk, municipality,
// agency and service, drawn on the server as SVG, and updated by
// server-sent events. It reads aggregates only (never personal data)
// through the small Store interface declared here; its page, stylesheet and
// script are embedded from web/. A viewer without the operator's credential
// sees no count from 1 to 4 and no figure drawn from fewer than 5 cases.
package dashboard

import (
	"bytes"
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
	"net/url"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/access"
)

// Store reads the aggregates the dashboard shows. Implementations
// read roll-ups only and never return personal data.
type Store interface {
	Dashboard(ctx context.Context, f events.DashboardFilter, now time.Time) (*events.DashboardData, error)
}

// Config configures a Dashboard.
type Config struct {
	// Store reads the roll-ups. Required.
	Store Store
	// Catalog names services and agencies and gives services' expected
	// completion times. Required.
	Catalog *events.Catalog
	// Backlog reads the agencies' work queues. Optional: without it the
	// backlog shows as unknown.
	Backlog func(ctx context.Context) ([]events.QueueBacklog, error)
	// Operators tells whether a viewer carries an operator's credential.
	// An operator sees every figure; anyone else sees a count from 1 to
	// MinCount-1 as "fewer than 5" and no figure drawn from fewer than
	// MinCount cases, and is offered to sign in (/dashboard?operator=1,
	// which asks for the credential). Optional: without it every viewer
	// sees small counts suppressed and no one is offered to sign in.
	// Whether the dashboard may be reached at all is for the HTTP server
	// to decide (access.Policy.Require).
	Operators access.Operators
	// Every is how often a live page is updated. Default 2 seconds.
	Every time.Duration
	// Now tells the time; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Dashboard serves the operators' live dashboard under /dashboard: the page,
// its stylesheet and script, and a stream of server-sent events that
// replaces the page's figures every Every without a reload. Concurrent
// viewers of the same filter share one reading of the store per Every. It
// is safe for concurrent use.
type Dashboard struct {
	cfg    Config
	mux    *http.ServeMux
	page   *template.Template
	mu     sync.Mutex
	cached map[viewKey]*cachedView
	// closed ends every live stream.
	closed    chan struct{}
	closeOnce sync.Once
}

// viewKey names a cached view: the filter and the audience, so that a view
// rendered for an operator is never served to anyone else.
type viewKey struct {
	filter   events.DashboardFilter
	operator bool
}

type cachedView struct {
	mu             sync.Mutex
	at             time.Time
	html           []byte
	municipalities []string
	err            error
	ready          bool
}

//go:embed web
var webFiles embed.FS

// New validates cfg and returns the dashboard.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("new dashboard: Store and Catalog are required")
	}
	cfg.Every = cmp.Or(cfg.Every, 2*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	page, err := template.New("dashboard.html").Funcs(templateFuncs).ParseFS(webFiles, "web/dashboard.html")
	if err != nil {
		return nil, fmt.Errorf("new dashboard: %w", err)
	}
	assets, err := fs.Sub(webFiles, "web")
	if err != nil {
		return nil, fmt.Errorf("new dashboard: %w", err)
	}
	d := &Dashboard{cfg: cfg, mux: http.NewServeMux(), page: page, cached: make(map[viewKey]*cachedView),
		closed: make(chan struct{})}
	d.mux.HandleFunc("GET /dashboard", d.serveSnapshot(false))
	d.mux.HandleFunc("GET /dashboard/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard", http.StatusMovedPermanently)
	})
	d.mux.HandleFunc("GET /dashboard/live", d.serveLive)
	d.mux.HandleFunc("GET /dashboard/figures", d.serveSnapshot(true))
	files := http.StripPrefix("/dashboard/assets/", http.FileServerFS(assets))
	d.mux.HandleFunc("GET /dashboard/assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	return d, nil
}

// Close ends the live streams, so that an HTTP server shutting down need not
// wait for viewers to leave; their pages reconnect to another process or
// once this one is back. The page itself is still served.
func (d *Dashboard) Close() { d.closeOnce.Do(func() { close(d.closed) }) }

// ServeHTTP serves /dashboard and everything under it.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	d.mux.ServeHTTP(w, r)
}

// filterOf reads the filter from the query: municipality and range.
func filterOf(r *http.Request) events.DashboardFilter {
	f := events.DashboardFilter{Municipality: r.URL.Query().Get("municipality"), Range: events.Range(r.URL.Query().Get("range"))}
	if !f.Range.Valid() {
		f.Range = events.RangeHour
	}
	if !events.ValidToken(f.Municipality) {
		f.Municipality = ""
	}
	return f
}

// audienceOf is who r comes from: an operator, if it carries the
// operator's credential.
func (d *Dashboard) audienceOf(r *http.Request) audience {
	return audience{operator: d.cfg.Operators != nil && d.cfg.Operators.Operator(r)}
}

// signIn is where a viewer of f who is not an operator signs in; empty when
// no operator's credential is configured.
func (d *Dashboard) signIn(f events.DashboardFilter) string {
	if d.cfg.Operators == nil {
		return ""
	}
	q := url.Values{"operator": {"1"}, "range": {string(f.Range)}}
	if f.Municipality != "" {
		q.Set("municipality", f.Municipality)
	}
	return "/dashboard?" + q.Encode()
}

// serveSnapshot serves the whole page, or with figures set, the live part
// of it as JSON, for scripts and tests. A request with ?operator asks for
// the operator's credential (so that a browser prompts for it) when it
// does not carry it.
func (d *Dashboard) serveSnapshot(figures bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := filterOf(r)
		a := d.audienceOf(r)
		if !a.operator && d.cfg.Operators != nil && r.URL.Query().Has("operator") {
			access.Challenge(w, r)
			return
		}
		if figures {
			view, err := d.view(r.Context(), f, a)
			if err != nil {
				http.Error(w, "the dashboard cannot read its figures right now", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(view.Figures)
			return
		}
		live, municipalities, err := d.live(r.Context(), f, a)
		if err != nil {
			http.Error(w, "the dashboard cannot read its figures right now", http.StatusServiceUnavailable)
			return
		}
		pv := pageView{Filter: f, Ranges: events.Ranges, Municipalities: municipalities, Live: template.HTML(live),
			Suppressed: !a.operator}
		if !a.operator {
			pv.SignIn = d.signIn(f)
		}
		var buf bytes.Buffer
		err = d.page.ExecuteTemplate(&buf, "page", pv)
		if err != nil {
			d.cfg.Logger.Error("dashboard: render page", "err", err)
			http.Error(w, "cannot render the dashboard", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(buf.Bytes())
	}
}

// serveLive streams the live part of the page as server-sent events, one
// every Every, until the viewer goes away. The viewer's audience is
// decided once, from the credential the stream was opened with.
func (d *Dashboard) serveLive(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported", http.StatusInternalServerError)
		return
	}
	f := filterOf(r)
	a := d.audienceOf(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", d.cfg.Every.Milliseconds())
	flusher.Flush()
	t := time.NewTicker(d.cfg.Every)
	defer t.Stop()
	for {
		html, _, err := d.live(r.Context(), f, a)
		if r.Context().Err() != nil {
			return
		}
		if err == nil {
			data, _ := json.Marshal(string(html))
			if _, err := fmt.Fprintf(w, "event: figures\ndata: %s\n\n", data); err != nil {
				return
			}
		} else {
			fmt.Fprint(w, "event: stale\ndata: \"\"\n\n")
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-d.closed:
			return
		case <-t.C:
		}
	}
}

// live renders the live part of the page for f as a sees it, once per Every
// whatever the number of viewers, and returns it with the municipalities to
// choose from. Operators and everyone else never share a rendering.
func (d *Dashboard) live(ctx context.Context, f events.DashboardFilter, a audience) ([]byte, []string, error) {
	key := viewKey{filter: f, operator: a.operator}
	d.mu.Lock()
	c := d.cached[key]
	if c == nil {
		if len(d.cached) > 1000 {
			clear(d.cached)
		}
		c = new(cachedView)
		d.cached[key] = c
	}
	d.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := d.cfg.Now()
	if c.ready && now.Sub(c.at) < d.cfg.Every*3/4 {
		return c.html, c.municipalities, c.err
	}
	view, err := d.view(ctx, f, a)
	if err == nil {
		var buf bytes.Buffer
		if err = d.page.ExecuteTemplate(&buf, "live", view); err == nil {
			c.html, c.municipalities = buf.Bytes(), view.Municipalities
		}
	}
	if err != nil {
		d.cfg.Logger.Warn("dashboard: read figures", "err", err)
		if ctx.Err() != nil {
			return nil, nil, err
		}
	}
	c.at, c.err, c.ready = now, err, true
	return c.html, c.municipalities, err
}

// view reads the store and the queues and shapes what the page shows a.
func (d *Dashboard) view(ctx context.Context, f events.DashboardFilter, a audience) (*liveView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := d.cfg.Now()
	data, err := d.cfg.Store.Dashboard(ctx, f, now)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var backlog []events.QueueBacklog
	backlogKnown := d.cfg.Backlog != nil
	if backlogKnown {
		if backlog, err = d.cfg.Backlog(ctx); err != nil {
			d.cfg.Logger.Warn("dashboard: read the work queues", "err", err)
			backlogKnown = false
		}
	}
	return buildView(d.cfg.Catalog, data, backlog, backlogKnown, now, a), nil
}
