// Package opendata publishes spotflow's open data under /open-data/:
// anonymised monthly aggregates per municipality and service (requests
// submitted and completed, the median and 90th-percentile time to
// completion, the share completed within the service level) as CSV and
// JSON, with their licence and a DCAT-AP description in JSON-LD. It reads
// the dashboard's day roll-ups through the small Store interface declared
// here and passes every cell through Publish, which applies the disclosure
// rules, before anything leaves it: no personal data, no count under
// MinCount, no totals. docs/open-data.md is the contract.
package opendata

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
)

// Store reads the monthly aggregates. MonthlyServiceTallies calls each once
// per calendar month (UTC) from from's up to before to's, municipality and
// service that saw a submission or an outcome, ordered by month,
// municipality and service, with the tally of that service keyed by its
// code and the histogram of its completions' times; a zero from means from
// the first month there is. Implementations read aggregates only.
type Store interface {
	MonthlyServiceTallies(ctx context.Context, from, to time.Time,
		each func(month time.Time, municipality string, t events.Tally, h *events.Histogram) error) error
}

// Catalogs gives the service catalogue in force: its languages and the
// services' names and expected completion times.
type Catalogs interface {
	Current() *events.Catalog
}

// DefaultLicense is the licence the data is published under unless
// Config.License says otherwise: Creative Commons Attribution 4.0.
const DefaultLicense = "https://creativecommons.org/licenses/by/4.0/"

// Config configures a Handler.
type Config struct {
	// Store reads the monthly aggregates. Required.
	Store Store
	// Catalog gives the catalogue's languages and services. Required.
	Catalog Catalogs
	// License is the address of the licence the data is published under.
	// Default DefaultLicense.
	License string
	// PublisherName and PublisherURL name the body that publishes the
	// data (dct:publisher). Default name "spotflow"; the URL is optional.
	PublisherName string
	PublisherURL  string
	// BaseURL is the absolute address under which /open-data/ is reached
	// (scheme, host and any path prefix, e.g. https://spotflow.example.gov),
	// to make the description's links absolute. When empty they are
	// relative, resolved against the address the description was read at.
	BaseURL string
	// Refresh is how long one reading of the store serves every request;
	// the month turning over forces a new one. Default 1 hour.
	Refresh time.Duration
	// Now tells the time; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Handler serves /open-data/ and the files under it. It reads the store at
// most once per Config.Refresh, however many people ask (concurrent
// requests share one reading), and keeps every published row of every
// complete month in memory in between. It is safe for concurrent use.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	index *template.Template
	// texts are the dataset's texts by language and key (texts.json).
	texts map[string]map[string]string
	// sem is held by whoever reads or replaces cur.
	sem chan struct{}
	cur *reading
	// retryAt is when to try again after a failed refresh.
	retryAt time.Time
}

// reading is one reading of the store: every published row of the months
// before upTo, sorted by month, municipality and service, and the files
// rendered from it so far.
type reading struct {
	// upTo is the start of the month in progress at the reading; at is
	// when it was read and fullAt when every month was last read.
	upTo, at, fullAt time.Time
	rows             []Row
	files            chan map[string]*file // holds the map; a channel so that it is a lock
}

// file is a rendered response.
type file struct {
	data        []byte
	etag        string
	contentType string
}

// maxFiles bounds how many renderings (file and range) one reading keeps.
const maxFiles = 64

// readTimeout bounds one reading of the store.
const readTimeout = time.Minute

// How much a reading reads: every month once a day, otherwise the last
// recentMonths complete months only. An event is counted in the month it
// happened, and agencies report soon after: late events land in the last
// months.
const (
	fullReadEvery = 24 * time.Hour
	recentMonths  = 2
)

//go:embed texts.json index.html
var assets embed.FS

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("new open data: Store and Catalog are required")
	}
	cfg.License = cmp.Or(cfg.License, DefaultLicense)
	cfg.PublisherName = cmp.Or(cfg.PublisherName, "spotflow")
	cfg.Refresh = cmp.Or(cfg.Refresh, time.Hour)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	for name, u := range map[string]string{"License": cfg.License, "PublisherURL": cfg.PublisherURL, "BaseURL": cfg.BaseURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || !p.IsAbs() || p.Host == "" {
			return nil, fmt.Errorf("new open data: %s %q is not an absolute URL", name, u)
		}
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), sem: make(chan struct{}, 1)}
	data, err := assets.ReadFile("texts.json")
	if err != nil {
		return nil, fmt.Errorf("new open data: %w", err)
	}
	if err := json.Unmarshal(data, &h.texts); err != nil {
		return nil, fmt.Errorf("new open data: texts.json: %w", err)
	}
	if h.index, err = template.ParseFS(assets, "index.html"); err != nil {
		return nil, fmt.Errorf("new open data: %w", err)
	}
	h.mux.HandleFunc("GET /open-data", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/open-data/", http.StatusMovedPermanently)
	})
	h.mux.HandleFunc("GET /open-data/{$}", h.serveIndex)
	h.mux.HandleFunc("GET /open-data/"+fileDataset, h.serveFile(fileDataset))
	h.mux.HandleFunc("GET /open-data/"+fileCSV, h.serveFile(fileCSV))
	h.mux.HandleFunc("GET /open-data/"+fileJSON, h.serveFile(fileJSON))
	return h, nil
}

// ServeHTTP serves /open-data and everything under it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

// link is the address of name under /open-data/: absolute with a BaseURL,
// else relative to a file under /open-data/.
func (h *Handler) link(name string) string {
	if h.cfg.BaseURL != "" {
		return h.cfg.BaseURL + "/open-data/" + name
	}
	return cmp.Or(name, "./")
}

// languages are those the description is written in: every language of
// the catalogue that texts.json has, and English and Portuguese always.
func (h *Handler) languages() []string {
	langs := []string{events.DefaultLanguage, "pt"}
	for _, l := range h.cfg.Catalog.Current().Languages {
		if _, ok := h.texts[l]; ok && !slices.Contains(langs, l) {
			langs = append(langs, l)
		}
	}
	return langs
}

// read returns the current reading, reading the store anew when the last
// reading is older than Refresh or from before the month turned over.
// A new reading reads every month once a day (fullReadEvery), and
// otherwise only the last recentMonths complete months, where late
// events land, keeping the older months' rows of the last reading. When
// the store fails, the last reading serves on, and the store is tried
// again a minute later.
func (h *Handler) read(ctx context.Context) (*reading, error) {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()
	now := h.cfg.Now().UTC()
	upTo := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	cur := h.cur
	if cur != nil && ((cur.upTo.Equal(upTo) && now.Sub(cur.at) < h.cfg.Refresh) || now.Before(h.retryAt)) {
		return cur, nil
	}
	next := &reading{upTo: upTo, at: now, fullAt: now, files: make(chan map[string]*file, 1)}
	var from time.Time
	if cur != nil && now.Sub(cur.fullAt) < fullReadEvery {
		from = upTo.AddDate(0, -recentMonths, 0)
		next.fullAt = cur.fullAt
		// A copy: the last reading's rows may still be being served.
		next.rows = slices.Clone(between(cur.rows, "", from.AddDate(0, -1, 0).Format(monthLayout)))
	}
	// One reading serves everyone waiting: a client that goes away does
	// not cancel it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	defer cancel()
	var fresh []Row
	err := h.cfg.Store.MonthlyServiceTallies(rctx, from, upTo,
		func(month time.Time, municipality string, t events.Tally, hist *events.Histogram) error {
			if !month.Before(from) && month.Before(upTo) {
				if r, ok := Publish(month, municipality, t, hist); ok {
					fresh = append(fresh, r)
				}
			}
			return nil
		})
	if err != nil {
		h.retryAt = now.Add(time.Minute)
		if cur != nil {
			h.cfg.Logger.Warn("open data: cannot read the aggregates; serving the last reading", "err", err, "read_at", cur.at)
			return cur, nil
		}
		return nil, err
	}
	slices.SortStableFunc(fresh, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.Month, b.Month), strings.Compare(a.Municipality, b.Municipality),
			strings.Compare(a.ServiceCode, b.ServiceCode))
	})
	next.rows = append(next.rows, fresh...)
	next.files <- make(map[string]*file)
	h.cur = next
	return next, nil
}

// serveIndex serves a short page for people, in their language, linking
// to the files, the description, the licence and the publisher.
func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	cur, err := h.read(r.Context())
	if err != nil {
		h.unavailable(w, err)
		return
	}
	lang := h.cfg.Catalog.Current().Language(r.Header.Get("Accept-Language"))
	if _, ok := h.texts[lang]; !ok {
		lang = events.DefaultLanguage
	}
	f := cur.file("index:"+lang, func() (*file, error) {
		from, to := span(cur.rows)
		var buf bytes.Buffer
		err := h.index.Execute(&buf, map[string]any{
			"Lang": lang, "T": h.texts[lang], "From": from, "To": to,
			"CSV": fileCSV, "JSON": fileJSON, "Dataset": fileDataset, "License": h.cfg.License,
			"PublisherName": h.cfg.PublisherName, "PublisherURL": h.cfg.PublisherURL,
		})
		if err != nil {
			h.cfg.Logger.Error("open data: render the index", "err", err)
		}
		return newFile(buf.Bytes(), "text/html; charset=utf-8"), err
	})
	if f == nil {
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Vary", "Accept-Language")
	h.write(w, r, cur, f)
}

// serveFile serves the description or one of the data files, the latter
// for the months from ?from= to ?to= (YYYY-MM, both optional and included).
func (h *Handler) serveFile(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var from, to string
		if name != fileDataset {
			for _, p := range []struct {
				field string
				to    *string
			}{{"from", &from}, {"to", &to}} {
				v := q.Get(p.field)
				if v == "" {
					continue
				}
				if m, err := time.Parse(monthLayout, v); err != nil || m.Format(monthLayout) != v {
					jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeInvalidValue, Field: p.field,
						Message: p.field + " must be a month, written YYYY-MM"})
					return
				}
				*p.to = v
			}
			if from != "" && to != "" && from > to {
				jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.Error{Code: events.CodeInvalidValue, Field: "from",
					Message: "from must not be after to"})
				return
			}
		}
		cur, err := h.read(r.Context())
		if err != nil {
			h.unavailable(w, err)
			return
		}
		// The last complete month bounds every range.
		last := cur.upTo.AddDate(0, -1, 0).Format(monthLayout)
		if to == "" || to > last {
			to = last
		}
		f := cur.file(name+"?"+from+"&"+to, func() (*file, error) {
			switch name {
			case fileDataset:
				return newFile(writeJSON(h.dataset(cur.rows, h.languages())), "application/ld+json"), nil
			case fileCSV:
				return newFile(writeCSV(between(cur.rows, from, to)), "text/csv; charset=utf-8; header=present"), nil
			}
			rows := between(cur.rows, from, to)
			if from == "" && len(rows) > 0 {
				from = rows[0].Month
			}
			if from > to {
				from, to = "", ""
			}
			return newFile(writeJSON(h.jsonFile(rows, from, to)), "application/json"), nil
		})
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.write(w, r, cur, f)
	}
}

// jsonFile is the JSON distribution of rows, the months from to to.
func (h *Handler) jsonFile(rows []Row, from, to string) jsonFile {
	catalog := h.cfg.Catalog.Current()
	services := make(map[string]serviceInfo)
	for _, r := range rows {
		if s, ok := catalog.Service(r.ServiceCode); ok {
			services[r.ServiceCode] = serviceInfo{Name: s.Name, ServiceLevelHours: s.SLAHours}
		}
	}
	return jsonFile{
		Title: h.texts[events.DefaultLanguage]["title"], License: h.cfg.License,
		Publisher: publisher{Name: h.cfg.PublisherName, URL: h.cfg.PublisherURL},
		Dataset:   h.link(fileDataset), From: from, To: to, MinCount: MinCount, Columns: Columns,
		Rows: append(make([]Row, 0, len(rows)), rows...), Services: services,
	}
}

// write answers f with its validator and caching headers: public, for a
// day or until the month turns over, whichever comes first. A request
// whose If-None-Match names f's ETag gets 304.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, cur *reading, f *file) {
	maxAge := min(24*time.Hour, cur.upTo.AddDate(0, 1, 0).Sub(h.cfg.Now()))
	hdr := w.Header()
	hdr.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(max(maxAge, time.Minute).Seconds())))
	hdr.Set("ETag", f.etag)
	hdr.Set("Content-Type", f.contentType)
	hdr.Add("Link", "<"+h.cfg.License+`>; rel="license"`)
	hdr.Add("Link", "<"+h.link(fileDataset)+`>; rel="describedby"; type="application/ld+json"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}

func (h *Handler) unavailable(w http.ResponseWriter, err error) {
	h.cfg.Logger.Error("open data: cannot read the aggregates", "err", err)
	w.Header().Set("Retry-After", "60")
	jsonapi.WriteError(w, http.StatusServiceUnavailable, jsonapi.Error{Code: "unavailable",
		Message: "the open data cannot be read right now; retry later"})
}

// file returns the rendering of key, rendering it with render the first
// time. It keeps up to maxFiles renderings; nil if render failed.
func (c *reading) file(key string, render func() (*file, error)) *file {
	files := <-c.files
	defer func() { c.files <- files }()
	if f, ok := files[key]; ok {
		return f
	}
	f, err := render()
	if err != nil {
		return nil
	}
	if len(files) < maxFiles {
		files[key] = f
	}
	return f
}

func newFile(data []byte, contentType string) *file {
	sum := sha256.Sum256(data)
	return &file{data: data, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// between returns the rows, sorted by month, of the months from from to
// to, both included; an empty from means from the first.
func between(rows []Row, from, to string) []Row {
	lo := sort.Search(len(rows), func(i int) bool { return rows[i].Month >= from })
	hi := sort.Search(len(rows), func(i int) bool { return rows[i].Month > to })
	if lo >= hi {
		return nil
	}
	return rows[lo:hi]
}

// span is the first and last month of rows, sorted by month.
func span(rows []Row) (string, string) {
	if len(rows) == 0 {
		return "", ""
	}
	return rows[0].Month, rows[len(rows)-1].Month
}
