package opendata_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/opendata"
)

// cell is one month's tally of one service in one municipality.
type cell struct {
	month        time.Time
	municipality string
	tally        events.Tally
	latency      time.Duration
}

// fakeStore serves cells, in the order given, and counts its readings.
type fakeStore struct {
	mu    sync.Mutex
	cells []cell
	froms []time.Time
	reads atomic.Int32
	fail  atomic.Bool
	// gate, when set, holds every reading until it is closed.
	gate chan struct{}
}

func (s *fakeStore) MonthlyServiceTallies(ctx context.Context, from, to time.Time,
	each func(time.Time, string, events.Tally, *events.Histogram) error) error {
	s.reads.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	if s.fail.Load() {
		return errors.New("the database is down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.froms = append(s.froms, from)
	for _, c := range s.cells {
		if c.month.Before(from) || !c.month.Before(to) {
			continue
		}
		if err := each(c.month, c.municipality, c.tally, histogramOf(c.tally.Completed, c.latency)); err != nil {
			return err
		}
	}
	return nil
}

func month(y int, m time.Month) time.Time { return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC) }

// cells are four months of figures; September 2026 is in progress.
var cells = []cell{
	{month(2026, 6), "lisboa", events.Tally{Key: "change-of-address", Submitted: 40, Completed: 30, WithinSLA: 20, Breached: 10}, 3 * time.Hour},
	{month(2026, 6), "lisboa", events.Tally{Key: "tax-id-certificate", Submitted: 3, Completed: 2, WithinSLA: 2}, time.Hour},
	{month(2026, 6), "porto", events.Tally{Key: "change-of-address", Submitted: 8, Completed: 3, WithinSLA: 3}, time.Hour},
	{month(2026, 7), "lisboa", events.Tally{Key: "change-of-address", Submitted: 25, Completed: 7, WithinSLA: 7}, 2 * time.Hour},
	{month(2026, 8), "faro", events.Tally{Key: "birth-certificate", Submitted: 12, Completed: 12, WithinSLA: 6, Breached: 6}, 20 * time.Hour},
	{month(2026, 9), "lisboa", events.Tally{Key: "change-of-address", Submitted: 99, Completed: 99, WithinSLA: 50, Breached: 49}, time.Hour},
}

// now is in September 2026.
var now = time.Date(2026, 9, 15, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newServer(t *testing.T, store *fakeStore, cfg opendata.Config) (*httptest.Server, *clock) {
	t.Helper()
	c := &clock{t: now}
	cfg.Store, cfg.Catalog, cfg.Now = store, eventstest.Catalog(t), c.Now
	h, err := opendata.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, c
}

func fetch(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func readCSV(t *testing.T, body string) [][]string {
	t.Helper()
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v\n%s", err, body)
	}
	return records
}

func TestHandler_PublishesCompleteMonthsAsCSVWithSmallCellsEmpty(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{})
	resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET requests-monthly.csv: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type = %q, want text/csv", ct)
	}
	if !strings.Contains(body, "\r\n") {
		t.Errorf("lines end without CRLF, as RFC 4180 asks:\n%q", body)
	}
	got := readCSV(t, body)
	want := [][]string{
		opendata.Columns,
		// 30 completions in the bucket of 3 h, 20 within the service level.
		{"2026-06", "lisboa", "change-of-address", "40", "30", "", "", "0.667"},
		// tax-id-certificate in lisboa: 3 and 2, left out.
		// porto: 8 submitted, 3 completed: no times, no share.
		{"2026-06", "porto", "change-of-address", "8", "", "", "", ""},
		// 7 completions: a median, no 90th percentile; all within: no share.
		{"2026-07", "lisboa", "change-of-address", "25", "7", "", "", ""},
		{"2026-08", "faro", "birth-certificate", "12", "12", "", "", "0.5"},
		// September is in progress: not published.
	}
	if len(got) != len(want) {
		t.Fatalf("CSV has %d records, want %d:\n%s", len(got), len(want), body)
	}
	for i := range want {
		for j := range want[i] {
			if j == 5 || j == 6 {
				continue // times, checked below
			}
			if got[i][j] != want[i][j] {
				t.Errorf("record %d, %s = %q, want %q", i, want[0][j], got[i][j], want[i][j])
			}
		}
	}
	for i, wantTimes := range []struct{ median, p90 bool }{{true, true}, {false, false}, {true, false}, {true, true}} {
		rec := got[i+1]
		if (rec[5] != "") != wantTimes.median || (rec[6] != "") != wantTimes.p90 {
			t.Errorf("record %d: median %q, p90 %q; want median %v, p90 %v", i+1, rec[5], rec[6], wantTimes.median, wantTimes.p90)
		}
	}
}

func TestHandler_PublishesTheSameRowsAsJSONWithLicenceAndServices(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{PublisherName: "AMA", PublisherURL: "https://ama.example.pt"})
	resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET requests-monthly.json: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var doc struct {
		License   string `json:"license"`
		Publisher struct {
			Name, URL string
		} `json:"publisher"`
		Dataset  string           `json:"dataset"`
		MinCount int              `json:"min_count"`
		Rows     []map[string]any `json:"rows"`
		Services map[string]struct {
			Name              map[string]string `json:"name"`
			ServiceLevelHours float64           `json:"service_level_hours"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.License != opendata.DefaultLicense || doc.Publisher.Name != "AMA" || doc.Publisher.URL != "https://ama.example.pt" ||
		doc.Dataset != "dataset.jsonld" || doc.MinCount != 5 {
		t.Errorf("document = %+v", doc)
	}
	if len(doc.Rows) != 4 {
		t.Fatalf("%d rows, want 4: %s", len(doc.Rows), body)
	}
	porto := doc.Rows[1]
	for _, col := range opendata.Columns {
		if _, ok := porto[col]; !ok {
			t.Errorf("row %v has no %s", porto, col)
		}
	}
	if porto["municipality"] != "porto" || porto["submitted"] != 8.0 || porto["completed"] != nil || porto["median_hours"] != nil {
		t.Errorf("porto's row = %v, want 8 submitted and null completions and times", porto)
	}
	if s := doc.Services["birth-certificate"]; s.Name["pt"] == "" || s.ServiceLevelHours != 24 {
		t.Errorf("services[birth-certificate] = %+v, want names and 24 hours", s)
	}
	if _, ok := doc.Services["tax-id-certificate"]; ok {
		t.Error("services name tax-id-certificate, which has no published row")
	}
}

func TestHandler_FiltersByMonthsAndRefusesMalformedOnes(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{})
	for _, tc := range []struct {
		query  string
		months []string
	}{
		{"", []string{"2026-06", "2026-06", "2026-07", "2026-08"}},
		{"?from=2026-07", []string{"2026-07", "2026-08"}},
		{"?to=2026-06", []string{"2026-06", "2026-06"}},
		{"?from=2026-07&to=2026-07", []string{"2026-07"}},
		{"?from=2026-09", nil},
		{"?from=2026-01&to=2030-12", []string{"2026-06", "2026-06", "2026-07", "2026-08"}},
	} {
		t.Run("csv"+tc.query, func(t *testing.T) {
			resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv"+tc.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			var months []string
			for _, rec := range readCSV(t, body)[1:] {
				months = append(months, rec[0])
			}
			if !slices.Equal(months, tc.months) {
				t.Errorf("months = %v, want %v", months, tc.months)
			}
		})
	}
	for _, query := range []string{"?from=2026-6", "?to=june", "?from=2026-13", "?from=2026-08&to=2026-07"} {
		t.Run("json"+query, func(t *testing.T) {
			resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.json"+query)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", resp.StatusCode, body)
			}
			var e struct {
				Error struct{ Code, Field string }
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != events.CodeInvalidValue || e.Error.Field == "" {
				t.Errorf("error body = %s, want an invalid_value naming the field", body)
			}
		})
	}
	_, body := fetch(t, srv.URL+"/open-data/requests-monthly.json?from=2026-07")
	var doc struct{ From, To string }
	if err := json.Unmarshal([]byte(body), &doc); err != nil || doc.From != "2026-07" || doc.To != "2026-08" {
		t.Errorf("from, to = %q, %q (%v), want 2026-07, 2026-08: the last complete month bounds the range", doc.From, doc.To, err)
	}
}

func TestHandler_CachesForADayWithAnETag(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{})
	for _, file := range []string{"requests-monthly.csv", "requests-monthly.json", "dataset.jsonld", ""} {
		t.Run(file, func(t *testing.T) {
			resp, _ := fetch(t, srv.URL+"/open-data/"+file)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %d", resp.StatusCode)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=86400" {
				t.Errorf("Cache-Control = %q, want public for a day", cc)
			}
			etag := resp.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) {
				t.Fatalf("ETag = %q", etag)
			}
			links := strings.Join(resp.Header.Values("Link"), ", ")
			if !strings.Contains(links, "<"+opendata.DefaultLicense+`>; rel="license"`) || !strings.Contains(links, `<dataset.jsonld>; rel="describedby"`) {
				t.Errorf("Link = %q, want the licence and the description", links)
			}
			again, body := fetch(t, srv.URL+"/open-data/"+file, "If-None-Match", etag)
			if again.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("GET with If-None-Match: %d %q, want 304 and no body", again.StatusCode, body)
			}
		})
	}
	// Near the end of the month, caches keep a copy only until it turns.
	store := &fakeStore{cells: cells}
	srv, c := newServer(t, store, opendata.Config{})
	c.Set(time.Date(2026, 9, 30, 23, 0, 0, 0, time.UTC))
	resp, _ := fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("an hour before the month turns, Cache-Control = %q, want an hour", cc)
	}
}

func TestHandler_ReadsTheStoreOncePerRefreshAndAgainWhenTheMonthTurns(t *testing.T) {
	t.Parallel()
	store := &fakeStore{cells: cells, gate: make(chan struct{})}
	srv, c := newServer(t, store, opendata.Config{Refresh: time.Hour})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv"); resp.StatusCode != http.StatusOK {
				t.Errorf("GET: %d %s", resp.StatusCode, body)
			}
		})
	}
	// Let the first reading finish once every request is waiting on it,
	// or has at least been sent.
	for deadline := time.Now().Add(10 * time.Second); store.reads.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no request read the store within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	close(store.gate)
	wg.Wait()
	if n := store.reads.Load(); n != 1 {
		t.Errorf("8 concurrent requests read the store %d times, want once", n)
	}
	c.Set(now.Add(59 * time.Minute))
	fetch(t, srv.URL+"/open-data/requests-monthly.json")
	if n := store.reads.Load(); n != 1 {
		t.Errorf("within the refresh period the store was read %d times, want once", n)
	}
	c.Set(time.Date(2026, 10, 1, 0, 0, 1, 0, time.UTC))
	_, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	if n := store.reads.Load(); n != 2 {
		t.Errorf("after the month turned the store was read %d times in all, want twice", n)
	}
	if !strings.Contains(body, "2026-09,lisboa,change-of-address,99,99,") {
		t.Errorf("once October has begun, September is published; got\n%s", body)
	}

	// The store failing: the last reading serves on.
	store.fail.Store(true)
	c.Set(time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC))
	if resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "2026-09") {
		t.Errorf("with the store down: %d\n%s\nwant the last reading", resp.StatusCode, body)
	}
}

func TestHandler_RereadsOnlyTheLastTwoMonthsBetweenDailyFullReadings(t *testing.T) {
	t.Parallel()
	store := &fakeStore{cells: slices.Clone(cells)}
	srv, c := newServer(t, store, opendata.Config{Refresh: time.Hour})
	fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	// Late events: June's and July's figures change.
	store.mu.Lock()
	store.cells[0].tally.Submitted = 41
	store.cells[3].tally.Submitted = 26
	store.mu.Unlock()

	c.Set(now.Add(2 * time.Hour))
	_, body := fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	if !strings.Contains(body, "2026-07,lisboa,change-of-address,26,") || !strings.Contains(body, "2026-06,lisboa,change-of-address,40,") {
		t.Errorf("two hours on, want July reread (26) and June kept from the first reading (40):\n%s", body)
	}
	c.Set(now.Add(25 * time.Hour))
	_, body = fetch(t, srv.URL+"/open-data/requests-monthly.csv")
	if !strings.Contains(body, "2026-06,lisboa,change-of-address,41,") || strings.Count(body, "\n") != 5 {
		t.Errorf("a day on, want every month reread (June: 41), each row once:\n%s", body)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	want := []time.Time{{}, month(2026, 7), {}}
	if !slices.EqualFunc(store.froms, want, time.Time.Equal) {
		t.Errorf("readings from %v, want %v", store.froms, want)
	}
}

func TestHandler_AnswersUnavailableWhenItHasNeverReadTheStore(t *testing.T) {
	t.Parallel()
	store := &fakeStore{cells: cells}
	store.fail.Store(true)
	srv, _ := newServer(t, store, opendata.Config{})
	resp, body := fetch(t, srv.URL+"/open-data/requests-monthly.json")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) || strings.Contains(body, "database") {
		t.Errorf("GET with the store down: %d %s, want 503 unavailable, without the cause", resp.StatusCode, body)
	}
}

// dcat is the description as decoded, generically.
type dcat = map[string]any

func literals(t *testing.T, v any) map[string]string {
	t.Helper()
	out := make(map[string]string)
	list, _ := v.([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		lang, _ := m["@language"].(string)
		val, _ := m["@value"].(string)
		out[lang] = val
	}
	return out
}

func id(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["@id"].(string)
	return s
}

func TestHandler_DescribesTheDatasetInDCATAP(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{
		PublisherName: "Agência para a Modernização Administrativa", PublisherURL: "https://ama.example.pt",
		License: "https://creativecommons.org/publicdomain/zero/1.0/", BaseURL: "https://spotflow.example.pt/",
	})
	resp, body := fetch(t, srv.URL+"/open-data/dataset.jsonld")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ld+json" {
		t.Fatalf("GET dataset.jsonld: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var d dcat
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	ctx, _ := d["@context"].(map[string]any)
	if ctx["dcat"] != "http://www.w3.org/ns/dcat#" || ctx["dct"] != "http://purl.org/dc/terms/" {
		t.Errorf("@context = %v", ctx)
	}
	if d["@type"] != "dcat:Dataset" || d["@id"] != "https://spotflow.example.pt/open-data/dataset.jsonld#dataset" {
		t.Errorf("@type, @id = %v, %v", d["@type"], d["@id"])
	}
	titles, descriptions := literals(t, d["dct:title"]), literals(t, d["dct:description"])
	// The built-in catalogue speaks six languages; the dataset's texts
	// come in each.
	for _, lang := range eventstest.Catalog(t).Languages {
		if titles[lang] == "" || descriptions[lang] == "" {
			t.Errorf("no title or description in %q: %v", lang, titles)
		}
	}
	if !strings.Contains(titles["pt"], "município") {
		t.Errorf("Portuguese title = %q", titles["pt"])
	}
	publisher, _ := d["dct:publisher"].(map[string]any)
	if publisher["foaf:name"] != "Agência para a Modernização Administrativa" || publisher["@id"] != "https://ama.example.pt" {
		t.Errorf("dct:publisher = %v", publisher)
	}
	if id(d["dct:license"]) != "https://creativecommons.org/publicdomain/zero/1.0/" {
		t.Errorf("dct:license = %v", d["dct:license"])
	}
	if id(d["dct:accrualPeriodicity"]) != "http://publications.europa.eu/resource/authority/frequency/MONTHLY" {
		t.Errorf("dct:accrualPeriodicity = %v", d["dct:accrualPeriodicity"])
	}
	temporal, _ := d["dct:temporal"].(map[string]any)
	start, _ := temporal["dcat:startDate"].(map[string]any)
	end, _ := temporal["dcat:endDate"].(map[string]any)
	if temporal["@type"] != "dct:PeriodOfTime" || start["@value"] != "2026-06-01" || end["@value"] != "2026-08-31" || end["@type"] != "xsd:date" {
		t.Errorf("dct:temporal = %v, want June to August 2026", temporal)
	}
	var places []string
	spatial, _ := d["dct:spatial"].([]any)
	for _, s := range spatial {
		loc, _ := s.(map[string]any)
		if loc["@type"] != "dct:Location" {
			t.Errorf("dct:spatial entry %v is not a dct:Location", loc)
		}
		name, _ := loc["locn:geographicName"].(string)
		places = append(places, name)
	}
	// lisboa, porto and faro have published rows; September's are not
	// published yet.
	if !slices.Equal(places, []string{"faro", "lisboa", "porto"}) {
		t.Errorf("dct:spatial names %v, want faro, lisboa, porto", places)
	}
	dists, _ := d["dcat:distribution"].([]any)
	media := map[string]string{}
	for _, x := range dists {
		dist, _ := x.(map[string]any)
		if dist["@type"] != "dcat:Distribution" {
			t.Errorf("distribution %v is not a dcat:Distribution", dist)
		}
		if id(dist["dcat:accessURL"]) == "" || id(dist["dcat:accessURL"]) != id(dist["dcat:downloadURL"]) {
			t.Errorf("distribution %v: accessURL and downloadURL should name the file", dist)
		}
		if id(dist["dct:license"]) != "https://creativecommons.org/publicdomain/zero/1.0/" || literals(t, dist["dct:title"])["pt"] == "" {
			t.Errorf("distribution %v: no licence or title", dist)
		}
		media[id(dist["dcat:downloadURL"])] = id(dist["dcat:mediaType"])
	}
	want := map[string]string{
		"https://spotflow.example.pt/open-data/requests-monthly.csv":  "https://www.iana.org/assignments/media-types/text/csv",
		"https://spotflow.example.pt/open-data/requests-monthly.json": "https://www.iana.org/assignments/media-types/application/json",
	}
	if len(media) != 2 || media["https://spotflow.example.pt/open-data/requests-monthly.csv"] != want["https://spotflow.example.pt/open-data/requests-monthly.csv"] ||
		media["https://spotflow.example.pt/open-data/requests-monthly.json"] != want["https://spotflow.example.pt/open-data/requests-monthly.json"] {
		t.Errorf("distributions = %v, want %v", media, want)
	}
	// The files the description names are served.
	for u := range want {
		if resp, _ := fetch(t, srv.URL+strings.TrimPrefix(u, "https://spotflow.example.pt")); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
		}
	}
}

func TestHandler_DescriptionLinksResolveAgainstItsOwnAddressWithoutABaseURL(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{}, opendata.Config{})
	_, body := fetch(t, srv.URL+"/open-data/dataset.jsonld")
	var d dcat
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	dists, _ := d["dcat:distribution"].([]any)
	first, _ := dists[0].(map[string]any)
	if got := id(first["dcat:downloadURL"]); got != "requests-monthly.csv" {
		t.Errorf("downloadURL = %q, want requests-monthly.csv, relative to /open-data/dataset.jsonld", got)
	}
	if _, ok := d["dct:temporal"]; ok {
		t.Errorf("with nothing published the description gives a period: %v", d["dct:temporal"])
	}
	if publisher, _ := d["dct:publisher"].(map[string]any); publisher["foaf:name"] != "spotflow" {
		t.Errorf("dct:publisher = %v, want the default name", publisher)
	}
}

func TestHandler_IndexSpeaksTheReadersLanguageAndLinksEveryFile(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, &fakeStore{cells: cells}, opendata.Config{})
	resp, page := fetch(t, srv.URL+"/open-data/", "Accept-Language", "pt-PT,pt;q=0.9,en;q=0.5")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /open-data/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`<html lang="pt">`, "Pedidos de serviço por mês", `href="requests-monthly.csv"`,
		`href="requests-monthly.json"`, `href="dataset.jsonld"`, `href="` + opendata.DefaultLicense + `"`, "2026-06 – 2026-08"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	if resp.Header.Get("Vary") != "Accept-Language" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("Vary = %q, CSP = %q", resp.Header.Get("Vary"), resp.Header.Get("Content-Security-Policy"))
	}
	if resp, page := fetch(t, srv.URL+"/open-data/"); !strings.Contains(page, `<html lang="en">`) {
		t.Errorf("without Accept-Language: %d\n%s\nwant English", resp.StatusCode, page)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := noRedirect.Get(srv.URL + "/open-data")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/open-data/" {
		t.Errorf("GET /open-data: %d to %q, want a redirect to /open-data/", r.StatusCode, r.Header.Get("Location"))
	}
}

func TestTexts_HaveTheSameKeysInEveryLanguage(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("texts.json")
	if err != nil {
		t.Fatal(err)
	}
	var texts map[string]map[string]string
	if err := json.Unmarshal(data, &texts); err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"en", "pt"} {
		if _, ok := texts[lang]; !ok {
			t.Errorf("texts.json has no %q", lang)
		}
	}
	for lang, keys := range texts {
		for key := range texts["en"] {
			if keys[key] == "" {
				t.Errorf("texts.json: %s has no %s", lang, key)
			}
		}
		for key := range keys {
			if _, ok := texts["en"][key]; !ok {
				t.Errorf("texts.json: %s has %s, which English lacks", lang, key)
			}
		}
	}
}

func TestNew_RefusesAnIncompleteConfig(t *testing.T) {
	t.Parallel()
	catalog := eventstest.Catalog(t)
	for name, cfg := range map[string]opendata.Config{
		"no store":              {Catalog: catalog},
		"no catalogue":          {Store: &fakeStore{}},
		"a relative licence":    {Store: &fakeStore{}, Catalog: catalog, License: "cc-by"},
		"a base URL of no host": {Store: &fakeStore{}, Catalog: catalog, BaseURL: "/open-data"},
	} {
		if _, err := opendata.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
